"""`shipyard serve`: an ephemeral app that redeploys when its source changes."""

from __future__ import annotations

import signal
import threading
import types
from pathlib import Path
from typing import Any

import click
import watchfiles
from rich.text import Text

from shipyard import spec
from shipyard.cli._client import ApiClient
from shipyard.cli._deploy import (
    app_file_argument,
    deploy_with_progress,
    echo_functions,
    load_and_deploy,
    load_request,
    name_option,
)
from shipyard.cli._output import env_option, err_console
from shipyard.exceptions import NotFoundError, ShipyardError

HEARTBEAT_INTERVAL_S = 5.0
# watchfiles yields once no new event arrived for STEP ms (editors save in several writes), and at the latest
# after DEBOUNCE ms; both are small so a reload starts well within the 2 s budget.
WATCH_STEP_MS = 100
WATCH_DEBOUNCE_MS = 500


def source_filter(app_file: Path) -> Any:
    """watchfiles filter: Python sources (and the app file whatever its suffix), minus editor/VCS noise."""
    default = watchfiles.DefaultFilter()
    app_path = str(app_file)

    def accept(change: Any, path: str) -> bool:
        return bool(default(change, path)) and (path.endswith(".py") or path == app_path)

    return accept


class _Heartbeat(threading.Thread):
    """Keeps the ephemeral app alive; the server removes it 30 s after the last beat."""

    def __init__(self, client: ApiClient, app_id: str, stop: threading.Event) -> None:
        super().__init__(name="shipyard-heartbeat", daemon=True)
        self._client = client
        self._app_id = app_id
        self._stop = stop

    def run(self) -> None:
        failing = False
        with ApiClient(self._client.base_url, self._client.token) as client:
            while not self._stop.wait(HEARTBEAT_INTERVAL_S):
                try:
                    client.heartbeat(self._app_id)
                except ShipyardError as exc:
                    if not failing:
                        err_console().print(Text.assemble(("Heartbeat failed: ", "yellow"), str(exc)))
                    failing = True
                else:
                    failing = False


def _raise_interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command()
@app_file_argument
@name_option
@env_option
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop serving after this many seconds.")
def serve(file: Path, name: str | None, env: str, timeout: float | None) -> None:
    """Serve the app in FILE as an ephemeral app, redeploying it on every save."""
    file = file.resolve()
    client, request, response = load_and_deploy(file, name=name, env=env, ephemeral=True)
    stop = threading.Event()
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
    timer = threading.Timer(timeout, stop.set) if timeout is not None else None
    try:
        click.echo(f"✓ Serving {response.name} ({response.app_id}); watching {file.parent} for changes. "
                   "Ctrl-C to stop.")
        _Heartbeat(client, response.app_id, stop).start()
        if timer is not None:
            timer.daemon = True
            timer.start()
        _watch_and_reload(client, file, request, stop)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        signal.signal(signal.SIGTERM, previous_sigterm)
    try:
        client.delete_app_by_id(response.app_id)
    except NotFoundError:
        pass  # the server already dropped it (restarted, or missed heartbeats)
    finally:
        client.close()
    click.echo(f"Stopped app {response.name}")


def _watch_and_reload(client: ApiClient, file: Path, first: spec.DeployRequest,
                      stop: threading.Event) -> None:
    changes = watchfiles.watch(file.parent, watch_filter=source_filter(file), debounce=WATCH_DEBOUNCE_MS,
                               step=WATCH_STEP_MS, stop_event=stop)
    for _batch in changes:
        _reload(client, file, first)


def _reload(client: ApiClient, file: Path, first: spec.DeployRequest) -> None:
    console = err_console()
    try:
        # The first load's name pins the app, so that the server reuses its id and URLs.
        request = load_request(file, name=first.app.name, env=first.environment, ephemeral=True)
        response = deploy_with_progress(client, request)
    except ShipyardError as exc:
        console.print(Text.assemble(("Error: ", "red"), str(exc)))
        console.print("Keeping the previous version running.")
        return
    click.echo(f"Reloaded {response.name} (version {response.version})")
    echo_functions(response)
