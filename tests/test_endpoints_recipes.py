"""Recipe choice for every catalog family against described hardware (pure)."""

from __future__ import annotations

import json

import pytest

from shipyard.endpoints import Hardware, derive_name, load_catalog, select_recipe
from shipyard.exceptions import InvalidError, NotFoundError

CPU = Hardware(cpu_cores=2, engines=frozenset({"llama.cpp"}))
GPU_24 = Hardware(gpu_type="L4", gpu_count=1, gpu_memory_gb=24, engines=frozenset({"vllm"}))
GPU_80 = Hardware(gpu_type="H100", gpu_count=1, gpu_memory_gb=80, engines=frozenset({"vllm"}))
GPU_8x80 = Hardware(gpu_type="H100", gpu_count=8, gpu_memory_gb=80, engines=frozenset({"vllm"}))
GPU_8x141 = Hardware(gpu_type="H200", gpu_count=8, gpu_memory_gb=141, engines=frozenset({"vllm"}))

FULL = "full"
# model → hardware → (tensor parallel size, max model len ("full" = the model's context)) or None (no fit)
EXPECTED: dict[str, dict[str, tuple[int, int | str] | None]] = {
    "Qwen/Qwen3.5-4B": {"24": (1, FULL), "80": (1, FULL), "8x80": (1, FULL)},
    "Qwen/Qwen3.6-27B": {"24": None, "80": (1, 32768), "8x80": (2, FULL)},
    "Qwen/Qwen3-8B": {"24": (1, 32768), "80": (1, FULL), "8x80": (1, FULL)},
    "Qwen/Qwen3-30B-A3B-Instruct-2507": {"24": None, "80": (1, 32768), "8x80": (2, FULL)},
    "Qwen/Qwen3-Next-80B-A3B-Instruct": {"24": None, "80": None, "8x80": (4, FULL)},
    "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": {"24": None, "80": None, "8x80": (8, FULL)},
    "moonshotai/Kimi-K2-Instruct": {"24": None, "80": None, "8x80": None},
    "moonshotai/Kimi-K2-Thinking": {"24": None, "80": None, "8x80": None},
    "google/gemma-4-31B-it": {"24": None, "80": (1, 32768), "8x80": (2, FULL)},
    "google/gemma-4-E4B-it": {"24": (1, 32768), "80": (1, FULL), "8x80": (1, FULL)},
    "deepseek-ai/DeepSeek-V3.1": {"24": None, "80": None, "8x80": None},
    "deepseek-ai/DeepSeek-R1-0528": {"24": None, "80": None, "8x80": None},
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": {"24": (1, 32768), "80": (1, FULL), "8x80": (1, FULL)},
    "nvidia/NVIDIA-Nemotron-Nano-9B-v2": {"24": None, "80": (1, FULL), "8x80": (1, FULL)},
    "nvidia/Llama-3_3-Nemotron-Super-49B-v1_5": {"24": None, "80": None, "8x80": (2, FULL)},
    "openai/gpt-oss-20b": {"24": (1, FULL), "80": (1, FULL), "8x80": (1, FULL)},
    "openai/gpt-oss-120b": {"24": None, "80": (1, 32768), "8x80": (2, FULL)},
    "zai-org/GLM-4.5-Air": {"24": None, "80": None, "8x80": (4, FULL)},
    "zai-org/GLM-4.6-FP8": {"24": None, "80": None, "8x80": (8, FULL)},
    "HuggingFaceTB/SmolLM2-135M-Instruct": {"24": (1, FULL), "80": (1, FULL), "8x80": (1, FULL)},
}
HARDWARE = {"24": GPU_24, "80": GPU_80, "8x80": GPU_8x80}
FAMILIES = {"qwen", "kimi", "gemma4", "deepseek", "nemotron", "gpt-oss", "glm"}


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_catalog_covers_every_family_and_the_expectations_cover_the_catalog() -> None:
    catalog = load_catalog()
    assert {m.family for m in catalog.models} >= FAMILIES
    assert {m.repo for m in catalog.models} == set(EXPECTED)
    assert all(m.context_length > 0 and m.min_gpu_memory_gb > 0 and m.params_b > 0 for m in catalog.models)


