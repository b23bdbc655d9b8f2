"""Where Shipyard keeps its state: everything lives under `SHIPYARD_HOME`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("SHIPYARD_HOME") or Path.home() / ".shipyard").expanduser()


@dataclass(frozen=True)
class HomeLayout:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "state.db"

    @property
    def admin_token(self) -> Path:
        return self.root / "admin_token"

    @property
    def server_info(self) -> Path:
        """JSON written by a running server: its URL and pid, so the CLI can find it."""
        return self.root / "server.json"

    @property
    def server_log(self) -> Path:
        return self.root / "server.log"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """Sockets and per-container scratch directories; emptied at server start."""
        return self.root / "run"

    def ensure(self) -> None:
        for path in (self.root, self.images, self.bundles, self.logs, self.run):
            path.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
