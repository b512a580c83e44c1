"""GPU actors that load the next configuration in their own process, on a Ray cluster that
declares one GPU (the engines are plug-ins of the twin that hold GPUs like vLLM does)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from featurize import InferenceRequest, Precision, get_gpu, resolve_architecture
from storage.records import PointStatus
from tests.conftest import local_ray
from workers.actors import WorkerResult
from workers.engines import EngineConfig
from workers.pool import PointTask, ResidentEngines, measure_tasks
from workers.protocol import ProtocolSettings

FAST = ProtocolSettings(windows=2, min_window_s=2.0)
HELD = "tests.workers.gpu_held:GpuHeldEngine"


@pytest.fixture(scope="module")
def one_gpu_cluster() -> Iterator[None]:
    with local_ray(num_gpus=1):
        yield


def work(models: list[str]) -> list[PointTask]:
    h200 = get_gpu("H200")
    configs = [EngineConfig(resolve_architecture(m), Precision(), 1, h200) for m in models]
    return [
        PointTask(10 * n + k, cfg, InferenceRequest(1, prompt, 8))
        for n, cfg in enumerate(configs)
        for k, prompt in enumerate((64, 300))
    ]


def energies(results: list[WorkerResult]) -> dict[int, float]:
    return {
        r.point_id: r.record.energy_j
        for r in results
        if r.record is not None and r.record.energy_j is not None
    }


def assert_gpu_freed() -> None:
    """The cluster's GPU is free again within 30 s (no actor holds it)."""
    import ray

    deadline = time.monotonic() + 30
    while ray.available_resources().get("GPU", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("GPU", 0) == 1


def test_a_gpu_actor_loads_the_next_configuration_in_its_process(one_gpu_cluster: None) -> None:
    models = ["qwen2-0.5b", "bloom-560m", "qwen2-1.5b"]
    timings: list[dict[str, float]] = []
    results = list(measure_tasks(HELD, work(models), FAST, timings=timings))
    assert {r.status for r in results} == {PointStatus.COMPLETE}
    assert len(timings) == 3 and len({t["pid"] for t in timings}) == 1  # one process, 3 engines
    extras = [r.record.extra for r in results if r.record is not None and r.record.extra]
    starts = {extra["engine_instance"]: extra for extra in extras}
    assert len(starts) == 3  # three engine starts
    first, *later = sorted(starts.values(), key=lambda extra: str(extra["engine_loaded_at"]))
    # The first engine waited for its actor; the others started in its process at once.
    assert first["engine_phases"]["actor_start_s"] > 0.0
    assert [extra["engine_phases"]["actor_start_s"] for extra in later] == [0.0, 0.0]
    # An engine loaded in a reused process measures as one in a fresh process does.
    fresh = energies(list(measure_tasks(HELD, work(models[1:2]), FAST)))
    reused = energies(results)
    assert len(fresh) == 2
    for point_id, energy in fresh.items():
        assert reused[10 + point_id] == pytest.approx(energy, rel=1e-9)


def test_a_resident_gpu_engine_that_must_make_room_loads_the_next_in_place(
    one_gpu_cluster: None,
) -> None:

    resident = ResidentEngines(capacity=2)
    tasks = work(["qwen2-0.5b", "bloom-560m", "qwen2-1.5b"])
    first_timings: list[dict[str, float]] = []
    # One call with two configurations: the first stays loaded until the second needs its GPU.
    first = list(measure_tasks(HELD, tasks[:4], FAST, timings=first_timings, resident=resident))
    # The next call (a campaign's next round) has no work for the engine left loaded.
    timings: list[dict[str, float]] = []
    second = list(measure_tasks(HELD, tasks[4:], FAST, timings=timings, resident=resident))
    assert {r.status for r in [*first, *second]} == {PointStatus.COMPLETE}
    assert len({t["pid"] for t in [*first_timings, *timings]}) == 1  # one process, 3 engines
    phases = {
        r.point_id: r.record.extra["engine_phases"]["actor_start_s"]
        for r in [*first, *second]
        if r.record is not None and r.record.extra
    }
    assert phases[0] > 0.0 and phases[10] == phases[20] == 0.0
    assert len(resident) == 1
    resident.close()
    assert_gpu_freed()  # the last engine shut down


def test_an_actor_whose_gpus_cannot_be_shown_free_is_replaced(
    one_gpu_cluster: None, caplog: pytest.LogCaptureFixture
) -> None:
    timings: list[dict[str, float]] = []
    engine = "tests.workers.gpu_held:UnreadableMemoryEngine"
    with caplog.at_level(logging.WARNING, logger="workers.pool"):
        results = list(
            measure_tasks(engine, work(["qwen2-0.5b", "bloom-560m"]), FAST, timings=timings)
        )
    assert {r.status for r in results} == {PointStatus.COMPLETE}
    assert len({t["pid"] for t in timings}) == 2  # a new process for the second engine
    assert "replaced, not reused" in caplog.text  # and the job's log says why


def test_a_configuration_that_fails_in_a_reused_process_is_tried_in_a_fresh_one(
    one_gpu_cluster: None,
) -> None:

    timings: list[dict[str, float]] = []
    engine = "tests.workers.gpu_held:FailsWhenReusedEngine"
    results = list(measure_tasks(engine, work(["qwen2-0.5b", "bloom-560m"]), FAST, timings=timings))
    # Every point measured, none blamed on the configuration: the failed load was not reported.
    assert sorted(r.point_id for r in results) == [0, 1, 10, 11]
    assert {r.status for r in results} == {PointStatus.COMPLETE}
    assert len({t["pid"] for t in timings}) == 2
    assert_gpu_freed()  # every actor gone


def test_the_clusters_gpus_are_listed_while_an_engine_holds_every_one(
    one_gpu_cluster: None,
) -> None:
    import ray

    from workers.actors import worker_actor
    from workers.cluster import cluster_gpu_uuids
    from workers.devices import detect_gpu_uuids

    engine = worker_actor(HELD, work(["qwen2-0.5b"])[0].config, FAST, 0.0)
    try:
        assert ray.get(engine.info.remote(), timeout=60)["load_error"] is None
        # The listing reserves nothing: it runs beside the engine that holds the one GPU (a
        # task that asked for the GPU would wait past the timeout), and names what NVML sees
        # on this machine (nothing on one without a driver).
        assert cluster_gpu_uuids(timeout_s=30) == sorted(detect_gpu_uuids())
    finally:
        ray.kill(engine)
