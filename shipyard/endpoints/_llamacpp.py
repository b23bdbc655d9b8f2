"""llama.cpp's OpenAI server, plus token usage at the end of streams.

An endpoint's container serves `create_app(<llama_cpp.server arguments>)` itself, in process;
`python -m shipyard.endpoints._llamacpp <arguments>` serves the same app on the TCP port they name
(the engine alone, as the benchmark runs it). llama-cpp-python's server ignores `stream_options`, so
streamed answers carry no usage; this module wraps the engine's completion calls so that every stream
ends with one usage chunk (empty `choices`, as OpenAI sends for `include_usage`). The endpoint gateway
removes that chunk when the client did not ask for it. Streamed completion tokens are counted per
emitted chunk (llama.cpp emits one per token; a final flush can add one). Answers name the served
model, not the GGUF path.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

_usage: dict[str, tuple[int, int]] = {}
"""Completion id → (prompt tokens, completion tokens) of finished streams, until the chat wrapper takes it."""
_inside_chat = threading.local()


def _prompt_tokens(llama: Any, prompt: Any) -> int:
    if isinstance(prompt, list):
        return len(prompt)
    return len(llama.tokenize(str(prompt).encode("utf-8"), special=True))


def _usage_chunk(last: dict[str, Any], kind: str, prompt: int, completion: int) -> dict[str, Any]:
    return {"id": last["id"], "object": kind, "created": last.get("created", int(time.time())),
            "model": last.get("model", ""), "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}


def _completion_stream(
    chunks: Iterator[dict[str, Any]], prompt: int, append: bool
) -> Iterator[dict[str, Any]]:
    count, last = 0, None
    for chunk in chunks:
        last = chunk
        if any(choice.get("text") for choice in chunk.get("choices", [])):
            count += 1
        yield chunk
    if last is None:
        return
    _usage[last["id"]] = (prompt, count)
    if append:
        del _usage[last["id"]]
        yield _usage_chunk(last, "text_completion", prompt, count)


def _chat_stream(chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    last = None
    for chunk in chunks:
        last = chunk
        yield chunk
    if last is None:
        return
    prompt, completion = _usage.pop(str(last["id"]).removeprefix("chat"), (0, 0))
    yield _usage_chunk(last, "chat.completion.chunk", prompt, completion)


def install(alias: str | None) -> None:
    """Wrap the engine's completion calls; `alias` (the served model name) names the model in answers."""
    from llama_cpp import Llama

    original_completion = Llama.create_completion
    original_chat = Llama.create_chat_completion

    def create_completion(self: Any, prompt: Any, *args: Any, **kwargs: Any) -> Any:
        if alias and not kwargs.get("model"):
            kwargs["model"] = alias
        result = original_completion(self, prompt, *args, **kwargs)
        if not kwargs.get("stream"):
            return result
        append = not getattr(_inside_chat, "active", False)
        return _completion_stream(cast(Iterator[dict[str, Any]], result), _prompt_tokens(self, prompt),
                                  append)

    def create_chat_completion(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The chat handlers call create_completion right away (they return a generator over its
        # stream), so the flag covers exactly the nested call.
        if alias and not kwargs.get("model"):
            kwargs["model"] = alias
        _inside_chat.active = True
        try:
            result = original_chat(self, *args, **kwargs)
        finally:
            _inside_chat.active = False
        return _chat_stream(cast(Iterator[dict[str, Any]], result)) if kwargs.get("stream") else result

    Llama.create_completion = create_completion  # type: ignore[method-assign]
    Llama.create_chat_completion = create_chat_completion  # type: ignore[method-assign]


def _settings(args: list[str]) -> tuple[Any, Any]:
    """(ServerSettings, ModelSettings) from llama_cpp.server's command-line arguments."""
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(prog="llama_cpp.server")
    add_args_from_model(parser, Settings)
    parsed = parser.parse_args(args)
    return parse_model_from_args(ServerSettings, parsed), parse_model_from_args(ModelSettings, parsed)


def create_app(args: list[str]) -> Any:
    """The engine's ASGI app for llama_cpp.server's command-line `args`; loads the model (blocking)."""
    return _app(*_settings(args))


def _app(server: Any, model: Any) -> Any:
    from llama_cpp.server.app import create_app as engine_app

    install(model.model_alias)
    return engine_app(server_settings=server, model_settings=[model])


def main() -> None:
    import uvicorn

    server, model = _settings(sys.argv[1:])
    uvicorn.run(_app(server, model), host=server.host, port=server.port)


if __name__ == "__main__":
    main()
