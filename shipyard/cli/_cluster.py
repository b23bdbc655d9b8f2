"""`shipyard nodes` (the runtime's nodes) and `shipyard proxy --region` (a regional proxy process)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from shipyard.cli._autostart import connect
from shipyard.cli._client import discover_url, read_admin_token
from shipyard.cli._output import json_option, out_console


def _resources(resources: dict[str, float]) -> str:
    shown = {k: v / 2**30 if k in ("memory", "object_store_memory") else v for k, v in resources.items()
             if not k.startswith(("region:", "accelerator_type:"))}
    return ", ".join(f"{k}={v:.3g}" + (" GiB" if k in ("memory", "object_store_memory") else "")
                     for k, v in sorted(shown.items()))


@click.command()
@json_option
def nodes(as_json: bool) -> None:
    """List the runtime's nodes: resources, region and accelerator labels, and containers on them."""
    with connect() as client:
        rows: list[dict[str, Any]] = client.request_json("GET", "/api/cluster/nodes")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Nodes")
    for column in ("Node", "Address", "State", "Regions", "Accelerators", "Resources", "Containers"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["node_id"][:12], row["address"], "alive" if row["alive"] else "dead",
                      ", ".join(row["regions"]), ", ".join(row["accelerators"]), _resources(row["resources"]),
                      "\n".join(row["containers"]))
    out_console().print(table)


@click.command()
@click.option("--region", required=True, help="Routing region whose web functions this proxy serves.")
@click.option("--server", "server_url", default=None, metavar="URL",
              help="Control plane URL (default: the discovered server).")
@click.option("--token", default=None,
              help="Control plane admin token (default: SHIPYARD_TOKEN or $SHIPYARD_HOME/admin_token).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=8100, show_default=True)
@click.option("--domain", default="localhost", show_default=True, help="Domain of web function hosts.")
@click.option("--public-url", default=None, metavar="URL",
              help="How clients reach this proxy, shown as the URL of the region's endpoints "
                   "(default: http://HOST:PORT).")
def proxy(region: str, server_url: str | None, token: str | None, host: str, port: int, domain: str,
          public_url: str | None) -> None:
    """Run a proxy for one routing region (routes pulled from the control plane every second)."""
    import asyncio

    import uvicorn

    from shipyard.proxy._regional import RegionalProxy

    app = RegionalProxy(server_url or discover_url(), token or read_admin_token(), region,
                        public_url=public_url or f"http://{host}:{port}", domain=domain)

    async def run() -> None:
        await app.refresh()
        refresher = asyncio.create_task(app.refresh_forever())
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", access_log=False,
                                log_level="warning", loop="uvloop", http="httptools")
        try:
            await uvicorn.Server(config).serve()
        finally:
            refresher.cancel()
            await app.close()

    click.echo(f"Proxy for region {region} on http://{host}:{port}")
    asyncio.run(run())
