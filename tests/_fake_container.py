"""A stand-in for `python -m shipyard.container` that speaks the status protocol (tests only).

Behaviour is chosen by env FAKE_MODE: serve (default), failed, exit, hang, crash.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

spec = json.loads(Path(sys.argv[1]).read_text())
status = os.fdopen(int(os.environ["SHIPYARD_STATUS_FD"]), "w", buffering=1)
mode = os.environ.get("FAKE_MODE", "serve")
held: list[socket.socket] = []


def report(**event: object) -> None:
    status.write(json.dumps(event) + "\n")


def interface_address(name: str) -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", name.encode()))  # SIOCGIFADDR
    except OSError:
        return None
    finally:
        probe.close()
    return socket.inet_ntoa(packed[20:24])


def default_route_interface() -> str | None:
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return fields[0]
    return None


def bind(host: str, port: int) -> str:
    sock = socket.socket()
    try:
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        return str(exc)
    held.append(sock)
    return "ok"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/bind":
            body: object = {"loopback": bind("127.0.0.1", 8000), "any": bind("0.0.0.0", 8001)}
        elif self.path == "/net":
            body = {"tap0": interface_address("tap0"), "route": default_route_interface()}
        elif self.path == "/mount":
            mount = Path(os.environ["FAKE_MOUNT"])
            try:
                (mount / "new.txt").write_text("x")
                write = "ok"
            except OSError as exc:
                write = str(exc)
            body = {"content": (mount / "hello.txt").read_text(), "write": write}
        elif self.path == "/spawn":
            child = subprocess.Popen("sleep 987654", shell=True)
            body = {"pid": child.pid}
        else:
            body = {
                "secret": os.environ.get("MY_SECRET"),
                "env": dict(os.environ),
                "cmdline": Path("/proc/self/cmdline").read_text().split("\0"),
                "cwd": os.getcwd(),
            }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print("request", self.path, flush=True)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def on_term(signum: int, frame: object) -> None:
    print("got SIGTERM, draining", flush=True)
    threading.Thread(target=server.shutdown).start()


print("fake container starting", spec["container_id"], flush=True)
report(event="phase", name="imports", seconds=0.25)
if mode == "failed":
    report(event="failed", error="Traceback (most recent call last):\nValueError: bad app")
    sys.exit(1)
if mode == "exit":
    print("something went wrong early", file=sys.stderr, flush=True)
    sys.exit(2)
if mode == "hang":
    time.sleep(3600)

server = Server(spec["socket_path"], Handler)
if os.environ.get("FAKE_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_term)
report(event="phase", name="enter", seconds=0.5)
report(event="ready")
if mode == "crash":
    time.sleep(0.3)
    print("fatal: boom", file=sys.stderr, flush=True)
    os._exit(3)
server.serve_forever()
print("drained, bye", flush=True)
