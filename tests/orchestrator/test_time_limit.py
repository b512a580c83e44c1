"""A run's time limit admits only the engine starts and points that can end before it."""

from __future__ import annotations

import pytest

from featurize import GpuSetup, InferenceRequest, Precision, get_gpu, resolve_architecture
from llmco2.errors import InvalidRequestError
from orchestrator.gpu_cost import GpuCostModel
from orchestrator.time_limit import TimeLimit
from workers.engines import EngineConfig
from workers.pool import PointTask
from workers.protocol_settings import ProtocolSettings

SETTINGS = ProtocolSettings(warmups=1, windows=2, min_window_s=2.0, min_requests=2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def task(tp: int = 1, gpu: str | None = "H200") -> PointTask:
    config = EngineConfig(
        resolve_architecture("llama3.1-8b"), Precision(), tp, get_gpu(gpu) if gpu else None
    )
    return PointTask(7, config, InferenceRequest(2, 1024, 64))


def test_a_limit_must_be_positive() -> None:
    for seconds in (0.0, -5.0):
        with pytest.raises(InvalidRequestError, match="> 0 seconds"):
            TimeLimit(seconds, SETTINGS)


def test_an_engine_starts_only_if_its_start_and_first_point_fit() -> None:
    clock = FakeClock()
    limit = TimeLimit(600.0, SETTINGS, clock)
    work = task()
    costs = GpuCostModel(SETTINGS)
    point = float(costs.point_seconds([work.point()])[0])
    start = costs.start_seconds(work.point())
    assert limit.needs(work, starts_engine=False) == pytest.approx(point)
    assert limit.needs(work, starts_engine=True) == pytest.approx(start + point)
    assert 0 < point < start
    clock.now = limit.deadline - (start + point) - 1.0
    assert limit(work, starts_engine=True)
    clock.now += 2.0  # now the start would end after the limit, a point on a loaded engine not
    assert not limit(work, starts_engine=True)
    assert limit(work, starts_engine=False)
    clock.now = limit.deadline - point / 2
    assert not limit(work, starts_engine=False)


def test_the_estimate_is_wall_time_of_the_tensor_parallel_group() -> None:
    one, four = task(tp=1), task(tp=4)
    limit = TimeLimit(60.0, SETTINGS, FakeClock())
    costs = GpuCostModel(SETTINGS)
    gpu_seconds = float(costs.point_seconds([four.point()])[0])
    assert limit.needs(four, starts_engine=False) == pytest.approx(gpu_seconds / 4)
    assert limit.needs(one, starts_engine=False) > 0


def test_a_task_without_gpus_runs_until_the_limit_passes() -> None:
    clock = FakeClock()
    limit = TimeLimit(10.0, SETTINGS, clock)
    cpu = task(gpu=None)
    assert limit.needs(cpu, starts_engine=True) == 0.0
    assert limit(cpu, starts_engine=True)
    clock.now = limit.deadline
    assert limit.left() == 0.0
    assert not limit(cpu, starts_engine=False)


def test_a_serving_load_is_admitted_only_if_its_predicted_run_fits_with_a_margin() -> None:
    from gnn.predict import default_predictor
    from gnn.serving import predict_serving
    from orchestrator.time_limit import SERVING_MARGIN
    from workers.pool import ServingTask
    from workers.serving import ServingLoad

    clock = FakeClock()
    config = task().config
    load = ServingLoad("conv", 64, concurrency=16, seed=1)
    serving = ServingTask(3, config, load, 64)
    assert config.gpu is not None
    expected = predict_serving(
        default_predictor(), config.architecture, GpuSetup(config.gpu, 1), load, max_num_seqs=64
    ).result.total_s
    limit = TimeLimit(600.0, SETTINGS, clock=clock)
    assert limit.needs(serving, False) == pytest.approx(SERVING_MARGIN * expected)
    assert limit.needs(serving, True) > limit.needs(serving, False)  # plus its engine's start
    clock.now += 600.0 - 0.99 * SERVING_MARGIN * expected
    assert not limit(serving, False)
    clock.now -= 0.02 * SERVING_MARGIN * expected
    assert limit(serving, False)
    # An engine without GPUs (vLLM on a CPU) is not limited.
    cpu = ServingTask(4, task(gpu=None).config, load, 8)
    assert limit.needs(cpu, True) == 0.0


def test_an_engine_starts_only_if_all_its_points_fit_unless_no_run_could_hold_them() -> None:
    clock = FakeClock()
    limit = TimeLimit(600.0, SETTINGS, clock)
    work = [task() for _ in range(5)]
    whole = limit.needs(work[0], starts_engine=True) + sum(
        limit.needs(t, starts_engine=False) for t in work[1:]
    )
    assert whole < limit.seconds
    clock.now = limit.deadline - whole - 1.0
    assert limit(work[0], starts_engine=True, engine_tasks=work)
    clock.now += 2.0  # its first point still fits, its last no more: the engine waits
    assert limit(work[0], starts_engine=True)
    assert not limit(work[0], starts_engine=True, engine_tasks=work)
    assert limit(work[0], starts_engine=False, engine_tasks=work)  # a loaded one goes on
    # An engine with more points than a whole run holds starts once its first point fits.
    many = [task() for _ in range(int(limit.seconds / limit.needs(work[1], False)) + 2)]
    assert limit(many[0], starts_engine=True, engine_tasks=many)
    clock.now = limit.deadline - limit.needs(many[0], starts_engine=True) + 1.0
    assert not limit(many[0], starts_engine=True, engine_tasks=many)
