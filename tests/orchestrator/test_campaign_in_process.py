"""The driver's loop with a measurer, a trainer and a judge of the caller's, without Ray."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from featurize import get_gpu
from orchestrator.campaign import CampaignDriver, LocalTrainer
from orchestrator.config import parse_config
from storage import CampaignStore
from workers.actors import EngineWorker, WorkerResult
from workers.engines import EngineConfig
from workers.pool import Task, measure_on
from workers.protocol import ProtocolSettings

PROTOCOL = ProtocolSettings(warmups=0, windows=2, min_window_s=0.5, min_requests=1)


class InProcessMeasurer:
    """One simulated engine worker per configuration, kept until closed."""

    def __init__(self) -> None:
        self.workers: dict[EngineConfig, EngineWorker] = {}
        self.calls: list[int] = []
        self.order: list[Task] = []
        self.closed = False

    def measure(
        self, tasks: Sequence[Task], timings: list[dict[str, float]]
    ) -> Iterator[WorkerResult]:
        self.calls.append(len(tasks))
        for task in tasks:
            self.order.append(task)
            worker = self.workers.setdefault(
                task.config, EngineWorker("simulated", task.config, PROTOCOL)
            )
            yield measure_on(worker, task)
        timings.extend(worker.timing() for worker in self.workers.values())

    def loaded(self) -> list[EngineConfig]:
        return list(self.workers)

    def gpu_uuids(self) -> list[str]:
        return []

    def close(self) -> None:
        for worker in self.workers.values():
            worker.shutdown()
        self.closed = True


def test_the_loop_runs_with_the_callers_measurer_trainer_and_judge(sqlite_url: str) -> None:
    import ray

    config = parse_config(
        {
            "name": "in-process", "engine": "simulated", "strategy": "diverse",
            "target_mape": 99.0,  # met at once on the test split: with a judge, not consulted
            "priors": {"architectures": {"models": ["qwen2-0.5b", "qwen2-1.5b"]},
                       "requests": {"batch": [1, 2], "max_generated": 64},
                       "gpus": {"types": ["H100-SXM"], "tp": [1, 1]}},
            "sampling": {"initial": 24, "neighbours": 4, "per_round": 8},
            "budget": {"rounds": 5},
            "training": {"epochs": 6, "patience": 6, "correction_epochs": 6, "ensemble": 2},
        }
    )  # fmt: skip
    measurer = InProcessMeasurer()
    judged: list[tuple[int, int]] = []

    def judge(round_index: int, members: list[Any]) -> str | None:
        judged.append((round_index, len(members)))
        return "judged enough" if round_index == 1 else None

    store = CampaignStore(sqlite_url)
    try:
        outcome = CampaignDriver(
            config, store, gpus=[get_gpu("H100-SXM")], measurer=measurer,
            trainer=LocalTrainer(config.training), judge=judge,
        ).run()  # fmt: skip
        campaign = store.get_campaign("in-process")
        points = store.get_points(campaign.id)
        rounds = store.rounds(campaign.id)
    finally:
        store.close()
    assert not ray.is_initialized()
    assert outcome.stop_reason == "judged enough"
    assert [r.round_index for r in outcome.rounds] == [0, 1]
    assert judged == [(0, 2), (1, 2)]  # every trained round, with its whole ensemble
    assert [r.round_index for r in rounds] == [0, 1] and all(r.model_id for r in rounds)
    # Round 0's 24 points, then what round 0 selected; nothing selected after the stop.
    assert measurer.calls[0] == 24 and len(measurer.calls) == 2
    assert sum(measurer.calls) == len(points) == outcome.complete_points
    assert all(p.status == "COMPLETE" for p in points)
    assert measurer.closed


def test_a_run_measures_the_reference_engine_before_the_rounds_other_engines(
    sqlite_url: str,
) -> None:
    config = parse_config(
        {
            "name": "reference-first", "engine": "simulated", "strategy": "random",
            "priors": {"architectures": {"models": ["qwen2-0.5b", "qwen2-1.5b", "bloom-560m"]},
                       "requests": {"batch": [1, 2], "max_generated": 64},
                       "gpus": {"types": ["H100-SXM"], "tp": [1, 1]}},
            "sampling": {"initial": 12, "points_per_engine": 3},
            "budget": {"rounds": 1},
            "training": {"epochs": 2, "patience": 2, "correction_epochs": 2, "ensemble": 1},
            "reference": {"model": "qwen2-1.5b", "prompt_tokens": 512, "generated_tokens": 8},
        }
    )  # fmt: skip
    measurer = InProcessMeasurer()
    store = CampaignStore(sqlite_url)
    try:
        CampaignDriver(
            config, store, gpus=[get_gpu("H100-SXM")], measurer=measurer,
            trainer=LocalTrainer(config.training),
        ).run()  # fmt: skip
        points = {p.id: p for p in store.get_points(store.get_campaign("reference-first").id)}
    finally:
        store.close()
    reference = next(p for p in points.values() if p.reason == "reference")
    # Queued after the round's initial points, measured before them: a run that its time
    # limit stops still measures the reference.
    assert reference.id > min(points)
    engines = [task.config for task in measurer.order]
    first = engines[0]
    assert engines[[task.point_id for task in measurer.order].index(reference.id)] == first
    same = sum(config == first for config in engines)
    assert engines[:same] == [first] * same  # the reference engine's points, all of them first
    assert len(set(engines)) > 1


class OnMachine(InProcessMeasurer):
    """The twin on a machine of ``uuids``, which its records name; dies after ``points``."""

    def __init__(self, uuids: list[str], points: int | None = None) -> None:
        super().__init__()
        self.uuids = uuids
        self.points = points

    def gpu_uuids(self) -> list[str]:
        return list(self.uuids)

    def measure(
        self, tasks: Sequence[Task], timings: list[dict[str, float]]
    ) -> Iterator[WorkerResult]:
        for measured, result in enumerate(super().measure(tasks, timings)):
            if measured == self.points:
                raise RuntimeError("the device call ended")
            if result.record is not None:
                result.record.gpu_uuids = list(self.uuids)
            yield result


@pytest.mark.parametrize("every", ["run", "gpu"])
def test_a_reference_measured_once_per_gpu_is_measured_again_only_on_a_new_gpu(
    sqlite_url: str, every: str
) -> None:
    config = parse_config(
        {
            "name": "reference-every", "engine": "simulated", "strategy": "random",
            "priors": {"architectures": {"models": ["qwen2-0.5b", "bloom-560m"]},
                       "requests": {"batch": [1, 2], "max_generated": 64},
                       "gpus": {"types": ["H100-SXM"], "tp": [1, 1]}},
            "sampling": {"initial": 12, "points_per_engine": 3},
            "budget": {"rounds": 1},
            "training": {"epochs": 2, "patience": 2, "correction_epochs": 2, "ensemble": 1},
            "reference": {"model": "qwen2-1.5b", "prompt_tokens": 512, "generated_tokens": 8,
                          "fill": 0, "every": every},
        }
    )  # fmt: skip
    # Two runs on one machine, each ended by its device call; a third on another machine.
    runs = [OnMachine(["GPU-a"], points=3), OnMachine(["GPU-a"], points=3), OnMachine(["GPU-b"])]
    skipped = []
    store = CampaignStore(sqlite_url)
    try:
        for measurer in runs:
            driver = CampaignDriver(
                config, store, gpus=[get_gpu("H100-SXM")], measurer=measurer,
                trainer=LocalTrainer(config.training),
            )  # fmt: skip
            if measurer.points is None:
                driver.run()
            else:
                with pytest.raises(RuntimeError, match="device call ended"):
                    driver.run()
            skipped.append(driver.reference_skipped_on)
        campaign = store.get_campaign("reference-every")
        references = [p for p in store.get_points(campaign.id) if p.reason == "reference"]
        measured_on = [
            record.gpu_uuids
            for record in (store.get_measurement(p.id) for p in references)
            if record is not None
        ]
        status = campaign.status
    finally:
        store.close()
    assert status == "COMPLETE"
    assert all(p.status == "COMPLETE" for p in references)
    if every == "run":
        assert measured_on == [["GPU-a"], ["GPU-a"], ["GPU-b"]]
        assert skipped == [None, None, None]
    else:  # the second run found GPU-a measured; the third, on GPU-b, measured it there
        assert measured_on == [["GPU-a"], ["GPU-b"]]
        assert skipped == [None, ("GPU-a",), None]
    # Each run measured the reference first, where it measured one.
    for measurer, skipped_on in zip(runs, skipped, strict=True):
        first = measurer.order[0].point_id
        assert (first in {p.id for p in references}) is (skipped_on is None)


@pytest.mark.parametrize(("fill", "reference_engine_points"), [(None, 3), (0, 1), (1, 2)])
def test_the_reference_engine_measures_its_own_fill_or_the_engine_fill(
    sqlite_url: str, fill: int | None, reference_engine_points: int
) -> None:
    from orchestrator.sampling import engine_key

    reference: dict[str, Any] = {"model": "qwen2-0.5b", "prompt_tokens": 512, "generated_tokens": 8}
    if fill is not None:
        reference["fill"] = fill
    config = parse_config(
        {
            "name": "reference-fill", "engine": "simulated", "strategy": "random",
            "priors": {"architectures": {"models": ["qwen2-1.5b", "bloom-560m"]},
                       "requests": {"batch": [1, 2], "max_generated": 64},
                       "gpus": {"types": ["H100-SXM"], "tp": [1, 1]}},
            "sampling": {"initial": 12, "points_per_engine": 3},
            "budget": {"rounds": 1},
            "training": {"epochs": 2, "patience": 2, "correction_epochs": 2, "ensemble": 1},
            "reference": reference,
        }
    )  # fmt: skip
    store = CampaignStore(sqlite_url)
    try:
        CampaignDriver(
            config, store, gpus=[get_gpu("H100-SXM")], measurer=InProcessMeasurer(),
            trainer=LocalTrainer(config.training),
        ).run()  # fmt: skip
        points = store.get_points(store.get_campaign("reference-fill").id)
    finally:
        store.close()
    key = engine_key(next(p for p in points if p.reason == "reference").inference_point())
    on_reference_engine = [p for p in points if engine_key(p.inference_point()) == key]
    assert len(on_reference_engine) == reference_engine_points
    assert all(p.status == "COMPLETE" for p in on_reference_engine)
    assert (
        sum(p.reason == "engine_fill" for p in on_reference_engine) == reference_engine_points - 1
    )
    # The round's own engines keep the engine fill.
    per_engine = Counter(engine_key(p.inference_point()) for p in points)
    del per_engine[key]
    assert per_engine and min(per_engine.values()) >= 3


SERVING_CAMPAIGN = {
    "name": "serving", "engine": "simulated", "strategy": "random",
    "priors": {"architectures": {"models": ["qwen2-0.5b", "qwen2-1.5b", "bloom-560m"]},
               "requests": {"batch": [1, 2], "max_generated": 64},
               "gpus": {"types": ["H100-SXM"], "tp": [1, 1]}},
    "sampling": {"initial": 14, "points_per_engine": 2},
    "budget": {"rounds": 1},
    "training": {"epochs": 2, "patience": 2, "correction_epochs": 2, "ensemble": 1},
    "serving": {"traces": ["conv", "code"], "concurrency": [1, 4], "rates": [3.0],
                "engines_per_round": 2},
}  # fmt: skip


class CrashingMeasurer(InProcessMeasurer):
    """Measures like its parent until ``after`` serving loads are done, then dies."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def measure(
        self, tasks: Sequence[Task], timings: list[dict[str, float]]
    ) -> Iterator[WorkerResult]:
        served = 0
        for result in super().measure(tasks, timings):
            if served == self.after:
                raise RuntimeError("the driver's machine went away")
            served += result.kind == "serving"
            yield result


