"""`shipyard serve`: ephemeral app, live reload keeping the URL, Ctrl-C removes the app."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

from .conftest import SHIPYARD, Platform, parse_urls

SOURCE = '''
from shipyard import App, fastapi_endpoint
app = App("live")
@app.function()
@fastapi_endpoint()
def greet():
    return "GREETING"
'''


def read_url(process: subprocess.Popen[str]) -> tuple[str, list[str]]:
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        urls = parse_urls(line)
        if urls:
            return urls["greet"], lines
    raise AssertionError("serve printed no URL:\n" + "".join(lines))


def test_serve_live_reload_and_ctrl_c(platform: Platform, app_file: Any) -> None:
    path = app_file(SOURCE.replace("GREETING", "hello v1"))
    process = subprocess.Popen(
        [SHIPYARD, "serve", str(path), "--timeout", "120"],
        env=platform.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url, _ = read_url(process)
        assert "-dev." in url
        with platform.client(url, timeout=60) as client:
            assert client.get("/").json() == "hello v1"
            path.write_text(SOURCE.replace("GREETING", "hello v2"))
            saved = time.monotonic()
            answer = None
            while time.monotonic() - saved < 2.0:
                answer = client.get("/").json()
                if answer == "hello v2":
                    break
                time.sleep(0.05)
            assert answer == "hello v2", "the edit was not live within 2 s of the save"
            # A broken save keeps the last good version serving.
            path.write_text("def broken(:\n")
            time.sleep(1.0)
            assert client.get("/").json() == "hello v2"
        assert any(a["name"] == "live" for a in platform.apps())
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "SyntaxError" in err + out
        assert not any(a["name"] == "live" for a in platform.apps())
    finally:
        if process.poll() is None:
            process.kill()
