"""Start a background `shipyard server` when `serve`/`deploy` find none answering."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from shipyard._paths import HomeLayout, default_home
from shipyard.cli._client import ApiClient, discover_url, read_admin_token
from shipyard.cli._output import err_console
from shipyard.exceptions import ServerError

STARTUP_WAIT_S = 20.0
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def connect(home: Path | None = None, *, autostart: bool = False) -> ApiClient:
    """A client for the discovered server; with `autostart`, start a local server first if none answers."""
    home = home or default_home()
    url = discover_url(home)
    if autostart:
        with ApiClient(url, None) as probe:
            running = probe.health() is not None
        if not running:
            start_background_server(home, url)
    return ApiClient(url, read_admin_token(home))


def start_background_server(home: Path, url: str) -> None:
    """Spawn a detached server that listens where `url` points and wait until it answers."""
    parsed = httpx.URL(url)
    if parsed.host not in _LOOPBACK_HOSTS:
        raise ServerError(f"Cannot reach the Shipyard server at {url}; it is not on this machine, so it "
                          "cannot be started from here")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    layout = HomeLayout(home)
    layout.root.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "shipyard.cli", "server", "--host", parsed.host, "--port", str(port)]
    with layout.server_log.open("ab") as log:
        # A new session: the server outlives this command and does not get the terminal's Ctrl-C.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True)
    err_console().print("No Shipyard server running; started one in the background "
                        f"(logs: {layout.server_log})")
    deadline = time.monotonic() + STARTUP_WAIT_S
    with ApiClient(url, None) as probe:
        while time.monotonic() < deadline:
            # Health first: when another command started a server at the same moment, ours exits (port taken)
            # but theirs answers, which is all we need.
            if probe.health() is not None:
                return
            if process.poll() is not None:
                raise ServerError(f"The background server exited with code {process.returncode}:\n"
                                  f"{_log_tail(layout.server_log)}")
            time.sleep(0.2)
    raise ServerError(f"The background server did not answer at {url} within {STARTUP_WAIT_S:.0f} s; "
                      f"see {layout.server_log}")


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
