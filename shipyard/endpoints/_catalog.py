"""The model catalog and engine recipes, loaded from the `catalog.json` data file in this package."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..exceptions import NotFoundError

CATALOG_FILE = Path(__file__).with_name("catalog.json")


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CpuWeights(_Data):
    gguf_package: str
    """Python package shipping the GGUF file (installed next to Shipyard)."""
    gguf_glob: str = "*.gguf"
    n_ctx: int = 2048


class CatalogModel(_Data):
    repo: str
    family: str
    params_b: float
    active_params_b: float | None = None
    context_length: int
    min_gpu_memory_gb: float
    mtp_heads: int = 0
    mtp_method: str | None = None
    eagle3_draft: str | None = None
    reasoning_parser: str | None = None
    tool_parser: str | None = None
    preferred_engine: str | None = None
    trust_remote_code: bool = False
    cpu: CpuWeights | None = None


class EngineRecipe(_Data):
    needs_gpu: bool
    argv: list[str]
    reasoning_parser_flag: str | None = None
    tool_parser_flags: list[str] = Field(default_factory=list)
    speculative_flag: str | None = None
    """Engine takes the speculative settings as one JSON argument (vLLM)."""
    speculative_flags: dict[str, str] = Field(default_factory=dict)
    """Engine takes them as separate flags (SGLang): setting name → flag."""
    trust_remote_code_flag: str | None = None
    embeddings: bool = False
    max_gpus: int | None = None
    """The most GPUs the engine can split a model over (None: any)."""
    in_process: bool = False
    """argv is `{python} -m MODULE ARGS` and MODULE.create_app(ARGS) is the engine's ASGI app: the
    container serves it itself instead of proxying to a separate server process."""


class SpeculativeDefaults(_Data):
    ngram: dict[str, Any]
    eagle3_tokens: int
    sglang_method_names: dict[str, str]


class Catalog(_Data):
    models: list[CatalogModel]
    recipes: dict[str, EngineRecipe]
    speculative: SpeculativeDefaults
    memory_utilization: float
    tensor_parallel_sizes: list[int]

    def find(self, repo: str) -> CatalogModel:
        for model in self.models:
            if model.repo.lower() == repo.lower():
                return model
        families = sorted({m.family for m in self.models})
        raise NotFoundError(
            f"Model '{repo}' is not in the catalog (families: {', '.join(families)}); "
            "see `shipyard endpoint catalog`"
        )


@cache
def load_catalog() -> Catalog:
    data = json.loads(CATALOG_FILE.read_text())
    data.pop("_doc", None)
    return Catalog.model_validate(data)


def derive_name(repo: str) -> str:
    """`Qwen/Qwen3.5-4B` → `qwen3-5-4b`: the repo's last part as a DNS-safe label."""
    name = re.sub(r"[^a-z0-9]+", "-", repo.rsplit("/", 1)[-1].lower()).strip("-")
    return name[:48].rstrip("-") or "endpoint"
