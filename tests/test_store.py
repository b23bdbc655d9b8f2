from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from shipyard import spec
from shipyard._tokens import verify_secret
from shipyard.exceptions import AlreadyExistsError, InvalidError, NotFoundError
from shipyard.server._migrations import MIGRATIONS, migrate
from shipyard.server._store import Store


def _app(name: str, *tags: str) -> spec.AppSpec:
    return spec.AppSpec(name=name, entry_file="app.py", module_name="app",
                        functions=[spec.FunctionSpec(tag=tag, qualname=tag.split(".")[0]) for tag in tags])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db")


def test_new_database_is_private_wal_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert store.schema_version == len(MIGRATIONS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == \
        list(range(1, len(MIGRATIONS) + 1))
    conn.close()


def test_v1_database_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, MIGRATIONS[:1]) == 1
    conn.execute("INSERT INTO apps (app_id, name, environment, state, version, created_at, updated_at, "
                 "bundle_dir, spec_json) VALUES ('ap-old', 'old', 'main', 'deployed', 3, 1.0, 2.0, '/b', ?)",
                 (_app("old", "f").model_dump_json(),))
    conn.close()

    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    record = store.get_app("ap-old")
    assert (record.name, record.version, record.heartbeat_at) == ("old", 3, None)
    assert store.list_proxy_tokens("main") == []
    store.close()
    # Opening an up-to-date database applies nothing.
    assert Store(path).schema_version == len(MIGRATIONS)


def test_upsert_bumps_version_and_keeps_function_ids(store: Store) -> None:
    first = store.upsert_app("web", "main", ephemeral=False, spec=_app("web", "f", "C.m"), bundle_dir="/b1",
                             now=10.0)
    assert first.app_id.startswith("ap-") and first.version == 1 and first.state == "deployed"
    ids = {f.tag: f.function_id for f in store.list_functions(first.app_id)}
    assert set(ids) == {"f", "C.m"} and all(i.startswith("fu-") for i in ids.values())

    second = store.upsert_app("web", "main", ephemeral=False, spec=_app("web", "f", "g"), bundle_dir="/b2",
                              now=20.0)
    assert (second.app_id, second.version) == (first.app_id, 2)
    assert (second.created_at, second.updated_at) == (10.0, 20.0)
    assert second.bundle_dir == "/b2" and [f.tag for f in second.spec.functions] == ["f", "g"]
    functions = {f.tag: f for f in store.list_functions(first.app_id)}
    assert set(functions) == {"f", "g"}
    assert functions["f"].function_id == ids["f"]
    assert functions["g"].spec.qualname == "g"

    third = store.upsert_app("web", "main", ephemeral=False, spec=_app("web", "C.m"), bundle_dir="/b3",
                             now=30)
    assert [(f.tag, f.function_id) for f in store.list_functions(third.app_id)] == [("C.m", ids["C.m"])]

    store.set_bundle_dir(third.app_id, "/final")
    assert store.get_app(third.app_id).bundle_dir == "/final"
    # Another environment is another app.
    other = store.upsert_app("web", "dev", ephemeral=False, spec=_app("web", "f"), bundle_dir="/d", now=40)
    assert other.app_id != first.app_id and other.version == 1


def test_stopped_app_is_replaced_by_a_new_one(store: Store) -> None:
    first = store.upsert_app("web", "main", ephemeral=False, spec=_app("web", "f"), bundle_dir="/b", now=1)
    assert store.find_app("web", "main").app_id == first.app_id
    store.set_app_state(first.app_id, "stopped")
    assert store.find_live_app("web", "main") is None
    with pytest.raises(NotFoundError, match="App 'web' not found in environment 'main'"):
        store.find_app("web", "main")
    second = store.upsert_app("web", "main", ephemeral=False, spec=_app("web", "f"), bundle_dir="/b", now=2)
    assert second.app_id != first.app_id and second.version == 1
    assert [(a.app_id, a.state) for a in store.list_apps("main")] == \
        [(first.app_id, "stopped"), (second.app_id, "deployed")]
    assert [a.app_id for a in store.live_apps()] == [second.app_id]
    with pytest.raises(InvalidError):
        store.set_app_state(first.app_id, "deployed")
    with pytest.raises(NotFoundError):
        store.set_app_state("ap-missing", "stopped")