def test_serving_loads_run_after_their_engines_points_and_survive_a_crash(
    sqlite_url: str,
) -> None:
    config = parse_config(SERVING_CAMPAIGN)
    store = CampaignStore(sqlite_url)
    crashed = CrashingMeasurer(after=4)
    try:
        driver = CampaignDriver(
            config, store, gpus=[get_gpu("H100-SXM")], measurer=crashed,
            trainer=LocalTrainer(config.training),
        )  # fmt: skip
        with pytest.raises(RuntimeError, match="went away"):
            driver.run()
        campaign = store.get_campaign("serving")
        before = store.serving_status_counts(campaign.id)
        stored = {p.id for p in store.get_serving_points(campaign.id, statuses=["COMPLETE"])}
        again = InProcessMeasurer()
        rerun = CampaignDriver(
            config, store, gpus=[get_gpu("H100-SXM")], measurer=again,
            trainer=LocalTrainer(config.training),
        )  # fmt: skip
        rerun.run()
        points = store.get_points(campaign.id)
        serving = store.get_serving_points(campaign.id)
        measured = {p.id: store.get_serving_measurement(p.id) for p in serving}
    finally:
        store.close()
    assert before["COMPLETE"] == 4 and before["RUNNING"] > 0  # the crash left claimed loads
    # The first two engine configurations of the round serve every load: 2 traces × 3 loads.
    configs = list(dict.fromkeys(p.config_key for p in points))
    assert {p.config_key for p in serving} == set(configs[:2])
    assert len(serving) == 2 * 2 * 3
    assert all(p.status == "COMPLETE" for p in serving)
    # A stored load is never measured again; the rerun released what the dead driver held
    # (the load it was measuring too, whose result was lost) and measured it.
    served = sorted(t.point_id for t in again.order if t.kind == "serving")
    assert served == sorted(p.id for p in serving if p.id not in stored)
    assert rerun.serving_counts == {"measured": len(serving) - 4, "failed": 0}
    # On each engine its points first, then its loads.
    for order in (crashed.order, again.order):
        for engine in {t.config for t in order}:
            kinds = [t.kind for t in order if t.config == engine]
            assert kinds == sorted(kinds, key=lambda k: k == "serving")
    # Twin loads: per request the closed loop at C = 4 costs less than at C = 1.
    for config_key in configs[:2]:
        for trace in ("conv", "code"):
            energy: dict[int, float] = {}
            for p in serving:
                record = measured[p.id]
                if p.config_key == config_key and p.trace == trace and p.concurrency:
                    assert record is not None and record.per_request_j is not None
                    energy[p.concurrency] = record.per_request_j
            assert 0 < energy[4] < energy[1]
