"""`python -m bench.gpu_check --out DIR`: a GPU recipe served through a Shipyard endpoint, on a GPU machine.

Builds a ~300M-parameter Llama with random weights (bench/_random_model.py) on the GPU, picks the
recipe for `--gpu` on this machine (the `transformers` engine where vLLM is not installed), runs that
engine alone on loopback and, through `shipyard server`, as an endpoint serving the same folder from a
Volume (`--custom-volume-name`). Checks the endpoint with the official openai client, then measures
time to first token and output tokens/s (from the usage the engine reports) on both. Writes
results.json and results.md (a section for bench/RESULTS.md) into DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ._random_model import MEDIUM, build
from ._setup import Server, free_port, machine

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The catalog entry the endpoint is created for; its weights come from the Volume (the random model)."""
NAME = "gpu"
MESSAGES = [{"role": "user", "content": "Tell me a short story about a lighthouse."}]
TTFT_RUNS = 20
SINGLE_TOKENS = 256
STREAMS = 8
STREAM_TOKENS = 128


async def _stream(client: httpx.AsyncClient, url: str, max_tokens: int) -> tuple[float, int]:
    """(seconds to the first chunk with content, completion tokens from the usage chunk)."""
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": max_tokens, "stream": True, "temperature": 0,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, tokens = 0.0, 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            choices = chunk.get("choices") or []
            if not first and choices and (choices[0].get("delta", {}).get("content")
                                          or choices[0]["finish_reason"]):
                first = time.perf_counter() - start
    return first, tokens


async def _measure(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=600) as client:
        await _stream(client, url, 8)  # warm: CUDA kernels chosen, container started
        ttfts = [(await _stream(client, url, 1))[0] for _ in range(TTFT_RUNS)]
        start = time.perf_counter()
        _, tokens = await _stream(client, url, SINGLE_TOKENS)
        single = tokens / (time.perf_counter() - start)
        start = time.perf_counter()
        results = await asyncio.gather(*(_stream(client, url, STREAM_TOKENS) for _ in range(STREAMS)))
        concurrent = sum(t for _, t in results) / (time.perf_counter() - start)
    return {"ttft_p50_ms": statistics.median(ttfts) * 1000, "single_tokens_per_s": single,
            "concurrent_tokens_per_s": concurrent}


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url + "/v1/models", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the engine did not start") from None
            time.sleep(0.5)


def _openai_check(url: str) -> dict[str, Any]:
    """The endpoint through the official client: models, a completion, a stream with usage."""
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused")
    models = [m.id for m in client.models.list()]
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES,  # type: ignore[arg-type]
                                            max_tokens=16, extra_body={"ignore_eos": True})
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES,  # type: ignore[arg-type]
                                                 max_tokens=16, stream=True, extra_body={"ignore_eos": True},
                                                 stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    return {"models": models, "completion_tokens": answer.usage.completion_tokens if answer.usage else None,
            "stream_chunks": len(chunks), "stream_usage_tokens": usage.completion_tokens if usage else None}


_LOOP = """
import sys, threading, time
from shipyard.endpoints._hf_engine import Generator, Job
engine = Generator(sys.argv[1])
prompt = engine.chat_prompt([{"role": "user", "content": "Tell me a short story about a lighthouse."}])
def decode(tokens):
    done = threading.Event()
    engine.jobs.put(Job(prompt_ids=prompt, max_tokens=tokens, temperature=0, top_p=1.0, stop=[],
                        ignore_eos=True, seed=None,
                        emit=lambda item: None if isinstance(item, int) else done.set()))
    done.wait()
decode(8)
start = time.perf_counter()
decode(int(sys.argv[2]))
print(int(sys.argv[2]) / (time.perf_counter() - start))
"""


