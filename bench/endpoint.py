"""`python -m bench.endpoint`: an LLM endpoint against its engine alone, on CPU (bundled SmolLM2 GGUF).

Time to first token (p50 of sequential streams) and output tokens/s with 8 concurrent streams, once
straight to a llama.cpp server on loopback and once through a Shipyard endpoint (gateway, proxy,
container serving the same engine app in process) with the same GGUF and arguments. Writes
bench/ENDPOINT_RESULTS.md, with the load average, since background load skews both sides.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ._setup import BENCH, Server, free_port, machine

RESULTS = BENCH / "ENDPOINT_RESULTS.md"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MESSAGES = [{"role": "user", "content": "Tell me a short story about a lighthouse."}]
TTFT_RUNS = 30
STREAMS = 8
STREAM_TOKENS = 32
ROUNDS = 4


async def _stream(client: httpx.AsyncClient, url: str, max_tokens: int) -> tuple[float, int]:
    """(seconds to the first content chunk, content chunks) of one streamed chat completion."""
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": max_tokens, "stream": True, "temperature": 0}
    start = time.perf_counter()
    first = 0.0
    chunks = 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                chunks += 1
                if not first:
                    first = time.perf_counter() - start
    return first, chunks


async def _measure(url: str) -> tuple[float, float]:
    """(p50 time to first token in s, output tokens/s over 8 concurrent streams)."""
    async with httpx.AsyncClient(timeout=300) as client:
        await _stream(client, url, 4)  # warm: container started, prompt cache primed
        ttfts = [(await _stream(client, url, 1))[0] for _ in range(TTFT_RUNS)]
        start = time.perf_counter()
        results = await asyncio.gather(*(_stream(client, url, STREAM_TOKENS) for _ in range(STREAMS)))
        elapsed = time.perf_counter() - start
    return statistics.median(ttfts), sum(chunks for _, chunks in results) / elapsed


def main() -> None:
    from shipyard.endpoints import Hardware, load_catalog, select_recipe
    from shipyard.endpoints._weights import bundled_gguf

    entry = load_catalog().find(MODEL)
    assert entry.cpu is not None
    threads = os.cpu_count() or 1
    port = free_port()
    recipe = select_recipe(entry, Hardware(cpu_cores=threads))
    gguf = str(bundled_gguf(entry.cpu))
    argv = recipe.command(weights=gguf, port=port, python=sys.executable, threads=threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-ep-") as tmp:
        engine = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = Server(Path(tmp) / "home")
        try:
            server.start()
            server.cli("endpoint", "create", "bench", "--model", MODEL, "--unauthenticated", "--wait",
                       "--scaledown-window", "600")
            endpoint = f"http://127.0.0.1:{server.port}/fn/shipyard--bench"
            direct = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    httpx.get(direct + "/v1/models", timeout=2).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            # Alternate (and swap the order every round) so that background load hits both sides alike.
            rounds = []
            for i in range(ROUNDS):
                first, second = (direct, endpoint) if i % 2 == 0 else (endpoint, direct)
                a, b = asyncio.run(_measure(first)), asyncio.run(_measure(second))
                rounds.append((a, b) if i % 2 == 0 else (b, a))
        finally:
            server.stop()
            engine.terminate()
            engine.wait(30)
    load = (load_before, os.getloadavg()[0])
    ttft_direct = statistics.median(r[0][0] for r in rounds)
    ttft_endpoint = statistics.median(r[1][0] for r in rounds)
    tps_direct = statistics.median(r[0][1] for r in rounds)
    tps_endpoint = statistics.median(r[1][1] for r in rounds)
    # Background load swings throughput several-fold within minutes; the two sides of one round ran
    # back to back, so their ratio is steadier than the ratio of the medians.
    tps_ratio = statistics.median(r[1][1] / r[0][1] for r in rounds)
    lines = [
        "# LLM endpoint vs. the engine alone (CPU)",
        "",
        f"Generated by `.venv/bin/python -m bench.endpoint` on {time.strftime('%Y-%m-%d %H:%M UTC')}.",
        *machine(),
        f"Engine: `{' '.join(Path(a).name if a.startswith('/') else a for a in argv)}` (llama.cpp, {MODEL} "
        f"Q4_1 GGUF); the endpoint's container serves the same engine app (`create_app` of that module, "
        "same arguments) in process on its own server, behind the gateway and the proxy.",
        f"Load average (1 min) at start / end: {load[0]:.2f} / {load[1]:.2f} on {threads} cores"
        + ("; the machine was shared with other processes during the run, which skews both sides."
           if max(load) > threads / 2 else "."),
        "llama.cpp's server handles one request at a time, so the 8 streams share one decoding loop.",
        "",
        "| | engine alone | through the endpoint | difference |",
        "| --- | --- | --- | --- |",
        f"| time to first token, p50 of {TTFT_RUNS} sequential streams | {ttft_direct * 1000:.2f} ms | "
        f"{ttft_endpoint * 1000:.2f} ms | {(ttft_endpoint - ttft_direct) * 1000:+.2f} ms |",
        f"| output tokens/s, {STREAMS} concurrent streams x {STREAM_TOKENS} tokens | {tps_direct:.1f} | "
        f"{tps_endpoint:.1f} | {tps_ratio:.1%} of direct (median of the per-round ratios) |",
        "",
        f"Each figure is the median of {ROUNDS} rounds, each measuring both sides, the order swapped every "
        "round (direct then endpoint, endpoint then direct, ...). Per round, direct / endpoint:",
        *(f"- round {i + 1}: time to first token {d[0] * 1000:.2f} / {e[0] * 1000:.2f} ms, "
          f"{d[1]:.1f} / {e[1]:.1f} tokens/s" for i, (d, e) in enumerate(rounds)),
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
