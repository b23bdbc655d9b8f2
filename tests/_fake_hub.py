"""A local stand-in for the Hugging Face Hub: the routes `model_info` and `snapshot_download` use.

Repos are folders of files served at one commit; `main` is the only branch. A gated repo answers
401 with `X-Error-Code: GatedRepo` unless the request carries the repo's token.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    files: dict[str, Path]
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    token: str | None = None
    """A gated repo's token; None for a public repo."""
    seen_auth: list[str] = field(default_factory=list)


_INFO = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$")
_TREE = re.compile(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.handle(self, head=True)

            def do_GET(self) -> None:
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str) -> None:
        body = json.dumps({"error": code}).encode()
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _json(self, handler: BaseHTTPRequestHandler, payload: object, head: bool) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _repo(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str | None) -> FakeRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(handler, 401, "RepoNotFound")
            return None
        auth = handler.headers.get("Authorization") or ""
        repo.seen_auth.append(auth)
        if repo.token is not None and auth != f"Bearer {repo.token}":
            self._error(handler, 401, "GatedRepo")
            return None
        if revision not in (None, "main", repo.sha):
            self._error(handler, 404, "RevisionNotFound")
            return None
        return repo

    def handle(self, handler: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        if match := _TREE.match(path):
            repo = self._repo(handler, match[1], match[2])
            if repo is not None:
                entries = [{"type": "file", "path": name, "size": file.stat().st_size,
                            "oid": hashlib.sha1(name.encode()).hexdigest()}
                           for name, file in repo.files.items()]
                self._json(handler, entries, head)
        elif match := _INFO.match(path):
            repo = self._repo(handler, match[1], match[2])
            if repo is not None:
                siblings = [{"rfilename": name, "size": file.stat().st_size}
                            for name, file in repo.files.items()]
                self._json(handler, {"id": match[1], "modelId": match[1], "sha": repo.sha, "private": False,
                                     "siblings": siblings}, head)
        elif match := _RESOLVE.match(path):
            repo = self._repo(handler, match[1], match[2])
            if repo is None:
                return
            file = repo.files.get(match[3])
            if file is None:
                self._error(handler, 404, "EntryNotFound")
                return
            data = file.read_bytes()
            handler.send_response(200)
            handler.send_header("X-Repo-Commit", repo.sha)
            handler.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if not head:
                handler.wfile.write(data)
        else:
            self._error(handler, 404, "NotFound")
