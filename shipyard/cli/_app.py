"""`shipyard app list | stop | logs | scale`."""

from __future__ import annotations

import click
from rich.table import Table

from shipyard import spec
from shipyard.cli._autostart import connect
from shipyard.cli._output import echo_json, env_option, format_time, json_option, out_console


@click.group()
def app() -> None:
    """Manage deployed and served apps."""


@app.command("list")
@click.option("--env", "-e", "env", default="main", show_default=True, metavar="ENV",
              help="Environment to list, or '*' for all.")
@json_option
def list_apps(env: str, as_json: bool) -> None:
    """List apps."""
    with connect() as client:
        apps = client.list_apps(env)
    if as_json:
        echo_json(apps)
        return
    out_console().print(apps_table(apps, show_env=env == "*"))


def apps_table(apps: list[spec.AppInfo], *, show_env: bool) -> Table:
    table = Table(title="Apps")
    table.add_column("Name", no_wrap=True)
    if show_env:
        table.add_column("Env")
    table.add_column("App ID", no_wrap=True)
    table.add_column("State")
    table.add_column("Version", justify="right")
    table.add_column("Functions / URLs", overflow="fold")
    table.add_column("Containers", justify="right")
    table.add_column("Created")
    for info in apps:
        functions = "\n".join(f"{fn.tag} => {fn.url}" if fn.url else fn.tag for fn in info.functions)
        row = [info.name, *([info.environment] if show_env else []), info.app_id, info.state,
               str(info.version), functions or "-", str(info.containers), format_time(info.created_at)]
        table.add_row(*row)
    return table


@app.command("stop")
@click.argument("name")
@env_option
def stop_app(name: str, env: str) -> None:
    """Stop the app NAME and its containers."""
    with connect() as client:
        result = client.stop_app(name, env)
    click.echo(f"✓ Stopped app {name} ({result.get('app_id', '?')})")


@app.command("logs")
@click.argument("name")
@env_option
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new lines until Ctrl-C.")
def app_logs(name: str, env: str, follow: bool) -> None:
    """Print the logs of the app NAME's containers."""
    with connect() as client:
        try:
            for line in client.app_logs(name, env, follow):
                click.echo(line)
        except KeyboardInterrupt:
            pass


@app.command("scale")
@click.argument("name")
@click.argument("function")
@env_option
@click.option("--min", "min_containers", type=click.IntRange(min=0), help="Containers kept running.")
@click.option("--max", "max_containers", type=click.IntRange(min=1), help="Most containers at once.")
@click.option("--buffer", "buffer_containers", type=click.IntRange(min=0),
              help="Idle extra containers while the function is busy.")
@click.option("--scaledown-window", type=click.FloatRange(min=0, min_open=True),
              help="Seconds a container may stay idle before it is stopped.")
def scale(name: str, function: str, env: str, min_containers: int | None, max_containers: int | None,
          buffer_containers: int | None, scaledown_window: float | None) -> None:
    """Change how the function FUNCTION of the app NAME scales, without a redeploy.

    The change applies at once and survives server restarts; the next deploy of the app replaces
    it with the settings in its code.
    """
    changes = {key: value for key, value in {
        "min_containers": min_containers, "max_containers": max_containers,
        "buffer_containers": buffer_containers, "scaledown_window": scaledown_window,
    }.items() if value is not None}
    if not changes:
        raise click.UsageError("give at least one of --min, --max, --buffer, --scaledown-window")
    with connect() as client:
        settings = client.scale_function(name, function, env, changes)
    maximum = "unlimited" if settings.max_containers is None else str(settings.max_containers)
    click.echo(f"✓ Scaling of {name}.{function}: min {settings.min_containers}, max {maximum}, "
               f"buffer {settings.buffer_containers}, scaledown window {settings.scaledown_window:g} s")
