"""What the runtime can offer an endpoint: GPUs, engines, regions."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from ..exceptions import InvalidError
from ._models import REGIONS
from ._recipes import Hardware

# Per-GPU memory of the types `--gpu` accepts (GB), for recipe choice.
GPU_MEMORY_GB = {
    "T4": 16, "L4": 24, "A10G": 24, "A10": 24, "L40S": 48, "A100-40GB": 40, "A100": 80,
    "A100-80GB": 80, "H100": 80, "H200": 141, "B200": 180,
}
ENGINE_MODULES = {
    "vllm": "vllm", "sglang": "sglang", "llama.cpp": "llama_cpp", "transformers": "transformers",
}
# `SHIPYARD_NODE_REGIONS` (comma-separated) restricts the regions the local node is labelled with.
REGIONS_ENV = "SHIPYARD_NODE_REGIONS"


@dataclass(frozen=True)
class LocalGpu:
    name: str
    memory_gb: float


@cache
def local_gpus() -> tuple[LocalGpu, ...]:
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.strip().splitlines():
        name, _, memory = line.rpartition(",")
        gpus.append(LocalGpu(name.strip(), float(memory) / 1024))
    return tuple(gpus)


def installed_engines() -> frozenset[str]:
    found = (e for e, module in ENGINE_MODULES.items() if importlib.util.find_spec(module) is not None)
    return frozenset(found)


def parse_gpu(value: str) -> tuple[str, int]:
    kind, _, count = value.partition(":")
    kind = kind.strip().upper()
    if kind not in GPU_MEMORY_GB:
        raise InvalidError(f"Unknown GPU type '{kind}'; choose one of {', '.join(GPU_MEMORY_GB)}")
    try:
        number = int(count) if count else 1
    except ValueError:
        raise InvalidError(f"Invalid GPU count in '{value}': use TYPE or TYPE:N") from None
    if not 1 <= number <= 8:
        raise InvalidError(f"GPU count must be 1 to 8, not {number}")
    return kind, number


def endpoint_hardware(gpu: str | None, cores: int) -> Hardware:
    """The hardware one container gets: `--gpu TYPE[:N]` if given (it must exist here), else CPU.

    `cores`: the CPUs of the largest runtime node the container may run on (the engine's threads).
    """
    engines = installed_engines()
    if gpu is None:
        return Hardware(cpu_cores=cores, engines=engines)
    kind, count = parse_gpu(gpu)
    matching = [g for g in local_gpus() if kind.split("-")[0] in g.name.upper().replace(" ", "")]
    if len(matching) < count:
        have = ", ".join(g.name for g in local_gpus()) or "none"
        raise InvalidError(
            f"No runtime node has {count}x {kind} (GPUs here: {have}); pick another --gpu or omit it for CPU"
        )
    return Hardware(gpu_type=kind, gpu_count=count, gpu_memory_gb=min(g.memory_gb for g in matching),
                    cpu_cores=cores, engines=engines)


def node_regions() -> tuple[str, ...]:
    configured = os.environ.get(REGIONS_ENV)
    if not configured:
        return REGIONS
    return tuple(r.strip() for r in configured.split(",") if r.strip())


def check_colocation(region: str) -> None:
    if region not in node_regions():
        raise InvalidError(
            f"--colocate-compute pins containers to region {region}, but no runtime node is labelled "
            f"with it (nodes here: {', '.join(node_regions()) or 'none'})"
        )
