"""`Dict`: named key-value stores in the control plane's SQLite (migration 4).

Keys and values arrive cloudpickled and are stored as opaque BLOBs: they are the user's payloads. Equal keys
must pickle to equal bytes, which holds for the usual key types (str, int, bytes, tuples of them).
"""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from .._labels import validate_object_name
from ..exceptions import InvalidError, NotFoundError
from ._store import Store


class DictOp(BaseModel):
    key: str | None = None
    """Base64 of the cloudpickled key."""
    value: str | None = None
    skip_if_exists: bool = False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None, what: str) -> bytes:
    if text is None:
        raise InvalidError(f"The Dict operation needs a {what}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidError(f"The {what} is not valid base64") from None


class DictStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    def ensure(self, name: str, environment: str, *, create: bool) -> None:
        validate_object_name(name, "dict")
        with self._store._transaction() as conn:
            exists = conn.execute("SELECT 1 FROM dicts WHERE name = ? AND environment = ?",
                                  (name, environment)).fetchone()
            if exists:
                return
            if not create:
                raise NotFoundError(f"Dict '{name}' not found in environment '{environment}'; pass "
                                    "create_if_missing=True to create it")
            conn.execute("INSERT INTO dicts (name, environment, created_at) VALUES (?, ?, ?)",
                         (name, environment, time.time()))

    def delete(self, name: str, environment: str) -> None:
        with self._store._transaction() as conn:
            if conn.execute("DELETE FROM dicts WHERE name = ? AND environment = ?",
                            (name, environment)).rowcount == 0:
                raise NotFoundError(f"Dict '{name}' not found in environment '{environment}'")

    def run(self, name: str, environment: str, op: str, body: DictOp) -> dict[str, Any]:
        self.ensure(name, environment, create=False)
        where = (name, environment)
        with self._store._transaction() as conn:
            if op == "get":
                row = conn.execute("SELECT value FROM dict_entries WHERE name = ? AND environment = ? "
                                   "AND key = ?", (*where, _unb64(body.key, "key"))).fetchone()
                return {"found": row is not None, "value": None if row is None else _b64(row["value"])}
            if op == "put":
                key, value = _unb64(body.key, "key"), _unb64(body.value, "value")
                verb = "INSERT OR IGNORE" if body.skip_if_exists else "INSERT OR REPLACE"
                cursor = conn.execute(f"{verb} INTO dict_entries (name, environment, key, value) "
                                      "VALUES (?, ?, ?, ?)", (*where, key, value))
                return {"written": cursor.rowcount > 0}
            if op == "pop":
                key = _unb64(body.key, "key")
                row = conn.execute("SELECT value FROM dict_entries WHERE name = ? AND environment = ? "
                                   "AND key = ?", (*where, key)).fetchone()
                conn.execute("DELETE FROM dict_entries WHERE name = ? AND environment = ? AND key = ?",
                             (*where, key))
                return {"found": row is not None, "value": None if row is None else _b64(row["value"])}
            if op == "len":
                row = conn.execute("SELECT COUNT(*) AS n FROM dict_entries "
                                   "WHERE name = ? AND environment = ?", where).fetchone()
                return {"len": row["n"]}
            if op == "items":
                rows = conn.execute("SELECT key, value FROM dict_entries WHERE name = ? AND environment = ? "
                                    "ORDER BY rowid", where).fetchall()
                return {"items": [[_b64(r["key"]), _b64(r["value"])] for r in rows]}
            if op == "clear":
                conn.execute("DELETE FROM dict_entries WHERE name = ? AND environment = ?", where)
                return {"ok": True}
        raise InvalidError(f"Unknown Dict operation {op!r}")


def dict_routes(dicts: DictStore, auth: object) -> APIRouter:
    router = APIRouter(prefix="/api/dicts", dependencies=[auth])  # type: ignore[list-item]

    @router.post("/{name}")
    def ensure(name: str, env: str = "main", create_if_missing: bool = False) -> dict[str, bool]:
        dicts.ensure(name, env, create=create_if_missing)
        return {"ok": True}

    @router.delete("/{name}")
    def delete(name: str, env: str = "main") -> dict[str, bool]:
        dicts.delete(name, env)
        return {"ok": True}

    @router.post("/{name}/{op}")
    def run(name: str, op: str, body: DictOp, env: str = "main") -> dict[str, Any]:
        return dicts.run(name, env, op, body)

    return router
