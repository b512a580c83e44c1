"""``llmco2 measure``: pick the device, start a local Ray, measure one point through an actor."""

from __future__ import annotations

import importlib.util

from featurize.gpus import Gpu, GpuCatalog
from featurize.request import InferenceRequest
from llmco2.errors import EngineUnavailableError, GpuUnavailableError
from workers.actors import WorkerResult
from workers.devices import detect_gpu_names
from workers.engines import EngineConfig, engine_class
from workers.protocol import ProtocolSettings

#: GPU the simulated engine models when none is named and none is present.
DEFAULT_SIMULATED_GPU = "H100-SXM"


def resolve_measurement_gpu(
    engine: str, gpu: str, tp: int, catalog: GpuCatalog | None = None
) -> tuple[Gpu | None, str | None]:
    """The GPU type to measure on (None: the CPU) and a note for the user.

    Args:
        engine: Engine name.
        gpu: ``auto`` (this machine's GPU) or a GPU type.
        tp: GPUs to measure on.
        catalog: GPU catalog to look types up in (default: the built-in one).

    Raises:
        EngineUnavailableError: No GPU for a GPU engine, TP above the visible GPUs, no vLLM.
        UnknownGpuError: A named GPU that is not in the catalog.
        InvalidRequestError: An engine setting of the environment that cannot be used.
    """
    engine_class(engine).check_environment()
    catalog = catalog if catalog is not None else GpuCatalog.default()
    present = detect_gpu_names()
    if engine == "simulated":
        if gpu != "auto":
            return catalog.get(gpu), None
        if present:
            return catalog.get(present[0]), None
        return catalog.get(
            DEFAULT_SIMULATED_GPU
        ), f"no GPU here: simulating a {DEFAULT_SIMULATED_GPU}"
    if not present:
        if engine == "vllm" and importlib.util.find_spec("vllm") is not None:
            if tp != 1:
                raise EngineUnavailableError("vLLM on a CPU runs without tensor parallelism")
            return None, "no GPU here: vLLM runs on the CPU, energy is not metered"
        if engine == "transformers" and importlib.util.find_spec("transformers") is not None:
            if tp != 1:
                raise EngineUnavailableError("the transformers engine runs TP 1 only")
            return None, "no GPU here: transformers runs on the CPU, energy is not metered"
        raise GpuUnavailableError(
            f"no GPU found for --engine {engine}"
            + (" and vLLM is not installed" if engine == "vllm" else "")
        )
    if tp > len(present):
        raise GpuUnavailableError(f"TP {tp} needs {tp} GPUs but {len(present)} are visible")
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise EngineUnavailableError("vLLM is not installed (pip install vllm)")
    detected = catalog.get(present[0])
    if gpu != "auto" and catalog.get(gpu).id != detected.id:
        raise EngineUnavailableError(f"--gpu {gpu} asked for, but this machine has {present[0]}")
    return detected, None


def measure_locally(
    engine: str,
    config: EngineConfig,
    request: InferenceRequest,
    settings: ProtocolSettings,
    ray_address: str | None = None,
) -> tuple[WorkerResult, dict[str, float]]:
    """Measure one point through a Ray actor; returns the result and the actor's timing."""
    from workers.cluster import connect, disconnect
    from workers.pool import PointTask, measure_tasks

    connect(ray_address)
    timings: list[dict[str, float]] = []
    try:
        (result,) = list(
            measure_tasks(engine, [PointTask(0, config, request)], settings, timings=timings)
        )
    finally:
        disconnect()
    return result, timings[0] if timings else {}
