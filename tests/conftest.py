"""Fixtures that run the real platform: a `shipyard server` process, the real CLI, real HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ._ray_cluster import RayCluster, start_cluster

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def platform_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SHIPYARD_HOME"] = str(home)
    env.pop("SHIPYARD_SERVER_URL", None)
    env.pop("SHIPYARD_TOKEN", None)
    # Image builds install from the wheelhouse `make install` filled: no network at test time.
    env["UV_OFFLINE"] = "1"
    env["UV_FIND_LINKS"] = str(ROOT / ".wheelhouse")
    env["UV_NO_INDEX"] = "1"
    return env


@dataclass
class Platform:
    home: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    server_args: tuple[str, ...] = ()
    """Extra `shipyard server` options (limits)."""

    @property
    def env(self) -> dict[str, str]:
        return platform_env(self.home)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_token(self) -> str:
        return (self.home / "admin_token").read_text().strip()

    def start(self) -> None:
        log = (self.home / "test-server.log").open("ab")
        self.process = subprocess.Popen(
            [SHIPYARD, "server", "--port", str(self.port), *self.server_args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.server_log()
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not start:\n" + self.server_log())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def server_log(self) -> str:
        path = self.home / "test-server.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [SHIPYARD, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"shipyard {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def deploy(self, path: Path, *extra: str) -> dict[str, str]:
        """Deploy an app file with the CLI; return {function tag: URL} from its output."""
        result = self.cli("deploy", str(path), *extra)
        return parse_urls(result.stdout)

    def client(self, url: str, **kwargs: object) -> httpx.Client:
        """An HTTP client for a function URL: connects to the loopback port with the right Host."""
        return httpx.Client(transport=HostTransport(url, self.port), base_url=url, **kwargs)  # type: ignore[arg-type]

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def apps(self) -> list[dict[str, object]]:
        return json.loads(self.cli("app", "list", "--json", "--env", "*").stdout)  # type: ignore[no-any-return]


class HostTransport(httpx.HTTPTransport):
    """Sends requests for `*.localhost` URLs to 127.0.0.1:port, keeping the Host header."""

    def __init__(self, url: str, port: int) -> None:
        super().__init__()
        self._port = port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1", port=self._port)
        return super().handle_request(request)


def parse_urls(output: str) -> dict[str, str]:
    urls = {}
    for line in output.splitlines():
        if line.startswith("Created web function ") and " => " in line:
            name, _, url = line[len("Created web function ") :].partition(" => ")
            urls[name.strip()] = url.split()[0]
    return urls


def host_of(url: str) -> str:
    return httpx.URL(url).host


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One server shared by the tests that only deploy apps."""
    home = tmp_path_factory.mktemp("home")
    server = Platform(home=home, port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_platform(tmp_path: Path) -> Iterator[Platform]:
    """A server of the test's own, for tests that restart or break it."""
    server = Platform(home=tmp_path / "home", port=free_port())
    server.home.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A real three-node Ray cluster on this machine (see tests/_ray_cluster.py)."""
    pytest.importorskip("ray")
    yield from start_cluster()


@pytest.fixture(scope="session")
def ray_platform(tmp_path_factory: pytest.TempPathFactory, ray_cluster: RayCluster) -> Iterator[Platform]:
    """One server whose containers run on the Ray cluster."""
    home = tmp_path_factory.mktemp("ray-home")
    server = Platform(home=home, port=free_port(), server_args=(
        "--runtime", "ray", "--ray-address", ray_cluster.address,
        "--ray-node-dir", str(ray_cluster.node_root)))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "ray"])
def runtime_platform(request: pytest.FixtureRequest) -> Platform:
    """The shared server of each runtime: tests taking this run once per runtime."""
    name = "platform" if request.param == "local" else "ray_platform"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def app_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write an app file from source text into a fresh folder."""

    def write(source: str, name: str = "app.py") -> Path:
        folder = tmp_path / f"src{len(list(tmp_path.glob('src*')))}"
        folder.mkdir()
        path = folder / name
        path.write_text(source)
        return path

    return write


def copy_example(name: str, target: Path, *, as_modal: bool = False) -> Path:
    source = (EXAMPLES / name).read_text()
    if as_modal:
        source = source.replace("from shipyard import", "from modal import").replace(
            "import shipyard", "import modal"
        )
    target.mkdir(parents=True, exist_ok=True)
    path = target / name
    path.write_text(source)
    return path


__all__ = ["EXAMPLES", "Platform", "copy_example", "free_port", "host_of", "parse_urls", "shutil"]
