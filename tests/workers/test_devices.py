"""NVML access: visible-device mapping and NVML failures turned into typed errors."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from llmco2.errors import GpuLostError, NvmlError, NvmlNotSupportedError
from workers.devices import NvmlCounterSource, detect_gpu_uuids, nvml_errors

pynvml = pytest.importorskip("pynvml")


def _raising(code: int) -> Any:
    def call(*args: object) -> object:
        raise pynvml.NVMLError(code)

    return call


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (pynvml.NVML_ERROR_NOT_SUPPORTED, NvmlNotSupportedError, "not supported by this GPU"),
        (pynvml.NVML_ERROR_GPU_IS_LOST, GpuLostError, "fallen off the bus"),
        (pynvml.NVML_ERROR_NO_PERMISSION, NvmlError, "no permission"),
        (pynvml.NVML_ERROR_UNKNOWN, NvmlError, "NVML error"),
    ],
)
def test_nvml_failures_become_typed_errors_saying_what_was_asked(
    code: int, kind: type[Exception], words: str
) -> None:
    with pytest.raises(kind) as info, nvml_errors("reading the energy counter"):
        _raising(code)()
    text = str(info.value)
    assert text.startswith("reading the energy counter: ") and words in text
    assert type(info.value) is kind and "\n" not in text
    with nvml_errors("nothing wrong"):
        pass  # no error, nothing raised


def _source(nvml: Any) -> NvmlCounterSource:
    # NVML without a GPU cannot be initialised here: a source over the given NVML functions.
    source = object.__new__(NvmlCounterSource)
    source._nvml = nvml
    source._handles = [object()]
    return source


def test_the_counter_source_raises_typed_errors() -> None:
    old_gpu = _source(
        SimpleNamespace(
            nvmlDeviceGetTotalEnergyConsumption=_raising(pynvml.NVML_ERROR_NOT_SUPPORTED)
        )
    )
    with pytest.raises(NvmlNotSupportedError, match="energy counter"):
        old_gpu.energy_mj()
    lost = _source(
        SimpleNamespace(
            nvmlDeviceGetPowerUsage=_raising(pynvml.NVML_ERROR_GPU_IS_LOST),
            NVML_CLOCK_SM=pynvml.NVML_CLOCK_SM,
        )
    )
    with pytest.raises(GpuLostError, match="power, clocks and temperature"):
        lost.state()


def test_a_worker_fails_a_point_by_the_kind_of_nvml_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from featurize import InferenceRequest
    from storage.records import PointStatus
    from workers.actors import EngineWorker

    from .test_actors import FAST, config

    worker = EngineWorker("simulated", config("qwen2-0.5b"), FAST, idle_seconds=0.5)
    assert worker.protocol is not None and worker.protocol.meter is not None
    source = worker.protocol.meter.source
    cases = [
        (GpuLostError("reading the GPU energy counter: the GPU has fallen off the bus (NVML)"),
         "gpu_lost", True),
        (NvmlNotSupportedError("reading the GPU energy counter: not supported by this GPU (NVML)"),
         "meter_unsupported", False),
        (NvmlError("reading the GPU energy counter: Unknown Error (NVML error 999)"), "nvml", True),
    ]  # fmt: skip
    for number, (error, kind, retryable) in enumerate(cases):

        def fail(error: Exception = error) -> list[int]:
            raise error

        monkeypatch.setattr(source, "energy_mj", fail)
        result = worker.measure(number, InferenceRequest(1, 64, 8))
        assert result.status == PointStatus.FAILED and result.error_kind == kind
        assert result.retryable is retryable and result.healthy is False
        assert result.error_message == str(error)
    worker.shutdown()


def _machine_of_three_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand NVML's listing calls in for a machine of three H100s (UUIDs as bytes)."""
    uuids = [b"GPU-aaa", b"GPU-bbb", b"GPU-ccc"]
    for name, call in {
        "nvmlInit": lambda: None,
        "nvmlDeviceGetCount": lambda: len(uuids),
        "nvmlDeviceGetHandleByIndex": lambda i: ("handle", i),
        "nvmlDeviceGetUUID": lambda h: uuids[h[1]],
        "nvmlDeviceGetName": lambda h: b"NVIDIA H100 80GB HBM3",
        "nvmlSystemGetDriverVersion": lambda: b"580.159.04",
    }.items():
        monkeypatch.setattr(pynvml, name, call)


def test_the_counter_source_meters_the_visible_gpus_and_the_listing_names_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _machine_of_three_gpus(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-ccc,1")
    source = NvmlCounterSource()
    assert source.uuids == ["GPU-ccc", "GPU-bbb"]
    assert source.nvml_indices == [2, 1]
    assert source.names == ["NVIDIA H100 80GB HBM3"] * 2
    assert NvmlCounterSource(count=1).uuids == ["GPU-ccc"]
    # The machine's GPUs, whatever this process may use of them.
    assert detect_gpu_uuids() == ["GPU-aaa", "GPU-bbb", "GPU-ccc"]
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", _raising(pynvml.NVML_ERROR_UNKNOWN))
    assert detect_gpu_uuids() == []
    with pytest.raises(NvmlError, match="listing the GPUs"):
        NvmlCounterSource()
