"""Worker actors under a real local Ray cluster (loopback only, explicit CPUs)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from featurize import InferenceRequest, Precision, get_gpu, resolve_architecture
from storage.records import PointStatus
from tests.conftest import local_ray
from workers.actors import gpu_actor_cpus
from workers.engines import EngineConfig
from workers.pool import PointTask, ResidentEngines, Task, measure_tasks
from workers.protocol import ProtocolSettings

FAST = ProtocolSettings(windows=2, min_window_s=2.0)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with local_ray():
        yield


def config(model: str, gpu: str = "H200", tp: int = 1) -> EngineConfig:
    return EngineConfig(resolve_architecture(model), Precision(), tp, get_gpu(gpu))


def tasks(cfg: EngineConfig, start: int, prompts: list[int]) -> list[PointTask]:
    return [PointTask(start + n, cfg, InferenceRequest(1, p, 8)) for n, p in enumerate(prompts)]


def test_one_actor_per_configuration_measures_its_points(ray_cluster: None) -> None:
    work = tasks(config("qwen2-0.5b"), 0, [64, 128, 256]) + tasks(
        config("llama3.1-8b", tp=2), 100, [512, 1024]
    )
    timings: list[dict[str, float]] = []
    results = list(measure_tasks("simulated", work, FAST, num_cpus=0.5, timings=timings))
    assert sorted(r.point_id for r in results) == [0, 1, 2, 100, 101]
    assert all(r.status == PointStatus.COMPLETE for r in results)
    for result in results:
        assert result.record is not None and result.record.simulated
        assert result.record.energy_j is not None and result.record.energy_j > 0
    assert len(timings) == 2  # one actor per configuration
    assert all(0 < t["duty_cycle"] <= 1 and t["points"] > 0 for t in timings)


def test_a_configuration_that_does_not_fit_is_infeasible(ray_cluster: None) -> None:
    work = tasks(config("llama3.1-70b", gpu="L4"), 0, [64, 128]) + tasks(
        config("qwen2-0.5b", gpu="L4"), 10, [64]
    )
    results = {r.point_id: r for r in measure_tasks("simulated", work, FAST, num_cpus=0.5)}
    assert results[0].status == results[1].status == PointStatus.INFEASIBLE
    assert "GB per GPU" in (results[0].error_message or "")
    assert results[10].status == PointStatus.COMPLETE


def test_a_crashed_actor_fails_its_point_and_is_replaced(ray_cluster: None) -> None:
    work = tasks(config("qwen2-0.5b"), 0, [64, 13, 128, 256])
    results = {
        r.point_id: r
        for r in measure_tasks("tests.workers.crashing:CrashingEngine", work, FAST, num_cpus=0.5)
    }
    crashed = results[1]
    assert crashed.status == PointStatus.FAILED
    assert crashed.error_kind == "actor_died" and crashed.retryable
    assert [results[n].status for n in (0, 2, 3)] == [PointStatus.COMPLETE] * 3


def test_stopping_early_releases_every_actor(ray_cluster: None) -> None:
    import ray

    work = tasks(config("qwen2-0.5b"), 0, [64, 128, 256]) + tasks(config("bloom-560m"), 10, [64])
    timings: list[dict[str, float]] = []
    stream = measure_tasks("simulated", work, FAST, num_cpus=0.5, timings=timings)
    first = next(stream)
    assert first.status == PointStatus.COMPLETE
    stream.close()
    assert len(timings) == 2  # both actors were asked for their timing and stopped
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2


def test_gpu_engines_need_gpus_in_the_cluster(ray_cluster: None) -> None:
    work = tasks(config("qwen2-0.5b", tp=2), 0, [64])
    (result,) = measure_tasks("vllm", work, FAST)
    assert result.status == PointStatus.FAILED and result.error_kind == "no_gpus"


def test_actors_without_gpus_are_reused_across_configurations(ray_cluster: None) -> None:
    configs = [config("qwen2-0.5b"), config("bloom-560m"), config("qwen2-1.5b", tp=2)]
    work = [task for n, cfg in enumerate(configs) for task in tasks(cfg, 10 * n, [64, 300])]
    timings: list[dict[str, float]] = []
    pooled = {
        r.point_id: r
        for r in measure_tasks("simulated", work, FAST, num_cpus=0.5, max_actors=1, timings=timings)
    }
    assert len(timings) == 3 and len({t["pid"] for t in timings}) == 1  # one process, 3 configs
    assert all(t["points"] == 2 for t in timings)  # each configuration's own counts
    # A reused actor measures a configuration exactly as a fresh one does.
    fresh = {r.point_id: r for r in measure_tasks("simulated", work[4:], FAST, num_cpus=0.5)}
    for point_id, result in fresh.items():
        reused = pooled[point_id]
        assert reused.status == result.status == PointStatus.COMPLETE
        assert reused.record is not None and result.record is not None
        assert reused.record.energy_j == pytest.approx(result.record.energy_j, rel=1e-9)


def test_resident_engines_measure_the_next_call_without_a_new_start(ray_cluster: None) -> None:
    import ray

    small, bloom, other = config("qwen2-0.5b"), config("bloom-560m"), config("qwen2-1.5b")
    resident = ResidentEngines(capacity=2)
    first_timings: list[dict[str, float]] = []
    first = list(measure_tasks(
        "simulated", tasks(small, 0, [64, 128]) + tasks(bloom, 10, [64]), FAST, num_cpus=0.5,
        max_actors=2, timings=first_timings, resident=resident,
    ))  # fmt: skip
    assert {r.status for r in first} == {PointStatus.COMPLETE}
    assert set(resident.configs()) == {small, bloom}  # both kept loaded

    def instance(result: Any) -> str:
        return str(result.record.extra["engine_instance"])

    # The next call measures on the kept engine of its configuration; the one it has no work
    # for is shut down and a third configuration gets a fresh engine.
    timings: list[dict[str, float]] = []
    second = list(measure_tasks(
        "simulated", tasks(small, 20, [256, 512]) + tasks(other, 30, [64]), FAST,
        num_cpus=0.5, max_actors=2, timings=timings, resident=resident,
    ))  # fmt: skip
    by_id = {r.point_id: r for r in [*first, *second]}
    assert instance(by_id[20]) == instance(by_id[21]) == instance(by_id[0])
    assert instance(by_id[30]) not in {instance(by_id[0]), instance(by_id[10])}
    assert set(resident.configs()) == {small, other}
    # What the kept engine adds in this call, not its life so far: two points, no new load.
    reused = next(t for t in timings if t["pid"] == next(
        f["pid"] for f in first_timings if f["points"] == 2))  # fmt: skip
    fresh = next(t for t in timings if t is not reused)
    assert reused["points"] == 2 and reused["load_s"] == 0.0 < fresh["load_s"]
    # Two points on a loaded engine hold it for less than one engine start and one point.
    assert 0 < reused["window_s"] <= reused["held_s"] < fresh["held_s"]
    resident.close()
    assert len(resident) == 0
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2


def test_each_result_carries_the_gpu_time_held_since_the_previous_one() -> None:
    from workers.actors import EngineWorker

    worker = EngineWorker("simulated", config("qwen2-0.5b", tp=2), FAST, idle_seconds=1.0)
    first = worker.measure(1, InferenceRequest(1, 64, 8))
    second = worker.measure(2, InferenceRequest(2, 128, 8))
    assert first.status == second.status == PointStatus.COMPLETE
    # The first carries the engine load and idle-power measurement, each at least one window.
    assert first.gpu_seconds > second.gpu_seconds > 2 * FAST.min_window_s * 2
    held = worker.timing()["held_s"]
    assert first.gpu_seconds + second.gpu_seconds == pytest.approx(2 * held, rel=1e-6)  # TP 2
    # Each measurement names its engine start and its share of the time (per GPU).
    assert first.record is not None and second.record is not None
    extras = first.record.extra or {}, second.record.extra or {}
    assert extras[0]["engine_instance"] == extras[1]["engine_instance"] == worker.instance
    assert extras[0]["engine_loaded_at"] == worker.loaded_at.isoformat()
    assert [e["held_s"] * 2 for e in extras] == [first.gpu_seconds, second.gpu_seconds]
    assert sum(e["window_s"] for e in extras) == pytest.approx(worker.timing()["window_s"])
    assert extras[1]["window_s"] >= FAST.windows * FAST.min_window_s
    assert extras[0]["engine_phases"] == extras[1]["engine_phases"] == worker.load_phases
    assert set(worker.load_phases) == {"idle_power_s"}  # no actor: started in this process
    before = worker.instance
    worker.reload(config("qwen2-1.5b"), FAST, idle_seconds=0.0)
    assert worker.instance != before  # another engine start
    worker.shutdown()


def test_an_actor_start_counts_from_when_the_actor_was_asked_for() -> None:
    import time
    from datetime import UTC, datetime

    from workers.actors import EngineWorker

    asked = time.time() - 5.0  # Ray took 5 s to start the actor's process
    worker = EngineWorker("simulated", config("qwen2-0.5b"), FAST, 0.0, requested_at=asked)
    assert worker.load_phases["actor_start_s"] == pytest.approx(5.0, abs=1.0)
    assert worker.loaded_at.timestamp() == pytest.approx(asked, abs=1.0)
    assert worker.loaded_at < datetime.now(UTC)
    worker.shutdown()


@pytest.mark.parametrize(
    ("tp", "resources", "expected"),
    [
        (1, {"CPU": 16.0, "GPU": 1.0}, 8.0),  # one H200 with 16 cores: capped at 8
        (2, {"CPU": 32.0, "GPU": 2.0}, 16.0),  # TP 2 takes the share of both GPUs
        (1, {"CPU": 128.0, "GPU": 8.0}, 8.0),
        (1, {"CPU": 6.0, "GPU": 1.0}, 4.0),  # two cores kept for the driver and training
        (1, {"CPU": 2.0, "GPU": 4.0}, 1.0),  # never below one CPU
    ],
)
def test_gpu_actors_reserve_real_cpus(
    tp: int, resources: dict[str, float], expected: float
) -> None:
    assert gpu_actor_cpus(tp, resources) == expected


def test_a_task_names_the_inference_point_it_measures() -> None:
    from featurize import GpuSetup, InferencePoint
    from llmco2.errors import InvalidRequestError

    arch, request = resolve_architecture("qwen2-0.5b"), InferenceRequest(2, 64, 8)
    precision = Precision.from_label("w16a16kv16")
    config = EngineConfig(arch, precision, 2, get_gpu("H100-SXM"), True, 3)
    expected = InferencePoint(arch, request, GpuSetup(get_gpu("H100-SXM"), 2), precision, True)
    assert PointTask(7, config, request).point() == expected
    cpu = EngineConfig(arch, precision, 1, None)
    with pytest.raises(InvalidRequestError, match="CPU engine"):
        PointTask(8, cpu, request).point()


def test_tasks_the_admission_refuses_are_left_unmeasured(ray_cluster: None) -> None:
    kept, refused = config("qwen2-0.5b"), config("qwen2-1.5b")
    work = tasks(kept, 0, [64, 128, 256, 512]) + tasks(refused, 100, [64, 128])
    asked: list[tuple[int, bool]] = []
    engines: list[list[int]] = []

    def admit(task: Task, starts_engine: bool, engine_tasks: Sequence[Task] = ()) -> bool:
        asked.append((task.point_id, starts_engine))
        if starts_engine:
            engines.append([t.point_id for t in engine_tasks])
        return task.config == kept and task.point_id < 2

    timings: list[dict[str, float]] = []
    results = list(
        measure_tasks("simulated", work, FAST, num_cpus=0.5, timings=timings, admit=admit)
    )
    assert sorted(r.point_id for r in results) == [0, 1]
    assert all(r.status == PointStatus.COMPLETE for r in results)
    # Asked before each engine start and each further point; nothing after a refusal.
    assert sorted(asked) == [(0, True), (1, False), (2, False), (100, True)]
    # An engine's start is asked with every task the engine would measure, its first first.
    assert sorted(engines) == [[0, 1, 2, 3], [100, 101]]
    assert len(timings) == 1  # the refused engine never started; the other one was shut down


# Memory is read every 0.5 s: free on the third reading, before the whole wait (3 s) is over;
# never free: the whole wait, or IN_PROCESS_RELEASE_WAIT_S (2 s, short of the whole wait) for an
# engine that ran in the actor's process; unreadable: no wait at all.
@pytest.mark.parametrize(
    ("engine", "released", "least_s", "most_s"),
    [
        ("SlowToFreeEngine", True, 0.9, 3.0),
        ("NeverFreeEngine", False, 3.0, 4.0),
        ("NeverFreeInProcessEngine", False, 2.0, 3.0),
        ("UnreadableMemoryEngine", False, 0.0, 1.5),
    ],
)
def test_a_closed_engine_releases_its_gpus_only_once_their_memory_is_back(
    engine: str, released: bool, least_s: float, most_s: float
) -> None:
    from workers.actors import EngineWorker

    worker = EngineWorker(f"tests.workers.gpu_held:{engine}", config("qwen2-0.5b"), FAST, 0.0)
    assert worker.load_error is None
    began = time.monotonic()
    assert worker.release(wait_s=3.0) is released
    elapsed = time.monotonic() - began
    assert worker.engine is None  # closed either way
    # A refusal reports its own wait (closing the engine and listing what it left take time of
    # their own on a loaded machine); otherwise the whole call is the wait.
    report = worker.release_report()
    assert least_s <= report.get("waited_s", elapsed) < most_s
    if engine.startswith("NeverFree"):  # what a refused release left, for the log
        assert report["gpu_memory_used_mib"] == 70_000.0
        assert report["engine_core_in_process"] is engine.endswith("InProcessEngine")
        if engine.endswith("InProcessEngine"):  # and what of it is alive here, held by what
            assert report["model_held_by"][:2] == ["builtins.list", "builtins.dict['PARKED']"]
    else:
        assert report == {}
