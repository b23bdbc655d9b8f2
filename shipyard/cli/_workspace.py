"""`shipyard workspace proxy-tokens create | list | revoke`."""

from __future__ import annotations

import click
from rich.table import Table

from shipyard.cli._autostart import connect
from shipyard.cli._output import echo_json, env_option, err_console, format_time, json_option, out_console


@click.group()
def workspace() -> None:
    """Workspace settings and credentials."""


@workspace.group("proxy-tokens")
def proxy_tokens() -> None:
    """Tokens that clients send to web functions with requires_proxy_auth."""


@proxy_tokens.command("create")
@env_option
def create_token(env: str) -> None:
    """Create a proxy token; its secret is printed once."""
    with connect() as client:
        created = client.create_proxy_token(env)
    # Exactly the two headers a client sends, so the output can be pasted or parsed as is.
    click.echo(f"Modal-Key: {created.token_id}")
    click.echo(f"Modal-Secret: {created.token_secret}")
    err_console().print("The secret is shown only this once; store it now. "
                        f"Revoke with `shipyard workspace proxy-tokens revoke {created.token_id}`.")


@proxy_tokens.command("list")
@env_option
@json_option
def list_tokens(env: str, as_json: bool) -> None:
    """List proxy tokens (never their secrets)."""
    with connect() as client:
        tokens = client.list_proxy_tokens(env)
    if as_json:
        echo_json(tokens)
        return
    table = Table(title=f"Proxy tokens ({env})")
    table.add_column("Token ID", no_wrap=True)
    table.add_column("Env")
    table.add_column("Created")
    table.add_column("Status")
    for info in tokens:
        table.add_row(info.token_id, info.environment, format_time(info.created_at),
                      "revoked" if info.revoked else "active")
    out_console().print(table)


@proxy_tokens.command("revoke")
@click.argument("token_id", metavar="ID")
def revoke_token(token_id: str) -> None:
    """Revoke the proxy token ID."""
    with connect() as client:
        client.revoke_proxy_token(token_id)
    click.echo(f"✓ Revoked proxy token {token_id}")
