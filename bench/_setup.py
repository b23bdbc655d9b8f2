"""The things benchmarked: a Shipyard server, nginx in front of a container, Ray Serve."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
RAY_VENV = BENCH / ".venv-ray"
RAY_SPEC = "ray[serve]==2.60.0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str], **kwargs: object) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return str(result.stdout)


class Server:
    """`shipyard server` in its own SHIPYARD_HOME."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.port = free_port()
        self.args = args
        self.env = dict(os.environ, SHIPYARD_HOME=str(home), UV_OFFLINE="1", UV_NO_INDEX="1",
                        UV_FIND_LINKS=str(ROOT / ".wheelhouse"))
        self.env.pop("SHIPYARD_SERVER_URL", None)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> str:
        return " ".join(["shipyard", "server", "--port", str(self.port), *self.args])

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = (self.home / "server.log").open("ab")
        self.process = subprocess.Popen([SHIPYARD, "server", "--port", str(self.port), *self.args],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/api/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def cli(self, *args: str) -> str:
        return run([SHIPYARD, *args], env=self.env, timeout=600)

    def deploy(self, app: str) -> str:
        """Deploy bench/apps/APP; return the Host header of its (single) web function."""
        output = self.cli("deploy", str(BENCH / "apps" / app))
        for line in output.splitlines():
            if " => " in line:
                return httpx.URL(line.split(" => ", 1)[1].split()[0]).host
        raise RuntimeError(f"no URL in the deploy output:\n{output}")

    def containers(self, app: str) -> int:
        for info in json.loads(self.cli("app", "list", "--json")):
            if info["name"] == app and info["state"] != "stopped":
                return int(info["containers"])
        return 0

    def wait_containers(self, app: str, predicate: object, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.containers(app)):  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise RuntimeError(f"containers of {app} never reached the wanted count")

    def sockets(self) -> list[Path]:
        return sorted((self.home / "run").glob("ctr-*.sock"))


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream container {{
        server unix:{socket};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://container;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


def ensure_nginx() -> str | None:
    """The nginx binary, installed from Debian if missing; None when it cannot be had."""
    if shutil.which("nginx") is None and shutil.which("apt-get") is not None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], capture_output=True, check=False)
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


@contextlib.contextmanager
def nginx(binary: str, workdir: Path, socket_path: Path) -> Iterator[int]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    # As root, nginx's worker would run as nobody and could not open the container's socket.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, dir=workdir, socket=socket_path, port=port))
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, 10)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def ensure_ray() -> tuple[Path | None, str]:
    """The Ray Serve venv's python (built once by pip, or $SHIPYARD_BENCH_RAY_PYTHON), or None and why."""
    python = Path(os.environ.get("SHIPYARD_BENCH_RAY_PYTHON") or RAY_VENV / "bin" / "python")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(RAY_VENV)], check=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", RAY_SPEC],
                                capture_output=True, text=True, check=False, timeout=900)
        if result.returncode != 0:
            shutil.rmtree(RAY_VENV, ignore_errors=True)
            return None, f"`pip install {RAY_SPEC}` failed: {result.stderr.strip()[-300:]}"
    version = run([str(python), "-c", "import ray; print(ray.__version__)"]).strip()
    return python, version


@contextlib.contextmanager
def ray_serve(python: Path) -> Iterator[int]:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="shipyard-bench-ray-")) / "ray.log"
    process = subprocess.Popen([str(python), str(BENCH / "apps" / "ray_ping.py"), str(port)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"),
                               text=True)
    try:
        assert process.stdout is not None
        if not any("READY" in line for line in process.stdout):
            raise RuntimeError(f"Ray Serve did not start:\n{log.read_text()[-3000:]}")
        _wait_port(port, 60)
        yield port
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def machine() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores; memory {memory}",
        f"Kernel: {os.uname().release}; Python {sys.version.split()[0]}",
        "Load average when the run started (other work on the machine): "
        + ", ".join(f"{load:.2f}" for load in os.getloadavg()),
    ]
