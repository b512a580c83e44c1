"""How the vLLM engine asks vLLM for a precision and a way to start (no vLLM needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from featurize import Precision, get_gpu, resolve_architecture
from llmco2.errors import InfeasibleConfigError, InvalidRequestError
from workers.engines import EngineConfig
from workers.engines.vllm_engine import (
    VllmEngine,
    _dtype_kwargs,
    checkpoint_quantization,
    compile_kwargs,
    compile_mode,
    executor,
    routes_by_biases_under_dummy_weights,
    use_compile_cache,
)


def _config(label: str, gpu: str | None) -> EngineConfig:
    return EngineConfig(
        resolve_architecture("qwen3-0.6b"),
        Precision.from_label(label),
        1,
        None if gpu is None else get_gpu(gpu),
    )


def test_gpt_oss_declares_its_mxfp4_experts_in_the_config() -> None:
    gpt_oss = EngineConfig(
        resolve_architecture("gpt-oss-20b"), Precision.from_label("w16a16kv8e4"), 1, get_gpu("H200")
    )
    assert checkpoint_quantization(gpt_oss) == {"quant_method": "mxfp4"}
    assert _dtype_kwargs(gpt_oss) == {"dtype": "bfloat16", "kv_cache_dtype": "fp8"}
    assert checkpoint_quantization(_config("w16a16kv16", "H200")) is None


@pytest.mark.parametrize(
    ("model", "label", "says"),
    [
        ("qwen3-30b-a3b", "w16a16kv16e4", "only as gpt-oss's MXFP4"),
        ("gpt-oss-20b", "w16a16kv16e8", "only as gpt-oss's MXFP4"),
        ("gpt-oss-20b", "w8a8kv16e4", "beside bf16 weights"),
    ],
)
def test_experts_vllm_cannot_load_are_refused(model: str, label: str, says: str) -> None:
    config = EngineConfig(resolve_architecture(model), Precision.from_label(label), 1, None)
    with pytest.raises(InfeasibleConfigError, match=says):
        checkpoint_quantization(config)


def test_fp8_with_an_fp8_kv_cache_on_hopper() -> None:
    assert _dtype_kwargs(_config("w8a8kv8", "H200")) == {
        "dtype": "bfloat16",
        "kv_cache_dtype": "fp8",
        "quantization": "fp8",
    }


def test_bf16_asks_for_no_quantisation() -> None:
    assert _dtype_kwargs(_config("w16a16kv16", "A100-80GB")) == {"dtype": "bfloat16"}


@pytest.mark.parametrize(
    ("label", "gpu", "says"),
    [
        ("w8a16kv16", "H200", "ask for w8a8"),  # vLLM would run W8A8 on FP8 tensor cores
        ("w8a8kv16", "A100-80GB", "ask for w8a16"),  # ... and weight-only without them
        ("w4a16kv16", "H200", "only w8"),
    ],
)
def test_a_precision_vllm_would_run_as_another_is_refused(label: str, gpu: str, says: str) -> None:
    with pytest.raises(InfeasibleConfigError, match=says):
        _dtype_kwargs(_config(label, gpu))


def test_weight_only_fp8_where_there_are_no_fp8_tensor_cores() -> None:
    assert _dtype_kwargs(_config("w8a16kv16", "A100-80GB"))["quantization"] == "fp8"


@pytest.mark.parametrize(
    ("model", "zeroed"),
    [
        ("gpt-oss-20b", True),  # router, attention and expert biases
        ("qwen3-30b-a3b", False),  # experts without any bias: dummy routing follows the tokens
        ("deepseek-v2-lite", False),
        ("qwen2.5-7b", False),  # Q/K/V biases but no experts to route
    ],
)
def test_only_experts_behind_biases_get_their_dummy_biases_zeroed(model: str, zeroed: bool) -> None:
    assert routes_by_biases_under_dummy_weights(resolve_architecture(model)) is zeroed


def test_engines_start_with_vllms_compiler_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLMCO2_VLLM_COMPILE", raising=False)
    assert compile_mode() == "inductor" and compile_kwargs("inductor") == {}
    monkeypatch.setenv("LLMCO2_VLLM_COMPILE", "none")
    assert compile_mode() == "none"
    # No compiler: full CUDA graphs for the decode steps, the prefill eager.
    assert compile_kwargs("none") == {
        "compilation_config": {"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY"}
    }
    monkeypatch.setenv("LLMCO2_VLLM_COMPILE", "fast")
    with pytest.raises(InvalidRequestError, match=r"LLMCO2_VLLM_COMPILE='fast'.*inductor, none"):
        compile_mode()


def test_tp_1_engines_run_their_model_in_the_engine_core_process_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLMCO2_VLLM_EXECUTOR", raising=False)
    assert executor(1) == "uni" and executor(2) == "mp"  # one process cannot hold two GPUs
    monkeypatch.setenv("LLMCO2_VLLM_EXECUTOR", "mp")
    assert executor(1) == executor(4) == "mp"
    monkeypatch.setenv("LLMCO2_VLLM_EXECUTOR", "ray")
    with pytest.raises(InvalidRequestError, match=r"LLMCO2_VLLM_EXECUTOR='ray'.*uni, mp"):
        VllmEngine.check_environment()


def test_the_compile_cache_directory_holds_every_compilers_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    variables = ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
    for variable in variables:
        monkeypatch.setenv(variable, "/elsewhere")  # restored after the test
    monkeypatch.delenv("LLMCO2_COMPILE_CACHE", raising=False)
    assert use_compile_cache() is None
    assert all(os.environ[v] == "/elsewhere" for v in variables)  # unset: left as they were
    monkeypatch.setenv("LLMCO2_COMPILE_CACHE", str(tmp_path / "cache"))
    assert use_compile_cache() == str(tmp_path / "cache")
    folders = {os.environ[v] for v in variables}
    assert folders == {str(tmp_path / "cache" / name) for name in ("vllm", "inductor", "triton")}
    assert all(Path(folder).is_dir() for folder in folders)
