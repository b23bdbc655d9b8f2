"""`shipyard server`: the control plane, proxy and local runtime in the foreground."""

from __future__ import annotations

import click

from shipyard._paths import default_home
from shipyard.cli._client import DEFAULT_PORT


@click.command()
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API and the proxy bind.")
@click.option("--workspace", default="shipyard", show_default=True, help="Workspace name used in URLs.")
@click.option("--domain", default="localhost", show_default=True, help="Domain of web function hosts.")
def server(port: int, host: str, workspace: str, domain: str) -> None:
    """Run the Shipyard server (Ctrl-C stops it and its containers)."""
    # Imported here: the server pulls in the whole control plane, which the other commands never need.
    from shipyard.server import run_server

    run_server(default_home(), host, port, workspace, domain)
