"""`shipyard usage`: compute time, tokens and cost per endpoint and app."""

from __future__ import annotations

import click
from rich.table import Table

from shipyard.cli._autostart import connect
from shipyard.cli._output import echo_json, env_option, json_option, out_console
from shipyard.endpoints import UsageRow


@click.command()
@env_option
@click.option("--endpoint", default=None, metavar="NAME", help="Only this endpoint.")
@json_option
def usage(env: str, endpoint: str | None, as_json: bool) -> None:
    """Show metered usage: container time, tokens in/out and cost (USD) per endpoint and app."""
    params = {"env": env} | ({"endpoint": endpoint} if endpoint else {})
    with connect() as client:
        rows = [UsageRow.model_validate(r) for r in client.request_json("GET", "/api/usage", params=params)]
    if as_json:
        echo_json(rows)
        return
    table = Table(title=f"Usage ({env})")
    columns = ("Kind", "Name", "Container s", "GPU s", "Requests", "Tokens in", "Tokens out", "Cost (USD)")
    for column in columns:
        table.add_column(column, justify="right" if column not in ("Kind", "Name") else "left")
    for row in rows:
        table.add_row(row.kind, row.name, f"{row.seconds:.1f}", f"{row.gpu_seconds:.1f}", str(row.requests),
                      str(row.tokens_in), str(row.tokens_out), f"{row.cost:.6f}")
    out_console().print(table)
