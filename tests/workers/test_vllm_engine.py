"""How the vLLM engine asks vLLM for a precision (no vLLM needed)."""

from __future__ import annotations

import pytest

from featurize import Precision, get_gpu, resolve_architecture
from llmco2.errors import InfeasibleConfigError
from workers.engines import EngineConfig
from workers.engines.vllm_engine import _dtype_kwargs


def _config(label: str, gpu: str | None) -> EngineConfig:
    return EngineConfig(
        resolve_architecture("qwen3-0.6b"),
        Precision.from_label(label),
        1,
        None if gpu is None else get_gpu(gpu),
    )


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
