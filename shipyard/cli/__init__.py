"""The `shipyard` command line: a thin client of the control-plane HTTP API."""

from __future__ import annotations

from typing import Any

import click

from shipyard.cli._app import app
from shipyard.cli._cluster import nodes, proxy
from shipyard.cli._deploy import deploy
from shipyard.cli._endpoint import endpoint
from shipyard.cli._run import run
from shipyard.cli._secret import secret
from shipyard.cli._serve import serve
from shipyard.cli._server import server
from shipyard.cli._usage import usage
from shipyard.cli._volume import volume
from shipyard.cli._workspace import workspace
from shipyard.exceptions import ShipyardError

__all__ = ["main"]


class _Group(click.Group):
    """Turns Shipyard's expected errors into `Error: <message>` and exit 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShipyardError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shipyard", prog_name="shipyard")
def main() -> None:
    """Shipyard: run Python functions and web apps as autoscaling HTTP endpoints."""


for _command in (server, serve, deploy, app, secret, workspace):
    main.add_command(_command)
for _command in (endpoint, usage):
    main.add_command(_command)
for _command in (run, volume):
    main.add_command(_command)
for _command in (nodes, proxy):
    main.add_command(_command)
