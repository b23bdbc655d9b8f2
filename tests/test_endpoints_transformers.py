"""The `transformers` GPU recipe (chosen where vLLM is not installed) and its engine, `_hf_engine`.

Recipe choice is pure. The engine tests need torch, transformers and tokenizers (not part of the
CPU install; they run where those are installed, e.g. the GPU machine via `bench/gpu_check.py`):
a tiny random Llama on CPU behind the real server, called with the official openai client.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from shipyard.endpoints import Hardware, load_catalog, select_recipe
from shipyard.exceptions import InvalidError

H100_NO_VLLM = Hardware(gpu_type="H100", gpu_count=1, gpu_memory_gb=80,
                        engines=frozenset({"transformers", "llama.cpp"}))
H100X8_NO_VLLM = Hardware(gpu_type="H100", gpu_count=8, gpu_memory_gb=80, engines=frozenset({"transformers"}))


def test_transformers_is_chosen_on_a_gpu_without_vllm() -> None:
    recipe = select_recipe("Qwen/Qwen3-8B", H100_NO_VLLM)
    assert recipe.engine == "transformers"
    assert recipe.tensor_parallel_size == recipe.gpu_count == 1
    assert recipe.speculative is None  # the engine has no speculative decoding: none is claimed
    args = recipe.command(weights="/w", port=8000, python="/py", threads=2)
    assert args == ["/py", "-m", "shipyard.endpoints._hf_engine", "--model", "/w", "--served-model-name",
                    "Qwen/Qwen3-8B", "--host", "127.0.0.1", "--port", "8000", "--max-model-len",
                    str(load_catalog().find("Qwen/Qwen3-8B").context_length)]
    assert recipe.summary().startswith("transformers tp=1") and "speculative=none" in recipe.summary()


@pytest.mark.parametrize("engines", [{"vllm"}, {"vllm", "transformers"}])
def test_vllm_wins_where_installed(engines: set[str]) -> None:
    hardware = Hardware(gpu_type="H100", gpu_count=1, gpu_memory_gb=80, engines=frozenset(engines))
    recipe = select_recipe("Qwen/Qwen3-8B", hardware)
    assert recipe.engine == "vllm" and recipe.speculative is not None


def test_sglang_preference_is_kept_over_transformers() -> None:
    hardware = Hardware(gpu_type="H100", gpu_count=8, gpu_memory_gb=80,
                        engines=frozenset({"sglang", "transformers"}))
    assert select_recipe("Qwen/Qwen3-Next-80B-A3B-Instruct", hardware).engine == "sglang"


def test_a_model_needing_several_gpus_says_vllm_is_needed() -> None:
    with pytest.raises(InvalidError, match=r"needs 2 GPUs .* at most 1; install vLLM"):
        select_recipe("Qwen/Qwen3.6-27B", H100X8_NO_VLLM)


def test_cpu_choice_is_unchanged_by_transformers() -> None:
    hardware = Hardware(cpu_cores=2, engines=frozenset({"llama.cpp", "transformers"}))
    assert select_recipe("HuggingFaceTB/SmolLM2-135M-Instruct", hardware).engine == "llama.cpp"


# -- the engine, on CPU ------------------------------------------------------------------------------

ENGINE_DEPS = ("torch", "transformers", "tokenizers")
needs_torch = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ENGINE_DEPS),
    reason="the transformers engine needs torch, transformers and tokenizers installed",
)
SERVED = "test/tiny-random"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from bench._random_model import TINY, build

    folder = tmp_path_factory.mktemp("tiny-llama")
    build(folder, TINY)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard.endpoints._hf_engine", "--model", str(folder), "--served-model-name",
         SERVED, "--port", str(port), "--device", "cpu", "--max-model-len", "256"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(url + "/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, "the engine exited"
                assert time.monotonic() < deadline, "the engine did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@needs_torch
def test_engine_serves_the_openai_api(engine_url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=engine_url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == [SERVED]
    messages = [{"role": "user", "content": "Tell me a story."}]
    answer = client.chat.completions.create(model=SERVED, messages=messages,  # type: ignore[arg-type]
                                            max_tokens=5, temperature=0,
                                            extra_body={"ignore_eos": True})
    assert answer.model == SERVED and answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 5 and answer.usage.prompt_tokens > 3
    again = client.chat.completions.create(model=SERVED, messages=messages,  # type: ignore[arg-type]
                                           max_tokens=5, temperature=0, extra_body={"ignore_eos": True})
    assert again.choices[0].message.content == answer.choices[0].message.content  # greedy is repeatable

    stream = client.chat.completions.create(model=SERVED, messages=messages,  # type: ignore[arg-type]
                                            max_tokens=6, temperature=0.8, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.completion_tokens == 6

    text = client.completions.create(model=SERVED, prompt="The quick brown", max_tokens=4, temperature=0,
                                     extra_body={"ignore_eos": True})
    assert text.object == "text_completion" and text.usage is not None and text.usage.completion_tokens == 4


@needs_torch
def test_engine_errors_use_openai_envelopes(engine_url: str) -> None:
    response = httpx.post(engine_url + "/v1/chat/completions", json={"model": SERVED, "messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    too_long = httpx.post(engine_url + "/v1/completions", json={"prompt": "fox " * 400, "max_tokens": 2})
    assert too_long.status_code == 400 and "context is 256" in too_long.json()["error"]["message"]


@needs_torch
def test_concurrent_streams_all_complete(engine_url: str) -> None:
    async def one(client: httpx.AsyncClient) -> int:
        body = {"model": SERVED, "prompt": "Shipyard", "max_tokens": 8, "stream": True, "ignore_eos": True,
                "stream_options": {"include_usage": True}}
        tokens = 0
        async with client.stream("POST", engine_url + "/v1/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith('data: {"') and '"usage"' in line:
                    tokens = int(line.split('"completion_tokens": ')[1].split(",")[0])
        return tokens

    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(one(client) for _ in range(4)))

    assert asyncio.run(main()) == [8, 8, 8, 8]

