"""Pieces every command shares: the `--env` option, consoles, JSON and time formatting."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import click
from pydantic import BaseModel
from rich.console import Console

env_option = click.option(
    "--env", "-e", "env", default="main", show_default=True, metavar="ENV",
    help="Environment the command applies to.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def out_console() -> Console:
    # Tables only: the lines scripts parse (URLs, tokens) go through click.echo so rich never wraps them.
    return Console(highlight=False)


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def echo_json(items: Sequence[BaseModel]) -> None:
    click.echo(json.dumps([item.model_dump(mode="json") for item in items], indent=2))


def format_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
