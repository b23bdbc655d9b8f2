"""An OpenAI-compatible server on Hugging Face transformers + torch: the GPU engine where vLLM is not.

`python -m shipyard.endpoints._hf_engine --model DIR --served-model-name NAME --port P` runs in an
endpoint's container (the catalog's `transformers` recipe). It serves `/v1/models`,
`/v1/chat/completions` and `/v1/completions`, streaming included (with `stream_options.include_usage`).
One worker thread decodes one request at a time with the model's KV cache; requests wait in FIFO
order, so concurrent streams all complete, one after another. The model loads before the port
opens, so an open port means ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_DONE = object()
"""Queued by the worker after a request's last token."""


class RequestError(Exception):
    """A bad request: answered 400 with an OpenAI error envelope."""


@dataclass
class Job:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    ignore_eos: bool
    seed: int | None
    emit: Callable[[object], None]
    """Receives each generated token id, then an exception or `_DONE`; called on the worker thread."""
    cancelled: threading.Event = field(default_factory=threading.Event)


class Generator:
    """The model, its tokenizer and the worker thread that decodes queued jobs one at a time."""

    def __init__(self, model_dir: str, *, device: str | None = None, dtype: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.jobs: queue.Queue[Job] = queue.Queue()
        threading.Thread(target=self._work, name="hf-engine", daemon=True).start()

    def chat_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        if self.tokenizer.chat_template is None:
            raise RequestError("this model has no chat template; use /v1/completions")
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.encode(str(text))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                self._generate(job)
            except Exception as exc:  # reported to the waiting request, the worker lives on
                job.emit(exc)
            else:
                job.emit(_DONE)

    def _generate(self, job: Job) -> None:
        torch = self.torch
        generator = None
        if job.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(job.seed)
        with torch.inference_mode():
            input_ids = torch.tensor([job.prompt_ids], device=self.device)
            past: Any = None
            for _ in range(job.max_tokens):
                if job.cancelled.is_set():
                    return
                out = self.model(input_ids=input_ids, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = self._sample(out.logits[0, -1].float(), job, generator)
                job.emit(token)
                if token in self.eos_ids and not job.ignore_eos:
                    return
                input_ids = torch.tensor([[token]], device=self.device)

    def _sample(self, logits: Any, job: Job, generator: Any) -> int:
        torch = self.torch
        if job.temperature <= 0:
            return int(logits.argmax().item())
        probs = torch.softmax(logits / job.temperature, dim=-1)
        if job.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            drop = sorted_probs.cumsum(-1) - sorted_probs > job.top_p
            sorted_probs[drop] = 0.0
            choice = torch.multinomial(sorted_probs, 1, generator=generator)
            return int(order[choice].item())
        return int(torch.multinomial(probs, 1, generator=generator).item())


@dataclass
class Piece:
    text: str
    tokens: int
    finish_reason: str | None = None


async def run_job(engine: Generator, job_args: dict[str, Any]) -> AsyncIterator[Piece]:
    """Queue one generation and yield its text as it decodes; the last piece carries finish_reason."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[object] = asyncio.Queue()

    def emit(item: object) -> None:
        # The request's loop may be gone (server shutting down); the worker must not die of it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(items.put_nowait, item)

    job = Job(**job_args, emit=emit)
    engine.jobs.put(job)
    ids: list[int] = []
    sent = ""
    pending = 0
    finish = "length"
    try:
        while True:
            item = await items.get()
            if item is _DONE:
                break
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, int)
            if item in engine.eos_ids and not job.ignore_eos:
                finish, pending = "stop", pending + 1
                continue
            ids.append(item)
            pending += 1
            text = engine.decode(ids)
            if text.endswith("\ufffd"):
                continue  # an incomplete UTF-8 sequence: wait for the token that completes it
            cut = min((i for i in (text.find(s) for s in job.stop) if i >= 0), default=-1)
            if cut >= 0:
                job.cancelled.set()
                yield Piece(text[len(sent):cut], pending, "stop")
                return
            if len(text) > len(sent):
                yield Piece(text[len(sent):], pending)
                sent, pending = text, 0
        yield Piece("", pending, finish)
    finally:
        job.cancelled.set()


def _error(message: str, status: int = 400, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                        status_code=status)


def _job_args(engine: Generator, body: dict[str, Any], prompt_ids: list[int], max_len: int) -> dict[str, Any]:
    if body.get("n", 1) != 1:
        raise RequestError("only n=1 is supported")
    room = max_len - len(prompt_ids)
    if room <= 0:
        raise RequestError(f"the prompt has {len(prompt_ids)} tokens; this model's context is {max_len}")
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or room
    if not isinstance(limit, int) or limit < 1:
        raise RequestError("max_tokens must be a positive integer")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    return {"prompt_ids": prompt_ids, "max_tokens": min(limit, room),
            "temperature": 1.0 if temperature is None else float(temperature),
            "top_p": 1.0 if top_p is None else float(top_p), "stop": [s for s in stop if s],
            "ignore_eos": bool(body.get("ignore_eos", False)), "seed": body.get("seed")}


def build_app(engine: Generator, served_name: str, max_len: int) -> Starlette:
    created = int(time.time())

    async def models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": served_name, "object": "model", "created": created, "owned_by": "shipyard",
             "max_model_len": max_len}]})

    async def health(_request: Request) -> Response:
        return Response(status_code=200)

    async def completions(request: Request) -> Response:
        chat = request.url.path.endswith("/chat/completions")
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            if chat:
                messages = body.get("messages")
                if not isinstance(messages, list) or not messages:
                    raise RequestError("messages must be a non-empty list")
                prompt_ids = await asyncio.to_thread(engine.chat_prompt, messages)
            else:
                prompt = body.get("prompt")
                if not isinstance(prompt, str):
                    raise RequestError("prompt must be a string")
                prompt_ids = await asyncio.to_thread(engine.encode, prompt)
            job_args = _job_args(engine, body, prompt_ids, max_len)
        except (RequestError, ValueError, TypeError) as exc:
            return _error(str(exc))
        kind = "chat.completion" if chat else "text_completion"
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        base = {"id": ident, "created": int(time.time()), "model": served_name}
        if body.get("stream"):
            options = body.get("stream_options") or {}
            return StreamingResponse(
                _sse(engine, job_args, base, kind, chat, bool(options.get("include_usage"))),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        text, tokens, finish = "", 0, "length"
        async for piece in run_job(engine, job_args):
            text, tokens = text + piece.text, tokens + piece.tokens
            finish = piece.finish_reason or finish
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        return JSONResponse({**base, "object": kind, "choices": [choice],
                             "usage": _usage(len(prompt_ids), tokens)})

    return Starlette(routes=[
        Route("/health", health), Route("/v1/models", models),
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ])


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _sse(engine: Generator, job_args: dict[str, Any], base: dict[str, Any], kind: str, chat: bool,
               include_usage: bool) -> AsyncIterator[bytes]:
    chunk_kind = kind + ".chunk" if chat else kind

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return _data({**base, "object": chunk_kind, "choices": choices, **extra})

    def choice(text: str, finish: str | None, role: bool = False) -> dict[str, Any]:
        if chat:
            delta = {"role": "assistant", "content": text} if role else ({"content": text} if text else {})
            return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}

    if chat:
        yield event([choice("", None, role=True)])
    tokens = 0
    try:
        async for piece in run_job(engine, job_args):
            tokens += piece.tokens
            if piece.text or piece.finish_reason:
                yield event([choice(piece.text, piece.finish_reason)])
    except Exception as exc:  # the status line is sent: report the failure inside the stream
        yield _data({"error": {"message": str(exc), "type": "server_error"}})
        return
    if include_usage:
        yield event([], usage=_usage(len(job_args["prompt_ids"]), tokens))
    yield b"data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shipyard.endpoints._hf_engine")
    parser.add_argument("--model", required=True, help="a Hugging Face model folder")
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=0, help="0: the model's own")
    parser.add_argument("--device", default=None, help="default: cuda where available, else cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on GPU, float32 on CPU")
    args = parser.parse_args(argv)
    import uvicorn

    engine = Generator(args.model, device=args.device, dtype=args.dtype)
    own = int(getattr(engine.model.config, "max_position_embeddings", 0) or 0)
    max_len = min(x for x in (args.max_model_len, own) if x > 0) if (args.max_model_len or own) else 4096
    print(f"serving {args.served_model_name} from {args.model} on {engine.device} "
          f"(max length {max_len}) at http://{args.host}:{args.port}", flush=True)
    # A stream is one small write per token: with Nagle's algorithm on, a write waits for the ACK of
    # the previous one, which the client may delay by up to 40 ms. Accepted sockets inherit this.
    sock = socket.create_server((args.host, args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    config = uvicorn.Config(build_app(engine, args.served_model_name, max_len), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
