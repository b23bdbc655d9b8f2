"""Proxy auth: checked by the proxy before any container starts."""

from __future__ import annotations

from typing import Any

from .conftest import Platform

PROTECTED = '''
from shipyard import App, fastapi_endpoint
app = App("protected")
@app.function()
@fastapi_endpoint(requires_proxy_auth=True)
def f():
    return "secret stuff"
'''


def create_token(platform: Platform, env: str = "main") -> tuple[str, str]:
    out = platform.cli("workspace", "proxy-tokens", "create", "--env", env).stdout.splitlines()
    key = next(line.split(": ", 1)[1] for line in out if line.startswith("Modal-Key: "))
    secret = next(line.split(": ", 1)[1] for line in out if line.startswith("Modal-Secret: "))
    assert key.startswith("wk-") and secret.startswith("ws-")
    return key, secret


def test_proxy_auth(platform: Platform, app_file: Any) -> None:
    result = platform.cli("deploy", str(app_file(PROTECTED)))
    assert "🔑" in result.stdout
    url = next(line.split(" => ")[1].split()[0] for line in result.stdout.splitlines() if " => " in line)
    key, secret = create_token(platform)
    other_key, other_secret = create_token(platform, env="dev")
    with platform.client(url, timeout=60) as client:
        missing = client.get("/")
        wrong = client.get("/", headers={"Modal-Key": key, "Modal-Secret": "ws-wrong"})
        other_env = client.get("/", headers={"Modal-Key": other_key, "Modal-Secret": other_secret})
        assert missing.status_code == 401 and "proxy token" in missing.text
        assert wrong.status_code == 401
        assert other_env.status_code == 401
        # Nothing started for the refused requests.
        assert next(a for a in platform.apps() if a["name"] == "protected")["containers"] == 0
        ok = client.get("/", headers={"Modal-Key": key, "Modal-Secret": secret})
        bearer = client.get("/", headers={"Authorization": f"Bearer {key}.{secret}"})
        assert ok.status_code == 200 and ok.json() == "secret stuff"
        assert bearer.status_code == 200
        listed = platform.cli("workspace", "proxy-tokens", "list", "--json").stdout
        assert key in listed and secret not in listed
        platform.cli("workspace", "proxy-tokens", "revoke", key)
        revoked = client.get("/", headers={"Modal-Key": key, "Modal-Secret": secret})
        assert revoked.status_code == 401