@pytest.mark.parametrize("repo", sorted(EXPECTED))
@pytest.mark.parametrize("hw", ["24", "80", "8x80"])
def test_gpu_recipe(repo: str, hw: str) -> None:
    model = load_catalog().find(repo)
    expected = EXPECTED[repo][hw]
    if expected is None:
        with pytest.raises(InvalidError, match=rf"needs ≥ {model.min_gpu_memory_gb:g} GB GPU memory"):
            select_recipe(repo, HARDWARE[hw])
        return
    recipe = select_recipe(repo, HARDWARE[hw])
    tp, max_len = expected
    assert recipe.engine == "vllm"
    assert recipe.tensor_parallel_size == tp == recipe.gpu_count
    assert recipe.max_model_len == (model.context_length if max_len == FULL else max_len)
    args = recipe.command(weights="/w", port=8000, python="/py", threads=2)
    assert args[:3] == ["vllm", "serve", "/w"]
    assert _flag(args, "--tensor-parallel-size") == str(tp)
    assert _flag(args, "--max-model-len") == str(recipe.max_model_len)
    assert _flag(args, "--served-model-name") == repo
    assert _flag(args, "--host") == "127.0.0.1" and _flag(args, "--port") == "8000"
    assert "--enable-prefix-caching" in args
    assert ("--trust-remote-code" in args) == model.trust_remote_code
    if model.reasoning_parser:
        assert _flag(args, "--reasoning-parser") == model.reasoning_parser
    else:
        assert "--reasoning-parser" not in args
    if model.tool_parser:
        assert "--enable-auto-tool-choice" in args and _flag(args, "--tool-call-parser") == model.tool_parser
    speculative = json.loads(_flag(args, "--speculative-config"))
    assert speculative == recipe.speculative
    if model.mtp_heads:
        assert speculative == {"method": model.mtp_method, "num_speculative_tokens": model.mtp_heads}
    elif model.eagle3_draft:
        assert speculative == {"method": "eagle3", "model": model.eagle3_draft, "num_speculative_tokens": 3}
    else:
        assert speculative["method"] == "ngram" and speculative["num_speculative_tokens"] == 4
        assert speculative["prompt_lookup_max"] == 4


def test_speculative_choice_per_family() -> None:
    assert select_recipe("Qwen/Qwen3.5-4B", GPU_80).speculative == {
        "method": "qwen3_next_mtp", "num_speculative_tokens": 1}
    assert select_recipe("deepseek-ai/DeepSeek-V3.1", GPU_8x141).speculative == {
        "method": "deepseek_mtp", "num_speculative_tokens": 1}
    assert select_recipe("zai-org/GLM-4.5-Air", GPU_8x80).speculative["method"] == "glm4_moe_mtp"  # type: ignore[index]
    assert select_recipe("openai/gpt-oss-120b", GPU_80).speculative == {
        "method": "eagle3", "model": "nvidia/gpt-oss-120b-Eagle3", "num_speculative_tokens": 3}
    assert select_recipe("Qwen/Qwen3-8B", GPU_24).speculative["model"] == "AngelSlim/Qwen3-8B_eagle3"  # type: ignore[index]
    assert select_recipe("google/gemma-4-31B-it", GPU_80).speculative["method"] == "ngram"  # type: ignore[index]
    assert select_recipe("moonshotai/Kimi-K2-Thinking", GPU_8x141).speculative["method"] == "ngram"  # type: ignore[index]