def test_ephemeral_heartbeats_and_delete(store: Store) -> None:
    dev = store.upsert_app("dev", "main", ephemeral=True, spec=_app("dev", "f"), bundle_dir="/b", now=100)
    prod = store.upsert_app("prod", "main", ephemeral=False, spec=_app("prod", "f"), bundle_dir="/b", now=100)
    assert dev.state == "ephemeral" and dev.heartbeat_at == 100
    assert {a.app_id for a in store.live_apps()} == {dev.app_id, prod.app_id}
    assert [a.app_id for a in store.stale_ephemeral_apps(older_than=150)] == [dev.app_id]
    store.touch_heartbeat(dev.app_id, 200)
    assert store.stale_ephemeral_apps(older_than=150) == []
    assert [a.app_id for a in store.list_apps(None)] == [dev.app_id, prod.app_id]

    store.delete_app(dev.app_id)
    assert store.list_functions(dev.app_id) == []
    with pytest.raises(NotFoundError):
        store.get_app(dev.app_id)
    with pytest.raises(NotFoundError):
        store.delete_app(dev.app_id)
    with pytest.raises(NotFoundError):
        store.touch_heartbeat(dev.app_id, 300)


def test_secrets(store: Store, tmp_path: Path) -> None:
    info = store.put_secret("openai", "main", {"OPENAI_API_KEY": "sk-very-secret", "ORG": "x"}, force=False,
                            now=5.0)
    assert info == spec.SecretInfo(name="openai", environment="main", keys=["OPENAI_API_KEY", "ORG"],
                                   created_at=5.0)
    assert store.get_secret_values("openai", "main") == {"OPENAI_API_KEY": "sk-very-secret", "ORG": "x"}
    with pytest.raises(AlreadyExistsError, match="already exists"):
        store.put_secret("openai", "main", {"A": "b"}, force=False, now=6.0)
    assert issubclass(AlreadyExistsError, InvalidError)
    store.put_secret("openai", "main", {"A": "b"}, force=True, now=7.0)
    assert store.get_secret_values("openai", "main") == {"A": "b"}

    listed = store.list_secrets("main")
    assert [s.name for s in listed] == ["openai"] and listed[0].keys == ["A"]
    assert "b" not in json.dumps([s.model_dump() for s in listed]).replace('"A"', "")
    assert store.list_secrets("dev") == []

    with pytest.raises(NotFoundError, match=r"Secret 'nope' not found in environment 'main'; create it with "
                                            r"`shipyard secret create nope KEY=VALUE`"):
        store.get_secret_values("nope", "main")
    with pytest.raises(InvalidError, match="Invalid secret name"):
        store.put_secret("bad name", "main", {"A": "b"}, force=False, now=1)
    with pytest.raises(InvalidError, match="1BAD"):
        store.put_secret("ok", "main", {"1BAD": "b", "GOOD": "c"}, force=False, now=1)
    with pytest.raises(InvalidError):
        store.put_secret("ok", "main", {}, force=False, now=1)

    store.delete_secret("openai", "main")
    with pytest.raises(NotFoundError):
        store.delete_secret("openai", "main")


def test_proxy_tokens_store_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    created = store.create_proxy_token("main", now=1.0)
    other = store.create_proxy_token("dev", now=2.0)
    assert created.token_id.startswith("wk-") and created.token_secret.startswith("ws-")

    table = store.active_token_hashes()
    env, stored_hash = table[created.token_id]
    assert env == "main" and verify_secret(created.token_secret, stored_hash)
    assert not verify_secret(other.token_secret, stored_hash)
    raw = sqlite3.connect(path).execute("SELECT * FROM proxy_tokens").fetchall()
    assert created.token_secret not in repr(raw)

    assert store.list_proxy_tokens("main") == [
        spec.ProxyTokenInfo(token_id=created.token_id, environment="main", created_at=1.0, revoked=False)]
    store.revoke_proxy_token(created.token_id)
    store.revoke_proxy_token(created.token_id)
    assert store.list_proxy_tokens("main")[0].revoked
    assert set(store.active_token_hashes()) == {other.token_id}
    with pytest.raises(NotFoundError):
        store.revoke_proxy_token("wk-missing")


def test_settings_persist(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    assert store.get_setting("workspace") is None
    assert store.get_setting("workspace", "shipyard") == "shipyard"
    store.set_setting("workspace", "acme")
    store.set_setting("workspace", "acme2")
    store.close()
    assert Store(tmp_path / "state.db").get_setting("workspace") == "acme2"


def test_concurrent_use_from_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.upsert_app(f"app{n}", "main", ephemeral=False, spec=_app(f"app{n}", "f"),
                                 bundle_dir="/b", now=float(i))
                store.put_secret(f"s{n}", "main", {"K": str(i)}, force=True, now=float(i))
                store.list_apps(None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(a.version for a in store.live_apps()) == [20] * 6
