"""Versioned schema migrations for the control-plane store.

Each entry of `MIGRATIONS` is one SQL script; script N (1-based) brings the schema to version N. Scripts
are only ever appended: a released script is never edited, so every database follows the same path.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from shipyard.exceptions import ServerError

MIGRATIONS: list[str] = [
    # 1: apps, their functions, secrets, settings.
    """
    CREATE TABLE apps (
        app_id      TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        environment TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('deployed', 'ephemeral', 'stopped')),
        version     INTEGER NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        bundle_dir  TEXT NOT NULL,
        spec_json   TEXT NOT NULL
    );
    -- At most one live app per name and environment; stopped ones are kept for history.
    CREATE UNIQUE INDEX apps_live_name ON apps (name, environment) WHERE state != 'stopped';

    CREATE TABLE functions (
        function_id TEXT PRIMARY KEY,
        app_id      TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
        tag         TEXT NOT NULL,
        version     INTEGER NOT NULL,
        spec_json   TEXT NOT NULL,
        UNIQUE (app_id, tag)
    );

    CREATE TABLE secrets (
        name        TEXT NOT NULL,
        environment TEXT NOT NULL,
        values_json TEXT NOT NULL,
        created_at  REAL NOT NULL,
        PRIMARY KEY (name, environment)
    );

    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: heartbeats for ephemeral apps (`shipyard serve`), proxy tokens.
    """
    ALTER TABLE apps ADD COLUMN heartbeat_at REAL;

    CREATE TABLE proxy_tokens (
        token_id    TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at  REAL NOT NULL,
        revoked_at  REAL
    );
    """,
    # 3: LLM endpoints and the usage meter (compute seconds, tokens, cost per endpoint and app).
    """
    CREATE TABLE endpoints (
        endpoint_id   TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        environment   TEXT NOT NULL,
        app_id        TEXT,
        status        TEXT NOT NULL,
        status_reason TEXT,
        spec          TEXT NOT NULL,
        created_at    REAL NOT NULL,
        UNIQUE (name, environment)
    );

    CREATE TABLE usage (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        environment   TEXT NOT NULL,
        subject_kind  TEXT NOT NULL,
        subject_id    TEXT NOT NULL,
        subject_name  TEXT NOT NULL,
        at            REAL NOT NULL,
        seconds       REAL NOT NULL DEFAULT 0,
        gpu_seconds   REAL NOT NULL DEFAULT 0,
        cpu_seconds   REAL NOT NULL DEFAULT 0,
        cost          REAL NOT NULL DEFAULT 0,
        requests      INTEGER NOT NULL DEFAULT 0,
        tokens_in     INTEGER NOT NULL DEFAULT 0,
        tokens_out    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_subject ON usage (environment, subject_kind, subject_name);
    """,
    # 4: spawned function calls and their results; Dicts. Results, keys and values are the user's
    # cloudpickled payloads (opaque BLOBs), not control-plane state. A `serve`/`run` session may share its
    # name with the deployed app (one live app per name, environment and state).
    """
    DROP INDEX apps_live_name;
    CREATE UNIQUE INDEX apps_live_name_state ON apps (name, environment, state) WHERE state != 'stopped';

    CREATE TABLE calls (
        call_id     TEXT PRIMARY KEY,
        function_id TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('pending', 'done')),
        outcome     TEXT,
        result      BLOB,
        created_at  REAL NOT NULL,
        finished_at REAL
    );

    CREATE TABLE dicts (
        name        TEXT NOT NULL,
        environment TEXT NOT NULL,
        created_at  REAL NOT NULL,
        PRIMARY KEY (name, environment)
    );

    CREATE TABLE dict_entries (
        name        TEXT NOT NULL,
        environment TEXT NOT NULL,
        key         BLOB NOT NULL,
        value       BLOB NOT NULL,
        PRIMARY KEY (name, environment, key),
        FOREIGN KEY (name, environment) REFERENCES dicts (name, environment) ON DELETE CASCADE
    );
    """,
]


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the scripts the database has not seen yet, each in its own transaction; return the version.

    `conn` must be in autocommit mode (isolation_level=None) so that the explicit BEGIN/COMMIT below are
    the only transaction boundaries.
    """
    version = current_version(conn)
    if version > len(migrations):
        raise ServerError(f"database schema version {version} is newer than this Shipyard "
                           f"({len(migrations)}); upgrade Shipyard")
    for number, script in enumerate(migrations[version:], start=version + 1):
        try:
            # executescript runs the whole script; wrapping it in BEGIN/COMMIT makes a failing script
            # leave the schema untouched rather than half-migrated.
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n"
                f"INSERT INTO schema_version (version, applied_at) VALUES ({number}, {time.time()!r});\n"
                "COMMIT;"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise ServerError(f"database migration {number} failed: {exc}") from exc
        version = number
    return version