def test_biggest_models_fit_eight_h200() -> None:
    kimi = select_recipe("moonshotai/Kimi-K2-Thinking", GPU_8x141)
    assert kimi.tensor_parallel_size == 8 and kimi.engine == "vllm"
    args = kimi.command(weights="w", port=1, python="p", threads=1)
    assert _flag(args, "--tool-call-parser") == "kimi_k2" and "--trust-remote-code" in args
    assert select_recipe("deepseek-ai/DeepSeek-V3.1", GPU_8x141).tensor_parallel_size == 8
    with pytest.raises(InvalidError, match="needs ≥ 1100 GB GPU memory"):
        select_recipe("moonshotai/Kimi-K2-Instruct", GPU_8x141)


def test_sglang_where_installed_and_preferred() -> None:
    engines = frozenset({"vllm", "sglang"})
    with_sglang = Hardware(gpu_type="H100", gpu_count=8, gpu_memory_gb=80, engines=engines)
    recipe = select_recipe("Qwen/Qwen3-Next-80B-A3B-Instruct", with_sglang)
    assert recipe.engine == "sglang" and recipe.tensor_parallel_size == 4
    args = recipe.command(weights="/w", port=8000, python="/py", threads=2)
    assert args[:4] == ["python", "-m", "sglang.launch_server", "--model-path"]
    assert _flag(args, "--tp-size") == "4"
    assert _flag(args, "--speculative-algorithm") == "NEXTN" and _flag(args, "--speculative-num-steps") == "1"
    # Not preferred: vLLM even with SGLang installed.
    assert select_recipe("Qwen/Qwen3-8B", with_sglang).engine == "vllm"


def test_cpu_recipe_is_llama_cpp_for_gguf_models_only() -> None:
    recipe = select_recipe("HuggingFaceTB/SmolLM2-135M-Instruct", CPU)
    assert recipe.engine == "llama.cpp" and recipe.speculative is None and recipe.gpu_count == 0
    args = recipe.command(weights="/m.gguf", port=8000, python="/py", threads=2)
    assert args[:3] == ["/py", "-m", "shipyard.endpoints._llamacpp"]
    assert _flag(args, "--model") == "/m.gguf"
    assert _flag(args, "--model_alias") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert _flag(args, "--interrupt_requests") == "False"
    # Served by the container itself; GPU engines run as their own server process.
    assert recipe.in_process and not select_recipe("Qwen/Qwen3-8B", Hardware(
        gpu_type="H100", gpu_count=1, gpu_memory_gb=80, engines=frozenset({"vllm"}))).in_process
    assert _flag(args, "--n_ctx") == "2048" and _flag(args, "--n_threads") == "2"
    custom = select_recipe("HuggingFaceTB/SmolLM2-135M-Instruct", CPU, served_model_name="me/ft")
    assert _flag(custom.command(weights="w", port=1, python="p", threads=1), "--model_alias") == "me/ft"
    for repo in EXPECTED:
        if repo.startswith("HuggingFaceTB/"):
            continue
        with pytest.raises(InvalidError, match=r"needs a GPU with ≥ .* GB memory.*no GPU"):
            select_recipe(repo, CPU)


def test_unknown_model_and_names() -> None:
    with pytest.raises(NotFoundError, match="not in the catalog"):
        select_recipe("nobody/nothing", CPU)
    assert derive_name("Qwen/Qwen3.5-4B") == "qwen3-5-4b"
    assert derive_name("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    assert select_recipe("qwen/qwen3.5-4b", GPU_24).model == "Qwen/Qwen3.5-4B"


def test_regions_and_gpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.endpoints._hardware import check_colocation, parse_gpu

    for region in ("us-west", "us-east", "eu-west", "ap-south"):
        check_colocation(region)  # one machine carries every region label by default
    monkeypatch.setenv("SHIPYARD_NODE_REGIONS", "us-west,eu-west")
    check_colocation("eu-west")
    with pytest.raises(InvalidError, match="no runtime node is labelled with it"):
        check_colocation("ap-south")
    assert parse_gpu("h100:8") == ("H100", 8) and parse_gpu("L4") == ("L4", 1)
    with pytest.raises(InvalidError, match="Unknown GPU type"):
        parse_gpu("Z80")
