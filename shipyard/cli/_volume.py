"""`shipyard volume create | list | ls | put | get | rm | delete`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from shipyard._client import ControlPlane, quote
from shipyard.cli._output import env_option, format_time, json_option, out_console


def _files(name: str, path: str) -> str:
    return f"/api/volumes/{quote(name)}/files/{path.lstrip('/')}"


@click.group()
def volume() -> None:
    """Manage volumes: directories shared by containers (mounted with `volumes={...}`)."""


@volume.command("create")
@click.argument("name")
@env_option
def create_volume(name: str, env: str) -> None:
    """Create the volume NAME."""
    ControlPlane().request("POST", f"/api/volumes/{quote(name)}", params={"env": env})
    click.echo(f"✓ Created volume {name} in {env}")


@volume.command("list")
@env_option
@json_option
def list_volumes(env: str, as_json: bool) -> None:
    """List volumes."""
    volumes = ControlPlane().request("GET", "/api/volumes", params={"env": env}).json()
    if as_json:
        click.echo(json.dumps(volumes, indent=2))
        return
    table = Table(title=f"Volumes ({env})")
    table.add_column("Name", no_wrap=True)
    table.add_column("Created")
    for info in volumes:
        table.add_row(info["name"], format_time(info["created_at"]))
    out_console().print(table)


@volume.command("ls")
@click.argument("name")
@click.argument("path", default="/")
@env_option
@json_option
def ls(name: str, path: str, env: str, as_json: bool) -> None:
    """List the files at PATH (default: the root) of the volume NAME."""
    entries = ControlPlane().request("GET", f"/api/volumes/{quote(name)}/ls",
                                     params={"env": env, "path": path}).json()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        click.echo(entry["path"] + ("/" if entry["type"] == "dir" else ""))


@volume.command("put")
@click.argument("name")
@click.argument("local_path", type=click.Path(exists=True, path_type=Path))
@click.argument("remote_path", default="/")
@env_option
def put(name: str, local_path: Path, remote_path: str, env: str) -> None:
    """Upload LOCAL_PATH (a file or a folder) into the volume NAME at REMOTE_PATH."""
    client = ControlPlane()
    files = [local_path] if local_path.is_file() else sorted(p for p in local_path.rglob("*") if p.is_file())
    for file in files:
        if local_path.is_file():
            target = remote_path + local_path.name if remote_path.endswith("/") else remote_path
        else:
            target = remote_path.rstrip("/") + "/" + file.relative_to(local_path).as_posix()
        client.request("PUT", _files(name, target), params={"env": env}, content=file.read_bytes())
        click.echo(f"✓ {file} → {name}:{'/' + target.lstrip('/')}")


@volume.command("get")
@click.argument("name")
@click.argument("remote_path")
@click.argument("local_path", default="-")
@env_option
def get(name: str, remote_path: str, local_path: str, env: str) -> None:
    """Download the file REMOTE_PATH of the volume NAME to LOCAL_PATH ('-', the default, is stdout)."""
    data = ControlPlane().request("GET", _files(name, remote_path), params={"env": env}).content
    if local_path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    target = Path(local_path)
    if target.is_dir():
        target = target / Path(remote_path).name
    target.write_bytes(data)
    click.echo(f"✓ {name}:{remote_path} → {target}")


@volume.command("rm")
@click.argument("name")
@click.argument("remote_path")
@click.option("--recursive", "-r", is_flag=True, help="Remove a directory and everything in it.")
@env_option
def rm(name: str, remote_path: str, recursive: bool, env: str) -> None:
    """Remove the file (or, with -r, the directory) REMOTE_PATH of the volume NAME."""
    ControlPlane().request("DELETE", _files(name, remote_path),
                           params={"env": env, "recursive": "true" if recursive else "false"})
    click.echo(f"✓ Removed {name}:{remote_path}")


@volume.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@env_option
def delete_volume(name: str, yes: bool, env: str) -> None:
    """Delete the volume NAME and all its files."""
    if not yes:
        click.confirm(f"Delete volume {name} and all its files?", abort=True)
    ControlPlane().request("DELETE", f"/api/volumes/{quote(name)}", params={"env": env})
    click.echo(f"✓ Deleted volume {name}")
