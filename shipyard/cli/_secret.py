"""`shipyard secret create | list | delete`. Values are sent to the server and never printed."""

from __future__ import annotations

import re
from pathlib import Path

import click
from dotenv import dotenv_values
from rich.table import Table

from shipyard.cli._autostart import connect
from shipyard.cli._output import echo_json, env_option, format_time, json_option, out_console

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_pairs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`KEY=VALUE` arguments to a dict; the value is everything after the first `=` and may be empty."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        _check_key(key)
        values[key] = value
    return values


def read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in dotenv_values(path).items():
        if value is None:
            raise click.BadParameter(f"{key!r} in {path} has no value", param_hint="--from-dotenv")
        _check_key(key)
        values[key] = value
    return values


def _check_key(key: str) -> None:
    if not _KEY.fullmatch(key):
        raise click.BadParameter(
            f"{key!r} is not a valid key: use letters, digits and underscores, not starting with a digit",
            param_hint="KEY=VALUE",
        )


@click.group()
def secret() -> None:
    """Manage named secrets."""


@secret.command("create")
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
@click.option("--from-dotenv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Read KEY=VALUE lines from a .env file (KEY=VALUE arguments override it).")
@env_option
@click.option("--force", is_flag=True, help="Replace the secret if it exists.")
def create_secret(name: str, pairs: tuple[str, ...], from_dotenv: Path | None, env: str, force: bool) -> None:
    """Create the secret NAME from KEY=VALUE pairs."""
    values = read_dotenv(from_dotenv) if from_dotenv else {}
    values.update(parse_pairs(pairs))
    if not values:
        raise click.UsageError("Give at least one KEY=VALUE pair or --from-dotenv PATH")
    with connect() as client:
        info = client.create_secret(name, env, values, force)
    click.echo(f"✓ Created secret {info.name} in {info.environment} with keys: {', '.join(info.keys)}")


@secret.command("list")
@env_option
@json_option
def list_secrets(env: str, as_json: bool) -> None:
    """List secrets (names and keys only)."""
    with connect() as client:
        secrets = client.list_secrets(env)
    if as_json:
        echo_json(secrets)
        return
    table = Table(title=f"Secrets ({env})")
    table.add_column("Name", no_wrap=True)
    table.add_column("Keys", overflow="fold")
    table.add_column("Created")
    for info in secrets:
        table.add_row(info.name, ", ".join(info.keys), format_time(info.created_at))
    out_console().print(table)


@secret.command("delete")
@click.argument("name")
@env_option
def delete_secret(name: str, env: str) -> None:
    """Delete the secret NAME."""
    with connect() as client:
        client.delete_secret(name, env)
    click.echo(f"✓ Deleted secret {name}")
