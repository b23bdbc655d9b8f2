"""Each container has its own network namespace: user servers cannot collide or break the platform."""

from __future__ import annotations

from typing import Any

from .conftest import Platform

SERVER_APP = '''
import subprocess, sys
from shipyard import App, web_server
app = App("{name}")
@app.function(min_containers={min_containers}, max_containers=2)
@web_server({port}, startup_timeout=10)
def serve():
    subprocess.Popen([sys.executable, "-c", """
import http.server, socketserver, uuid
ID = uuid.uuid4().hex
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("{name}:" + ID).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
socketserver.TCPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("0.0.0.0", {port}), H).serve_forever()
"""])
'''


def test_two_apps_bind_port_8000_and_one_binds_the_platform_port(platform: Platform, app_file: Any) -> None:
    first = platform.deploy(app_file(SERVER_APP.format(name="port-a", port=8000, min_containers=2)))
    second = platform.deploy(app_file(SERVER_APP.format(name="port-b", port=8000, min_containers=0)))
    squatter = platform.deploy(
        app_file(SERVER_APP.format(name="squatter", port=platform.port, min_containers=0))
    )
    with platform.client(first["serve"], timeout=60) as a, platform.client(second["serve"], timeout=60) as b:
        answers_a = {a.get("/").text for _ in range(6)}
        assert all(text.startswith("port-a:") for text in answers_a)
        assert b.get("/").text.startswith("port-b:")
    with platform.client(squatter["serve"], timeout=60) as s:
        assert s.get("/").text.startswith("squatter:")
    assert platform.api("GET", "/api/health").status_code == 200


def test_web_server_that_never_listens_fails_clearly(platform: Platform, app_file: Any) -> None:
    urls = platform.deploy(app_file(
        "from shipyard import App, web_server\napp = App('deaf')\n"
        "@app.function()\n@web_server(8000, startup_timeout=1)\ndef serve():\n    pass\n"
    ))
    with platform.client(urls["serve"], timeout=60) as client:
        response = client.get("/")
    assert 500 <= response.status_code < 600
    assert "0.0.0.0:8000" in response.text
