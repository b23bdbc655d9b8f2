"""Choosing how to serve a model on given hardware: a pure function over the catalog's data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import InvalidError
from ._catalog import Catalog, CatalogModel, EngineRecipe, load_catalog

CPU_CONTEXT_CAP = 8192


@dataclass(frozen=True)
class Hardware:
    """What one container of the endpoint gets."""

    gpu_type: str | None = None
    gpu_count: int = 0
    gpu_memory_gb: float = 0.0
    """Per GPU."""
    cpu_cores: int = 2
    engines: frozenset[str] = frozenset({"llama.cpp"})
    """Engines installed on the runtime."""

    def describe(self) -> str:
        if not self.gpu_count:
            return f"no GPU, {self.cpu_cores} CPU cores"
        return f"{self.gpu_count}x {self.gpu_type or 'GPU'} ({self.gpu_memory_gb:g} GB each)"


@dataclass(frozen=True)
class Recipe:
    model: str
    engine: str
    tensor_parallel_size: int
    max_model_len: int
    speculative: dict[str, Any] | None
    args: list[str]
    """Engine argv with `{weights}`, `{port}`, `{python}` and `{threads}` still to fill in."""
    gpu_count: int = 0
    embeddings: bool = False
    in_process: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *, weights: str, port: int, python: str, threads: int) -> list[str]:
        values = {"weights": weights, "port": str(port), "python": python, "threads": str(threads)}
        return [_fill(arg, values) for arg in self.args]

    def summary(self) -> str:
        spec = self.speculative["method"] if self.speculative else "none"
        if self.engine == "llama.cpp":
            return f"llama.cpp (CPU, GGUF, ctx {self.max_model_len})"
        return f"{self.engine} tp={self.tensor_parallel_size} max_len={self.max_model_len} speculative={spec}"


def _free_memory(model: CatalogModel, tp: int, hardware: Hardware, catalog: Catalog) -> float:
    """GB left for the KV cache when the weights are split over `tp` GPUs."""
    return tp * hardware.gpu_memory_gb * catalog.memory_utilization - model.min_gpu_memory_gb


def _tensor_parallel_size(model: CatalogModel, hardware: Hardware, catalog: Catalog) -> int | None:
    """The fewest GPUs that hold the weights with KV room (≥ 25% of the weights), else that hold them."""
    fitting = [size for size in catalog.tensor_parallel_sizes
               if size <= hardware.gpu_count and _free_memory(model, size, hardware, catalog) >= 0]
    roomy = [size for size in fitting
             if _free_memory(model, size, hardware, catalog) >= 0.25 * model.min_gpu_memory_gb]
    choice = roomy or fitting
    return choice[0] if choice else None


def _max_model_len(model: CatalogModel, tp: int, hardware: Hardware, catalog: Catalog) -> int:
    """The full context when the KV cache has room, else a 32k cap."""
    if _free_memory(model, tp, hardware, catalog) >= 0.25 * model.min_gpu_memory_gb:
        return model.context_length
    return min(model.context_length, 32768)


def _speculative(model: CatalogModel, catalog: Catalog) -> dict[str, Any]:
    if model.mtp_heads:
        return {"method": model.mtp_method or "mtp", "num_speculative_tokens": model.mtp_heads}
    if model.eagle3_draft:
        return {"method": "eagle3", "model": model.eagle3_draft,
                "num_speculative_tokens": catalog.speculative.eagle3_tokens}
    return dict(catalog.speculative.ngram)


def _speculative_args(engine: EngineRecipe, speculative: dict[str, Any], catalog: Catalog) -> list[str]:
    if engine.speculative_flag:
        return [engine.speculative_flag, json.dumps(speculative, separators=(",", ":"))]
    kind = "mtp" if speculative["method"].endswith("mtp") else speculative["method"]
    args = []
    for key, flag in engine.speculative_flags.items():
        if key == "method":
            args += [flag, catalog.speculative.sglang_method_names[kind]]
        elif key in speculative:
            args += [flag, str(speculative[key])]
    return args


def _gpu_engine(model: CatalogModel, hardware: Hardware) -> str:
    """SGLang where the model prefers it and it is installed, else vLLM; plain transformers only
    where neither vLLM is installed nor SGLang chosen (a GPU node without a serving engine)."""
    if model.preferred_engine == "sglang" and "sglang" in hardware.engines:
        return "sglang"
    if "vllm" not in hardware.engines and "transformers" in hardware.engines:
        return "transformers"
    return "vllm"


def _gpu_recipe(model: CatalogModel, hardware: Hardware, served_name: str, catalog: Catalog) -> Recipe:
    tp = _tensor_parallel_size(model, hardware, catalog)
    if tp is None:
        raise InvalidError(
            f"{model.repo} needs ≥ {model.min_gpu_memory_gb:g} GB GPU memory; this endpoint has "
            f"{hardware.describe()} (at most {max(catalog.tensor_parallel_sizes)} GPUs, "
            f"{catalog.memory_utilization:.0%} of each usable). Pass a bigger --gpu."
        )
    name = _gpu_engine(model, hardware)
    engine = catalog.recipes[name]
    if engine.max_gpus is not None and tp > engine.max_gpus:
        raise InvalidError(
            f"{model.repo} needs {tp} GPUs on {hardware.describe()}, but the engine installed here "
            f"({name}) runs a model on at most {engine.max_gpus}; install vLLM to split it over GPUs"
        )
    max_len = _max_model_len(model, tp, hardware, catalog)
    values = {"served_model_name": served_name, "tensor_parallel_size": str(tp),
              "max_model_len": str(max_len)}
    args = [_fill(arg, values) for arg in engine.argv]
    if model.trust_remote_code and engine.trust_remote_code_flag:
        args.append(engine.trust_remote_code_flag)
    if model.reasoning_parser and engine.reasoning_parser_flag:
        args += [engine.reasoning_parser_flag, model.reasoning_parser]
    if model.tool_parser and engine.tool_parser_flags:
        args += [*engine.tool_parser_flags, model.tool_parser]
    speculative: dict[str, Any] | None = None
    if engine.speculative_flag or engine.speculative_flags:
        speculative = _speculative(model, catalog)
        args += _speculative_args(engine, speculative, catalog)
    return Recipe(model=model.repo, engine=name, tensor_parallel_size=tp, max_model_len=max_len,
                  speculative=speculative, args=args, gpu_count=tp, embeddings=engine.embeddings,
                  in_process=engine.in_process)


def _cpu_recipe(model: CatalogModel, hardware: Hardware, served_name: str, catalog: Catalog) -> Recipe:
    if model.cpu is None or "llama.cpp" not in hardware.engines:
        raise InvalidError(
            f"{model.repo} needs a GPU with ≥ {model.min_gpu_memory_gb:g} GB memory (in total across up "
            f"to {max(catalog.tensor_parallel_sizes)} GPUs); this endpoint has {hardware.describe()}. "
            "Pass --gpu TYPE[:N]; only catalog models with CPU weights (GGUF) run without a GPU."
        )
    engine = catalog.recipes["llama.cpp"]
    max_len = min(model.cpu.n_ctx, model.context_length, CPU_CONTEXT_CAP)
    values = {"served_model_name": served_name, "max_model_len": str(max_len)}
    args = [_fill(arg, values) for arg in engine.argv]
    return Recipe(model=model.repo, engine="llama.cpp", tensor_parallel_size=0, max_model_len=max_len,
                  speculative=None, args=args, embeddings=engine.embeddings, in_process=engine.in_process)


def _fill(arg: str, values: dict[str, str]) -> str:
    """Replace the `{name}` placeholders of `values`; other braces (JSON arguments) stay."""
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def select_recipe(
    model: str | CatalogModel,
    hardware: Hardware,
    *,
    served_model_name: str | None = None,
    catalog: Catalog | None = None,
) -> Recipe:
    """The engine and its arguments for `model` on `hardware`; InvalidError says what is missing."""
    catalog = catalog or load_catalog()
    entry = catalog.find(model) if isinstance(model, str) else model
    served = served_model_name or entry.repo
    if hardware.gpu_count > 0:
        return _gpu_recipe(entry, hardware, served, catalog)
    return _cpu_recipe(entry, hardware, served, catalog)
