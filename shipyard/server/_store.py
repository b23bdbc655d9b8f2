"""The control plane's persistent state: one SQLite file (WAL mode), specs stored as JSON.

The API calls the store from worker threads, so the single connection is guarded by a lock; every public
method is one short transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from shipyard._tokens import hash_secret, new_id, new_proxy_token
from shipyard.exceptions import AlreadyExistsError, InvalidError, NotFoundError
from shipyard.server._migrations import migrate
from shipyard.spec import (
    AppSpec,
    AppState,
    AutoscalerSettings,
    FunctionSpec,
    ProxyTokenCreated,
    ProxyTokenInfo,
    SecretInfo,
)

_SECRET_NAME = re.compile(r"[A-Za-z0-9._-]+")
_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_APP_STATES: tuple[AppState, ...] = ("deployed", "ephemeral", "stopped")


@dataclass(frozen=True)
class AppRecord:
    app_id: str
    name: str
    environment: str
    state: AppState
    version: int
    created_at: float
    updated_at: float
    bundle_dir: str
    spec: AppSpec
    heartbeat_at: float | None


@dataclass(frozen=True)
class FunctionRecord:
    function_id: str
    app_id: str
    tag: str
    spec: FunctionSpec


_APP_COLUMNS = ("app_id, name, environment, state, version, created_at, updated_at, bundle_dir, spec_json, "
                "heartbeat_at")


def _app_from_row(row: sqlite3.Row) -> AppRecord:
    return AppRecord(
        app_id=row["app_id"],
        name=row["name"],
        environment=row["environment"],
        state=cast(AppState, row["state"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        bundle_dir=row["bundle_dir"],
        spec=AppSpec.model_validate_json(row["spec_json"]),
        heartbeat_at=row["heartbeat_at"],
    )


def _create_private_file(path: Path) -> None:
    # Created 0600 before SQLite opens it (SQLite gives its -wal/-shm files the database file's mode): the
    # file holds secret values, so it must never be readable by other users, not even briefly.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def validate_secret_name(name: str) -> None:
    if not _SECRET_NAME.fullmatch(name):
        raise InvalidError(f"Invalid secret name {name!r}: use only letters, digits, '.', '_' and '-'")


def _validate_secret_keys(values: dict[str, str]) -> None:
    if not values:
        raise InvalidError("A secret needs at least one KEY=VALUE pair")
    bad = [key for key in values if not _ENV_VAR_NAME.fullmatch(key)]
    if bad:
        raise InvalidError(f"Invalid secret key(s) {', '.join(map(repr, bad))}: keys become environment "
                           "variables, so they must match [A-Za-z_][A-Za-z0-9_]*")


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        _create_private_file(path)
        self._lock = threading.Lock()
        # isolation_level=None: transactions are explicit (see `_transaction`), never opened behind our back.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self.schema_version = migrate(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- apps ---------------------------------------------------------------------------------------------

    def upsert_app(self, name: str, environment: str, *, ephemeral: bool, spec: AppSpec,
                   bundle_dir: str, now: float) -> AppRecord:
        """Record a deploy: a new version of the live app of that name, or a new app if none is live."""
        state: AppState = "ephemeral" if ephemeral else "deployed"
        spec_json = spec.model_dump_json()
        heartbeat = now if ephemeral else None
        with self._transaction() as conn:
            # A `serve` session and a deployed app of the same name are separate apps (with separate
            # `-dev` URLs), so that ending the session never removes the deployed one.
            row = conn.execute("SELECT app_id, version FROM apps WHERE name = ? AND environment = ? "
                               "AND state = ?", (name, environment, state)).fetchone()
            if row is None:
                app_id, version = new_id("ap"), 1
                conn.execute(
                    f"INSERT INTO apps ({_APP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (app_id, name, environment, state, version, now, now, bundle_dir, spec_json, heartbeat))
            else:
                app_id, version = row["app_id"], row["version"] + 1
                conn.execute(
                    "UPDATE apps SET state = ?, version = ?, updated_at = ?, bundle_dir = ?, spec_json = ?, "
                    "heartbeat_at = ? WHERE app_id = ?",
                    (state, version, now, bundle_dir, spec_json, heartbeat, app_id))
            for function in spec.functions:
                # The function id survives redeploys (it keys the proxy's queues and the containers),
                # so only the version and spec of an existing (app, tag) row change.
                conn.execute(
                    "INSERT INTO functions (function_id, app_id, tag, version, spec_json) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (app_id, tag) DO UPDATE SET "
                    "version = excluded.version, spec_json = excluded.spec_json",
                    (new_id("fu"), app_id, function.tag, version, function.model_dump_json()))
            return _app_from_row(conn.execute(f"SELECT {_APP_COLUMNS} FROM apps WHERE app_id = ?",
                                              (app_id,)).fetchone())

    def get_app(self, app_id: str) -> AppRecord:
        rows = self._query(f"SELECT {_APP_COLUMNS} FROM apps WHERE app_id = ?", (app_id,))
        if not rows:
            raise NotFoundError(f"App {app_id!r} not found")
        return _app_from_row(rows[0])

    def find_live_app(self, name: str, environment: str) -> AppRecord | None:
        rows = self._query(f"SELECT {_APP_COLUMNS} FROM apps WHERE name = ? AND environment = ? "
                           "AND state != 'stopped' ORDER BY state = 'ephemeral'", (name, environment))
        return _app_from_row(rows[0]) if rows else None

    def find_app(self, name: str, environment: str) -> AppRecord:
        """The live (deployed or ephemeral) app of that name."""
        record = self.find_live_app(name, environment)
        if record is None:
            raise NotFoundError(f"App '{name}' not found in environment '{environment}' "
                                "(it is not deployed or was stopped)")
        return record

    def list_apps(self, environment: str | None) -> list[AppRecord]:
        """Apps of one environment (every environment for None), stopped ones included, oldest first."""
        if environment is None:
            rows = self._query(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY created_at, rowid")
        else:
            rows = self._query(f"SELECT {_APP_COLUMNS} FROM apps WHERE environment = ? "
                               "ORDER BY created_at, rowid", (environment,))
        return [_app_from_row(row) for row in rows]

    def live_apps(self) -> list[AppRecord]:
        rows = self._query(f"SELECT {_APP_COLUMNS} FROM apps WHERE state != 'stopped' "
                           "ORDER BY created_at, rowid")
        return [_app_from_row(row) for row in rows]

    def set_app_state(self, app_id: str, state: AppState) -> None:
        if state not in _APP_STATES:
            raise InvalidError(f"Unknown app state {state!r}")
        try:
            with self._transaction() as conn:
                cursor = conn.execute("UPDATE apps SET state = ? WHERE app_id = ?", (state, app_id))
                if cursor.rowcount == 0:
                    raise NotFoundError(f"App {app_id!r} not found")
        except sqlite3.IntegrityError as exc:
            raise InvalidError(f"Cannot make app {app_id!r} {state}: another live app has its name") from exc

    def set_bundle_dir(self, app_id: str, bundle_dir: str) -> None:
        with self._transaction() as conn:
            if conn.execute("UPDATE apps SET bundle_dir = ? WHERE app_id = ?",
                            (bundle_dir, app_id)).rowcount == 0:
                raise NotFoundError(f"App {app_id!r} not found")

    def delete_app(self, app_id: str) -> None:
        with self._transaction() as conn:
            if conn.execute("DELETE FROM apps WHERE app_id = ?", (app_id,)).rowcount == 0:
                raise NotFoundError(f"App {app_id!r} not found")

    def touch_heartbeat(self, app_id: str, now: float) -> None:
        with self._transaction() as conn:
            if conn.execute("UPDATE apps SET heartbeat_at = ? WHERE app_id = ?", (now, app_id)).rowcount == 0:
                raise NotFoundError(f"App {app_id!r} not found")

    def stale_ephemeral_apps(self, older_than: float) -> list[AppRecord]:
        """Ephemeral apps whose last heartbeat (or deploy, if none) is before `older_than`."""
        rows = self._query(f"SELECT {_APP_COLUMNS} FROM apps WHERE state = 'ephemeral' "
                           "AND COALESCE(heartbeat_at, updated_at) < ? ORDER BY created_at", (older_than,))
        return [_app_from_row(row) for row in rows]

    def list_functions(self, app_id: str) -> list[FunctionRecord]:
        """The functions of the app's current version (functions dropped by a redeploy are not listed)."""
        rows = self._query(
            "SELECT f.function_id, f.app_id, f.tag, f.spec_json FROM functions f "
            "JOIN apps a ON a.app_id = f.app_id AND a.version = f.version "
            "WHERE f.app_id = ? ORDER BY f.rowid",
            (app_id,))
        return [FunctionRecord(function_id=row["function_id"], app_id=row["app_id"], tag=row["tag"],
                               spec=FunctionSpec.model_validate_json(row["spec_json"])) for row in rows]

    def set_autoscaler(self, app_id: str, tag: str, settings: AutoscalerSettings) -> None:
        """Persist scaling settings changed on a running app, in the app's spec and the function row
        (so a restart restores them; the next deploy replaces them with the code's)."""
        with self._transaction() as conn:
            row = conn.execute("SELECT version, spec_json FROM apps WHERE app_id = ?", (app_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"App {app_id!r} not found")
            spec = AppSpec.model_validate_json(row["spec_json"])
            functions = [f.model_copy(update={"autoscaler": settings}) if f.tag == tag else f
                         for f in spec.functions]
            changed = next((f for f in functions if f.tag == tag), None)
            if changed is None:
                raise NotFoundError(f"App {app_id!r} has no function {tag!r}")
            conn.execute("UPDATE apps SET spec_json = ? WHERE app_id = ?",
                         (spec.model_copy(update={"functions": functions}).model_dump_json(), app_id))
            conn.execute("UPDATE functions SET spec_json = ? WHERE app_id = ? AND tag = ? AND version = ?",
                         (changed.model_dump_json(), app_id, tag, row["version"]))

    # -- secrets ------------------------------------------------------------------------------------------

    def put_secret(self, name: str, environment: str, values: dict[str, str], *, force: bool,
                   now: float) -> SecretInfo:
        validate_secret_name(name)
        _validate_secret_keys(values)
        with self._transaction() as conn:
            exists = conn.execute("SELECT 1 FROM secrets WHERE name = ? AND environment = ?",
                                  (name, environment)).fetchone()
            if exists and not force:
                raise AlreadyExistsError(f"Secret '{name}' already exists in environment '{environment}'; "
                                         "use --force to overwrite it")
            conn.execute("INSERT OR REPLACE INTO secrets (name, environment, values_json, created_at) "
                         "VALUES (?, ?, ?, ?)", (name, environment, json.dumps(values), now))
        return SecretInfo(name=name, environment=environment, keys=sorted(values), created_at=now)

    def get_secret_values(self, name: str, environment: str) -> dict[str, str]:
        rows = self._query("SELECT values_json FROM secrets WHERE name = ? AND environment = ?",
                           (name, environment))
        if not rows:
            raise NotFoundError(f"Secret '{name}' not found in environment '{environment}'; create it with "
                                f"`shipyard secret create {name} KEY=VALUE`")
        values: dict[str, str] = json.loads(rows[0]["values_json"])
        return values

    def list_secrets(self, environment: str) -> list[SecretInfo]:
        rows = self._query("SELECT name, values_json, created_at FROM secrets WHERE environment = ? "
                           "ORDER BY name", (environment,))
        return [SecretInfo(name=row["name"], environment=environment,
                                keys=sorted(json.loads(row["values_json"])), created_at=row["created_at"])
                for row in rows]

    def delete_secret(self, name: str, environment: str) -> None:
        with self._transaction() as conn:
            if conn.execute("DELETE FROM secrets WHERE name = ? AND environment = ?",
                            (name, environment)).rowcount == 0:
                raise NotFoundError(f"Secret '{name}' not found in environment '{environment}'")

    # -- proxy tokens -------------------------------------------------------------------------------------

    def create_proxy_token(self, environment: str, now: float) -> ProxyTokenCreated:
        """A new token; only the hash of its secret is stored, so this is the only time the secret exists."""
        token_id, token_secret = new_proxy_token()
        with self._transaction() as conn:
            conn.execute("INSERT INTO proxy_tokens (token_id, environment, secret_hash, created_at) "
                         "VALUES (?, ?, ?, ?)", (token_id, environment, hash_secret(token_secret), now))
        return ProxyTokenCreated(token_id=token_id, token_secret=token_secret, environment=environment)

    def list_proxy_tokens(self, environment: str) -> list[ProxyTokenInfo]:
        rows = self._query("SELECT token_id, created_at, revoked_at FROM proxy_tokens WHERE environment = ? "
                           "ORDER BY created_at, rowid", (environment,))
        return [ProxyTokenInfo(token_id=row["token_id"], environment=environment,
                                    created_at=row["created_at"], revoked=row["revoked_at"] is not None)
                for row in rows]

    def revoke_proxy_token(self, token_id: str) -> None:
        """Mark the token revoked (kept, so listings show it); revoking twice is harmless."""
        with self._transaction() as conn:
            cursor = conn.execute("UPDATE proxy_tokens SET revoked_at = COALESCE(revoked_at, ?) "
                                  "WHERE token_id = ?", (time.time(), token_id))
            if cursor.rowcount == 0:
                raise NotFoundError(f"Proxy token {token_id!r} not found")

    def active_token_hashes(self) -> dict[str, tuple[str, str]]:
        """token_id → (environment, secret hash) of every unrevoked token: the proxy's in-memory table."""
        rows = self._query("SELECT token_id, environment, secret_hash FROM proxy_tokens "
                           "WHERE revoked_at IS NULL")
        return {row["token_id"]: (row["environment"], row["secret_hash"]) for row in rows}

    # -- settings -----------------------------------------------------------------------------------------

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else default

    def set_setting(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
