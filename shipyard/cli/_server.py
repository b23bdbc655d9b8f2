"""`shipyard server`: the control plane, proxy and local runtime in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard._paths import default_home
from shipyard.cli._client import DEFAULT_PORT


@click.command()
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API and the proxy bind.")
@click.option("--workspace", default="shipyard", show_default=True, help="Workspace name used in URLs.")
@click.option("--domain", default="localhost", show_default=True, help="Domain of web function hosts.")
@click.option("--rate-limit", type=click.FloatRange(min=0), default=200.0, show_default=True,
              help="Workspace requests per second through the proxy (0: no limit); beyond it 429.")
@click.option("--rate-burst", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Seconds of --rate-limit that may arrive at once.")
@click.option("--max-queue", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Requests that may wait for a container, per function; beyond it 503.")
@click.option("--max-body", type=click.IntRange(min=0), default=256 * 1024 * 1024, show_default=True,
              help="Largest request body in bytes; beyond it 413.")
@click.option("--runtime", "runtime_kind", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where containers run: processes on this machine, or a Ray cluster.")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="Ray cluster to join (default: RAY_ADDRESS or the cluster started on this machine).")
@click.option("--ray-node-dir", default="/tmp/shipyard-ray", show_default=True,
              help="Directory on every Ray node for bundles, image builds, sockets and logs.")
@click.option("--volumes-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Volumes directory; with --runtime ray a shared file system mounted here on every node.")
@click.option("--spare-containers/--no-spare-containers", default=True, show_default=True,
              help="Keep one container per image started ahead of need (imports done), for fast cold "
                   "starts; local runtime only.")
def server(port: int, host: str, workspace: str, domain: str, rate_limit: float, rate_burst: float,
           max_queue: int, max_body: int, runtime_kind: str, ray_address: str | None, ray_node_dir: str,
           volumes_dir: Path | None, spare_containers: bool) -> None:
    """Run the Shipyard server (Ctrl-C stops it and its containers)."""
    # Imported here: the server pulls in the whole control plane, which the other commands never need.
    from shipyard.proxy import ProxyLimits
    from shipyard.server import run_server
    from shipyard.server._cluster import RayOptions

    limits = ProxyLimits(rate_per_second=rate_limit, burst_seconds=rate_burst, max_queue=max_queue,
                         max_body_bytes=max_body)
    ray = None
    if runtime_kind == "ray":
        ray = RayOptions(address=ray_address, node_root=ray_node_dir, volumes_dir=volumes_dir)
    elif volumes_dir is not None or ray_address is not None:
        raise click.UsageError("--ray-address and --volumes-dir go with --runtime ray")
    run_server(default_home(), host, port, workspace, domain, limits, ray, spare_containers=spare_containers)