def _container_env() -> dict[str, str]:
    """What an endpoint's container gets of this environment (runtime/_local.py, server/_endpoints.py)."""
    keep = ("PATH", "HOME", "LANG", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_VISIBLE_DEVICES")
    return {key: os.environ[key] for key in keep if key in os.environ} | {"PYTHONUNBUFFERED": "1"}


def _model_loop(model_dir: Path, env: dict[str, str]) -> float:
    """Tokens/s of the engine's decoding loop in a process of its own, no HTTP."""
    command = [sys.executable, "-c", _LOOP, str(model_dir), str(SINGLE_TOKENS)]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return float(output.split()[-1])


def _gpu_name() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "unknown GPU"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gpu", default="H100")
    parser.add_argument("--work", type=Path, default=Path("/tmp/shipyard-gpu-check"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    from shipyard.endpoints import select_recipe
    from shipyard.endpoints._hardware import endpoint_hardware

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    model_dir = args.work / "model"
    started = time.monotonic()
    params = build(model_dir, MEDIUM, device="cuda", dtype="bfloat16")
    print(f"model: {params / 1e6:.0f}M parameters in {time.monotonic() - started:.1f}s", flush=True)
    print("environment names:", " ".join(sorted(os.environ)), flush=True)
    loops = {"full": _model_loop(model_dir, dict(os.environ)),
             "container": _model_loop(model_dir, _container_env())}
    print(f"model decode loop alone, tokens/s by environment: {loops}", flush=True)
    hardware = endpoint_hardware(args.gpu)
    recipe = select_recipe(MODEL, hardware)
    port = free_port()
    argv = recipe.command(weights=str(model_dir), port=port, python=sys.executable,
                          threads=hardware.cpu_cores)
    print(f"recipe: {recipe.summary()} on {hardware.describe()}; engines here: {sorted(hardware.engines)}",
          flush=True)
    engine_log = (out / "engine.log").open("wb")
    # The same environment as the endpoint's container: the comparison is about the path, not the env.
    engine = subprocess.Popen(argv, stdout=engine_log, stderr=subprocess.STDOUT, env=_container_env())
    server = Server(args.work / "home")
    direct = f"http://127.0.0.1:{port}"
    endpoint = ""
    report: dict[str, Any] = {"gpu": _gpu_name(), "torch": torch.__version__, "params": params,
                              "model_loop_tokens_per_s": loops,
                              "recipe": recipe.summary(), "engine": recipe.engine,
                              "argv": [Path(a).name if a.startswith("/") else a for a in argv]}
    try:
        _wait_ready(direct, engine, 300)
        server.start()
        server.cli("volume", "create", "models")
        server.cli("volume", "put", "models", str(model_dir), "/random-llama")
        started = time.monotonic()
        created = server.cli("endpoint", "create", NAME, "--model", MODEL, "--gpu", args.gpu,
                             "--custom-volume-name", "models", "--custom-volume-path", "/random-llama",
                             "--unauthenticated", "--wait", "--scaledown-window", "600")
        report["endpoint_ready_s"] = time.monotonic() - started
        print(created, flush=True)
        report["endpoint_list"] = json.loads(server.cli("endpoint", "list", "--json"))
        endpoint = f"http://127.0.0.1:{server.port}/fn/shipyard--{NAME}"
        report["openai_check"] = _openai_check(endpoint)
        print("openai client through the endpoint:", report["openai_check"], flush=True)
        # Alternate so that anything else on the machine hits both sides alike.
        rounds = [(asyncio.run(_measure(direct)), asyncio.run(_measure(endpoint)))
                  for _ in range(args.rounds)]
        report["rounds"] = rounds
        for side, index in (("direct", 0), ("endpoint", 1)):
            report[side] = {key: statistics.median(r[index][key] for r in rounds) for key in rounds[0][0]}
        report["usage"] = json.loads(server.cli("usage", "--json"))
    finally:
        server.stop()
        engine.terminate()
        engine.wait(30)
        for log in sorted((args.work / "home" / "logs").rglob("*.log")):
            shutil.copy(log, out / ("container-" + log.name))
            break
        shutil.copy(args.work / "home" / "server.log", out / "server.log")
        (out / "results.json").write_text(json.dumps(report, indent=2, default=str))
    lines = _markdown(report)
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _markdown(report: dict[str, Any]) -> list[str]:
    direct, endpoint = report["direct"], report["endpoint"]
    loops = report["model_loop_tokens_per_s"]

    def row(label: str, key: str, unit: str, ratio: bool) -> str:
        a, b = direct[key], endpoint[key]
        diff = f"{b / a:.1%} of direct" if ratio else f"{b - a:+.2f} {unit}"
        return f"| {label} | {a:.2f} {unit} | {b:.2f} {unit} | {diff} |"

    return [
        "## GPU endpoint (device)",
        "",
        f"Generated by `python -m bench.gpu_check --out $OUT` on {time.strftime('%Y-%m-%d %H:%M UTC')}.",
        f"GPU: {report['gpu']}; torch {report['torch']}.",
        *machine(),
        f"Model: Llama-shaped, {report['params'] / 1e6:.0f}M parameters, random weights (bf16), built by "
        "bench/_random_model.py and served from a Volume (`--custom-volume-name`) as the catalog's "
        f"{MODEL}; `ignore_eos` so that every request decodes its full length.",
        f"Recipe: {report['recipe']}. Engine: `{' '.join(report['argv'])}`; the endpoint runs the same "
        f"command in its container (`endpoint create --wait` returned after "
        f"{report['endpoint_ready_s']:.1f} s).",
        "The engine decodes one request at a time, so concurrent streams share one decoding loop. "
        f"That loop alone (a process of its own, no HTTP; {SINGLE_TOKENS} tokens, greedy) decoded "
        f"{loops['container']:.1f} tokens/s in the container's environment, {loops['full']:.1f} in the "
        "machine's full one. The engine alone runs in the container's environment too.",
        "",
        "| | engine alone | through the endpoint | difference |",
        "| --- | --- | --- | --- |",
        row(f"time to first token, p50 of {TTFT_RUNS} sequential streams", "ttft_p50_ms", "ms", False),
        row(f"output tokens/s, 1 stream x {SINGLE_TOKENS} tokens", "single_tokens_per_s", "tok/s", True),
        row(f"output tokens/s, {STREAMS} concurrent streams x {STREAM_TOKENS} tokens",
            "concurrent_tokens_per_s", "tok/s", True),
        "",
        f"Each figure is the median of {len(report['rounds'])} alternating rounds (direct, endpoint, direct, "
        "...).",
        "",
    ]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
