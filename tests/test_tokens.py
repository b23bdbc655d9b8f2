from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from shipyard._paths import HomeLayout
from shipyard._tokens import hash_secret, new_id, new_proxy_token, verify_secret
from shipyard.server._credentials import admin_token_matches, ensure_admin_token


def test_proxy_token_format_and_uniqueness() -> None:
    token_id, secret = new_proxy_token()
    assert re.fullmatch(r"wk-[A-Za-z0-9_-]{24}", token_id)
    assert re.fullmatch(r"ws-[A-Za-z0-9_-]{32}", secret)
    assert len({new_proxy_token()[1] for _ in range(100)}) == 100


def test_hash_and_verify() -> None:
    _, secret = new_proxy_token()
    stored = hash_secret(secret)
    assert secret not in stored
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret("", stored)


def test_new_id() -> None:
    ident = new_id("ap")
    assert re.fullmatch(r"ap-[a-z0-9]{12}", ident)
    assert new_id("fu") != new_id("fu")


def test_admin_token_created_private_and_reused(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path / "home")
    token = ensure_admin_token(layout)
    assert len(token) >= 32
    assert stat.S_IMODE(os.stat(layout.admin_token).st_mode) == 0o600
    assert ensure_admin_token(layout) == token
    assert admin_token_matches(token, token)
    assert not admin_token_matches(token[:-1], token)
    assert not admin_token_matches(None, token)
    assert not admin_token_matches("", token)
