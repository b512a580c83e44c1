"""The Algorithm 1 driver on the simulated engine and a local Ray, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurize import get_gpu
from orchestrator.campaign import CampaignDriver
from orchestrator.config import CampaignConfig, parse_config
from orchestrator.strategies import STRATEGIES
from storage import CampaignStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(
        _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2, num_gpus=0,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, logging_level="ERROR",
    )  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


def small(strategy: str = "focused", **changes: Any) -> CampaignConfig:
    data: dict[str, Any] = {
        "name": f"small-{strategy}",
        "engine": "simulated",
        "strategy": strategy,
        "target_mape": 0.01,  # unreachable: the round budget ends it
        "priors": {
            "architectures": {"models": ["qwen2-0.5b", "qwen2-1.5b", "bloom-560m"]},
            "requests": {"batch": [1, 2], "max_generated": 64},
            "gpus": {"types": ["H100-SXM"], "tp": [1, 1]},
        },
        "sampling": {"initial": 30, "neighbours": 4, "high_error": {"value": 0.2}},
        "budget": {"rounds": 3},
        "training": {"epochs": 8, "patience": 8, "correction_epochs": 8,
                     "ensemble": 2 if STRATEGIES[strategy].needs_ensemble else 1},
        "protocol": {"warmups": 0, "windows": 2, "min_window_s": 0.5, "min_requests": 1},
    }  # fmt: skip
    data.update(changes)
    return parse_config(data)


def run(config: CampaignConfig, url: str) -> Any:
    store = CampaignStore(url)
    try:
        return CampaignDriver(config, store, gpus=[get_gpu("H100-SXM")], workers=2).run()
    finally:
        store.close()


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_campaign_runs_its_rounds_and_persists_each(
    ray_cluster: None, db_url: str, strategy: str
) -> None:
    outcome = run(small(strategy), db_url)
    assert [r.round_index for r in outcome.rounds] == [0, 1, 2]
    assert "round budget" in outcome.stop_reason
    store = CampaignStore(db_url)
    campaign = store.get_campaign(f"small-{strategy}")
    rounds = store.rounds(campaign.id)
    assert [r.round_index for r in rounds] == [0, 1, 2]
    assert all(r.mape is not None and r.model_id is not None for r in rounds)
    points = store.get_points(campaign.id)
    assert {p.round_index for p in points} == {0, 1, 2}
    assert all(p.status == "COMPLETE" for p in points)
    assert store.measurement_count(campaign.id) == len(points) == outcome.complete_points
    # Each round measured what the one before selected (round 0: the A initial points).
    for r in rounds:
        assert r.points_selected == sum(p.round_index == r.round_index for p in points) > 0
    assert rounds[0].points_selected == 30
    if strategy == "focused":
        parents = {p.parent_point_id for p in points if p.round_index > 0}
        by_id = {p.id: p for p in points}
        assert parents and all(by_id[i].split == "test" for i in parents if i is not None)
    store.close()


def test_a_driver_stopped_between_rounds_continues_without_repeating(
    ray_cluster: None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small()

    def crash(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt  # the driver dies after storing round 0, before selecting

    with monkeypatch.context() as patch:
        patch.setattr(CampaignDriver, "_select_next", crash)
        with pytest.raises(KeyboardInterrupt):
            run(config, sqlite_url)
    store = CampaignStore(sqlite_url)
    campaign = store.get_campaign(config.name)
    assert [r.round_index for r in store.rounds(campaign.id)] == [0]
    first_points = store.measurement_count(campaign.id)
    outcome = run(config, sqlite_url)
    assert [r.round_index for r in outcome.rounds] == [1, 2]  # round 0 was not repeated
    rounds = store.rounds(campaign.id)
    assert [r.round_index for r in rounds] == [0, 1, 2]
    points = store.get_points(campaign.id)
    assert store.measurement_count(campaign.id) == len(points) > first_points
    store.close()


def test_every_engine_a_round_loads_measures_points_per_engine(
    ray_cluster: None, sqlite_url: str
) -> None:
    from orchestrator.sampling import engine_key

    sampling = {"initial": 30, "neighbours": 4, "high_error": {"value": 0.2}, "per_round": 6}
    plain = small("disagreement", name="plain", budget={"rounds": 2}, sampling=sampling)
    filled = small(
        "disagreement", name="filled", budget={"rounds": 2, "measurements": 100},
        sampling={**sampling, "points_per_engine": 20},
    )  # fmt: skip
    run(plain, sqlite_url)
    outcome = run(filled, sqlite_url)
    store = CampaignStore(sqlite_url)
    plain_points = store.get_points(store.get_campaign("plain").id)
    points = store.get_points(store.get_campaign("filled").id)
    store.close()
    assert [r.round_index for r in outcome.rounds] == [0, 1]
    assert len(points) == outcome.complete_points <= 100
    # Round 0 draws what it drew without the fill, with the same train/test split.
    initial = [(p.inference_point(), p.split) for p in points if p.reason == "initial"]
    assert initial == [(p.inference_point(), p.split) for p in plain_points if p.round_index == 0]
    fill = [p for p in points if p.reason == "engine_fill"]
    assert fill and {p.split for p in fill} == {"train", "test"}
    selected = [p for p in points if p.reason == "selected"]
    assert 0 < len(selected) <= 6
    for round_index in (0, 1):
        members = [p.inference_point() for p in points if p.round_index == round_index]
        assert len(set(members)) == len(members)
        per_engine: dict[Any, int] = {}
        for point in members:
            per_engine[engine_key(point)] = per_engine.get(engine_key(point), 0) + 1
        chosen = {engine_key(p.inference_point()) for p in points
                  if p.round_index == round_index and p.reason != "engine_fill"}  # fmt: skip
        assert set(per_engine) == chosen  # the fill loads no engine of its own
        # Every engine gets its 20 points unless the measurement budget ran out first.
        assert min(per_engine.values()) >= 20 or len(points) == 100
    assert sum(p.round_index == 0 for p in points) == 60  # 3 engines


@pytest.mark.parametrize(
    ("predictor", "kind"), [("llmco2", "HybridPredictor"), ("gnn", "Predictor")]
)
def test_each_round_stores_the_configured_predictor(
    ray_cluster: None, sqlite_url: str, predictor: str, kind: str
) -> None:
    from orchestrator.campaign import unpack_members

    training = {
        "epochs": 8,
        "patience": 8,
        "correction_epochs": 8,
        "ensemble": 2,
        "predictor": predictor,
    }
    config = small("disagreement", name=f"p-{predictor}", budget={"rounds": 2}, training=training)
    outcome = run(config, sqlite_url)
    assert [r.round_index for r in outcome.rounds] == [0, 1]
    store = CampaignStore(sqlite_url)
    rounds = store.rounds(store.get_campaign(config.name).id)
    for record in rounds:
        assert record.model_id is not None and record.mape is not None
        members = unpack_members(store.load_model(record.model_id)["checkpoint"])
        assert [type(m).__name__ for m in members] == [kind, kind]
    store.close()


def test_a_driver_whose_lease_is_taken_over_stops_before_its_next_round(
    ray_cluster: None, sqlite_url: str
) -> None:
    import time

    from llmco2.errors import CampaignBusyError

    config = small(name="taken-over")
    store = CampaignStore(sqlite_url)

    def take_over(report: Any) -> None:
        # Another driver takes the campaign (as after this one's lease expired) ...
        campaign_id = store.get_campaign(config.name).id
        store.acquire_driver(campaign_id, "elsewhere:1", holder_gone=lambda _holder: True)
        time.sleep(1.0)  # ... and this one's heartbeat notices within a lease

    driver = CampaignDriver(
        config, store, gpus=[get_gpu("H100-SXM")], workers=2, on_round=take_over,
        lease_seconds=0.5,
    )  # fmt: skip
    with pytest.raises(CampaignBusyError, match="lease ended and elsewhere:1 took it over"):
        driver.run()
    campaign = store.get_campaign(config.name)
    assert [r.round_index for r in store.rounds(campaign.id)] == [0]  # round 1 was not run
    assert store.driver_of(campaign.id) == "elsewhere:1"  # left to its new holder
    assert campaign.status != "COMPLETE"
    store.close()


def test_an_error_raised_in_a_ray_task_reaches_the_cli_as_its_own_message(
    ray_cluster: None,
) -> None:
    import ray

    from llmco2.cli.main import _message_of
    from llmco2.errors import InvalidRequestError

    def train() -> None:
        raise InvalidRequestError("campaign has 8 points with energy labels")

    with pytest.raises(InvalidRequestError) as caught:
        ray.get(ray.remote(num_cpus=1)(train).remote())
    assert "ray::" in str(caught.value)  # Ray's text: the task's name and traceback first
    assert _message_of(caught.value) == "campaign has 8 points with energy labels"


def test_a_round_zero_too_small_to_train_is_refused_before_a_point_is_stored(
    ray_cluster: None, sqlite_url: str
) -> None:
    from llmco2.errors import InvalidRequestError

    few = small(name="stuck", sampling={"initial": 4, "neighbours": 4})
    with pytest.raises(InvalidRequestError, match=r"round 0 would measure 4 points .*raise "
                       r"sampling\.initial \(then run with --force\)"):  # fmt: skip
        run(few, sqlite_url)
    store = CampaignStore(sqlite_url)
    campaign = store.get_campaign("stuck")
    assert store.get_points(campaign.id) == [] and store.measurement_count(campaign.id) == 0
    more = small(name="stuck", budget={"rounds": 1})  # initial 30
    driver = CampaignDriver(more, store, gpus=[get_gpu("H100-SXM")], workers=2,
                            replace_config=True)  # fmt: skip
    outcome = driver.run()
    assert [r.round_index for r in outcome.rounds] == [0]
    assert outcome.complete_points == 30
    store.close()


def test_an_untrained_round_zero_is_topped_up_to_a_raised_initial_keeping_its_points(
    ray_cluster: None, sqlite_url: str
) -> None:
    import numpy as np

    from orchestrator.sampling import PointSampler
    from storage import PointSpec

    # What a campaign stopped in round 0 leaves: its first points stored, no round trained.
    stopped = small(name="stopped", sampling={"initial": 12, "neighbours": 4})
    store = CampaignStore(sqlite_url)
    campaign = store.create_campaign("stopped", stopped.fingerprint())
    sampler = PointSampler(stopped, [get_gpu("H100-SXM")])
    drawn = sampler.sample(12, np.random.default_rng([stopped.seed, 0]))
    store.add_points(campaign.id, [PointSpec(p, "simulated", split="train") for p in drawn[:4]])
    first = {p.id for p in store.get_points(campaign.id)}
    more = small(name="stopped", budget={"rounds": 1})  # initial 30
    driver = CampaignDriver(more, store, gpus=[get_gpu("H100-SXM")], workers=2,
                            replace_config=True)  # fmt: skip
    outcome = driver.run()
    assert [r.round_index for r in outcome.rounds] == [0]
    round_zero = [p for p in store.get_points(campaign.id) if p.round_index == 0]
    assert len(round_zero) == 30 and first <= {p.id for p in round_zero}  # kept, topped up
    assert len({p.key for p in round_zero}) == 30
    assert all(p.status == "COMPLETE" for p in round_zero)
    store.close()


def test_a_changed_config_is_refused(ray_cluster: None, sqlite_url: str) -> None:
    from llmco2.errors import CampaignConflictError

    run(small(budget={"rounds": 1}), sqlite_url)
    with pytest.raises(CampaignConflictError):
        run(small(budget={"rounds": 2}), sqlite_url)


def test_a_crashed_worker_is_retried_and_out_of_memory_is_never_retried(
    ray_cluster: None, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    fault_dir = tmp_path / "faults"
    fault_dir.mkdir()
    # The actors are separate processes: they read the marker folder from their environment.
    monkeypatch.setenv("LLMCO2_FAULT_DIR", str(fault_dir))
    ray.shutdown()
    ray.init(
        _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2, num_gpus=0,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "LLMCO2_FAULT_DIR": str(fault_dir)}},
        logging_level="ERROR",
    )  # fmt: skip
    config = small(engine="tests.orchestrator.faulty:FaultyEngine", budget={"rounds": 1},
                   sampling={"initial": 40, "neighbours": 2})  # fmt: skip
    outcome = run(config, sqlite_url)
    assert outcome.stop_reason
    store = CampaignStore(sqlite_url)
    points = store.get_points(store.get_campaign(config.name).id)
    oom = [p for p in points if p.prompt_tokens % 10 == 7]
    crashed = [p for p in points if p.prompt_tokens % 10 == 3]
    assert oom and crashed, "the sample should contain both fault shapes"
    # INFEASIBLE is final at the first out-of-memory (a point may have waited for a healthy
    # actor before it was tried, which counts as an attempt, but it is never measured again).
    assert all(p.status == "INFEASIBLE" and p.error_kind == "oom" for p in oom)
    assert all(p.status == "COMPLETE" for p in crashed)  # measured again after the crash
    assert len(list(fault_dir.iterdir())) >= 1
    assert all(p.status == "COMPLETE" for p in points if p not in oom)
    store.close()


def test_an_engine_that_fails_to_load_the_same_way_twice_is_not_tried_again(
    ray_cluster: None, sqlite_url: str, tmp_path: Path
) -> None:
    import ray

    ray.shutdown()
    ray.init(
        _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2, num_gpus=0,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "LLMCO2_FAULT_DIR": str(tmp_path),
                                  "LLMCO2_FAIL_LOAD_FAMILY": "bloom"}},
        logging_level="ERROR",
    )  # fmt: skip
    config = small(engine="tests.orchestrator.faulty:FaultyEngine", budget={"rounds": 1},
                   sampling={"initial": 30, "neighbours": 2}, max_attempts=5)  # fmt: skip
    run(config, sqlite_url)
    store = CampaignStore(sqlite_url)
    points = store.get_points(store.get_campaign(config.name).id)
    store.close()
    bloom = [p for p in points if p.architecture["family"] == "bloom"]
    assert bloom, "the sample should contain BLOOM points"
    # Two engine starts, not max_attempts (5): the second identical failure is final.
    assert all(p.status == "FAILED" and p.error_kind == "engine_load_failed" for p in bloom)
    assert {p.attempts for p in bloom} == {2}
    others = [p for p in points if p not in bloom and p.prompt_tokens % 10 != 7]  # 7: OOM
    assert others and all(p.status == "COMPLETE" for p in others)


def test_the_driver_reports_its_phases_and_where_its_time_went(
    ray_cluster: None, sqlite_url: str
) -> None:
    phases: list[tuple[str, int | None]] = []
    store = CampaignStore(sqlite_url)
    try:
        config = small(budget={"rounds": 2})
        driver = CampaignDriver(
            config, store, gpus=[get_gpu("H100-SXM")], workers=2,
            on_phase=lambda text, steps: phases.append((text, steps)),
        )  # fmt: skip
        outcome = driver.run()
    finally:
        store.close()
    assert phases[0] == ("measuring 30 points", 30)
    assert phases[1][0].startswith("training round 0 on ") and phases[1][1] is None
    assert [text.split(" on ")[0] for text, _ in phases if text.startswith("training")] == [
        "training round 0",
        "training round 1",
    ]
    measured = sum(steps or 0 for _, steps in phases)
    assert measured == outcome.complete_points
    stages = driver.stage_seconds
    assert {"sampling", "measuring", "storing", "featurising", "training", "testing"} <= set(stages)
    assert "selecting" in stages and all(seconds >= 0 for seconds in stages.values())


def test_each_point_is_measured_on_an_engine_of_its_own_precision(
    ray_cluster: None, tmp_path: Path
) -> None:
    # MXFP4 experts are part of the engine configuration: a point labelled e4 must not be served
    # by the bf16 engine of the same shape.
    config = small(
        name="mxfp4-tasks",
        priors={
            "architectures": {
                "models": ["gpt-oss-20b"],
                "precisions": ["w16a16kv16e4", "w16a16kv16"],
            },
            "requests": {"batch": [1, 2], "max_generated": 16},
            "gpus": {"types": ["H100-SXM"], "tp": [1, 1]},
        },
        sampling={"initial": 14, "neighbours": 2},
        budget={"rounds": 1},
    )
    url = f"sqlite:///{tmp_path / 'mx.db'}"
    store = CampaignStore(url)
    try:
        driver = CampaignDriver(config, store, gpus=[get_gpu("H100-SXM")], workers=1)
        driver.run()
        points = store.get_points(store.get_campaign("mxfp4-tasks").id)
        experts = {p.expert_weight_bits for p in points}
        assert experts == {None, 4}
        for stored in points:
            task = driver._task(stored)
            assert task.config.precision.expert_weight_bits == stored.expert_weight_bits
            assert task.config.precision == stored.inference_point().precision
    finally:
        store.close()


def test_every_run_measures_the_reference_point_once_and_the_export_reports_its_spread(
    ray_cluster: None, sqlite_url: str, tmp_path: Path
) -> None:
    from orchestrator.campaign_report import write_campaign_report
    from orchestrator.sampling import engine_key
    from storage.export import export_campaign

    reference = {"model": "qwen2-0.5b", "batch": 1, "prompt_tokens": 256, "generated_tokens": 16}
    sampling = {"initial": 30, "neighbours": 4, "high_error": {"value": 0.2}, "per_round": 4,
                "points_per_engine": 5}  # fmt: skip
    first = small("random", name="ref", budget={"rounds": 1}, sampling=sampling,
                  reference=reference)  # fmt: skip
    run(first, sqlite_url)
    # A second run (the campaign continued with a larger round budget) measures it again.
    second = small("random", name="ref", budget={"rounds": 2}, sampling=sampling,
                   reference=reference)  # fmt: skip
    store = CampaignStore(sqlite_url)
    outcome = CampaignDriver(
        second, store, gpus=[get_gpu("H100-SXM")], workers=2, replace_config=True
    ).run()
    assert [r.round_index for r in outcome.rounds] == [1]
    campaign = store.get_campaign("ref")
    points = store.get_points(campaign.id)
    references = [p for p in points if p.reason == "reference"]
    assert [p.round_index for p in references] == [0, 1]
    assert all(p.status == "COMPLETE" and p.split == "train" for p in references)
    assert len({p.key for p in references}) == 2  # a row of its own per run
    point = references[0].inference_point()
    assert {p.inference_point() for p in references} == {point}
    assert (point.request.prompt_tokens, point.architecture.name) == (256, "Qwen/Qwen2-0.5B")
    # Its engine is filled like any other that a round loads.
    for round_index in (0, 1):
        same_engine = [p for p in points if p.round_index == round_index
                       and engine_key(p.inference_point()) == engine_key(point)]  # fmt: skip
        assert len(same_engine) >= 5
    result = export_campaign(store, "ref", "parquet", tmp_path / "out", include_simulated=True)
    report = write_campaign_report(
        store, "ref", tmp_path / "report", target_mape=1.0, stop_reason="round budget",
        command="llmco2 campaign run ref.yaml", include_simulated=True,
    )  # fmt: skip
    store.close()
    section = (report / "report.md").read_text().split("## Reference point")[1]
    assert "Qwen/Qwen2-0.5B, 1 × 256 → 16 tokens on 1 × H100-SXM" in section
    assert "\n| all | 2 | " in section
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    spread = manifest["reference"]
    assert spread["point"]["model_name"] == "Qwen/Qwen2-0.5B"
    assert spread["point"]["prompt_tokens"] == 256
    assert spread["all"]["measurements"] == 2
    assert spread["all"]["min_j"] <= spread["all"]["mean_j"] <= spread["all"]["max_j"]
    assert sum(g["measurements"] for g in spread["per_gpu"].values()) == 2


def test_a_reference_a_stopped_run_queued_is_measured_once_by_the_next(
    ray_cluster: None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = {"model": "qwen2-1.5b", "prompt_tokens": 512, "generated_tokens": 8}
    config = small("random", name="ref-stop", budget={"rounds": 1}, reference=reference)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the driver dies after queueing the reference, before measuring

    with monkeypatch.context() as patch:
        patch.setattr(CampaignDriver, "_measure_pending", crash)
        with pytest.raises(KeyboardInterrupt):
            run(config, sqlite_url)
    run(config, sqlite_url)
    store = CampaignStore(sqlite_url)
    points = store.get_points(store.get_campaign("ref-stop").id)
    store.close()
    references = [p for p in points if p.reason == "reference"]
    assert [(p.status, p.round_index) for p in references] == [("COMPLETE", 0)]


def test_a_reference_that_does_not_fit_its_gpus_is_refused_before_anything_runs(
    sqlite_url: str,
) -> None:
    from llmco2.errors import InvalidRequestError

    config = small(name="big-ref", reference={"model": "llama-3.1-70b"})
    store = CampaignStore(sqlite_url)
    try:
        with pytest.raises(InvalidRequestError, match=r"^reference: "):
            CampaignDriver(config, store, gpus=[get_gpu("H100-SXM")])
        assert store.list_campaigns() == []
    finally:
        store.close()


def test_resident_engines_carry_loaded_engines_into_the_next_round(
    ray_cluster: None, sqlite_url: str
) -> None:
    sampling = {"initial": 4, "neighbours": 4, "high_error": {"value": 0.2}, "per_round": 10,
                "points_per_engine": 5}  # fmt: skip

    def rounds_per_engine(name: str, resident: int) -> list[set[int]]:
        config = small("cost-aware", name=name, budget={"rounds": 2},
                       sampling={**sampling, "resident_engines": resident})  # fmt: skip
        run(config, sqlite_url)
        store = CampaignStore(sqlite_url)
        campaign = store.get_campaign(name)
        complete = [p for p in store.get_points(campaign.id) if p.status == "COMPLETE"]
        loads = store.engine_load_rows(campaign.id)
        store.close()
        rounds: dict[str, set[int]] = {}
        for point, row in zip(sorted(complete, key=lambda p: p.id), loads, strict=True):
            rounds.setdefault(row["extra"]["engine_instance"], set()).add(point.round_index)
        return list(rounds.values())

    # Without resident engines every round starts its own; with them the cost-aware strategy
    # chooses points on the engines the last round left loaded (no start to pay).
    assert all(len(r) == 1 for r in rounds_per_engine("cold", 0))
    assert any(len(r) > 1 for r in rounds_per_engine("warm", 2))


def test_a_time_limit_stops_the_run_before_work_that_cannot_end_and_a_rerun_continues(
    ray_cluster: None, sqlite_url: str
) -> None:
    config = small("random", name="time-limit", budget={"rounds": 1})
    store = CampaignStore(sqlite_url)
    try:
        # Five seconds hold no engine start of the twin's estimate (tens of seconds).
        outcome = CampaignDriver(
            config, store, gpus=[get_gpu("H100-SXM")], workers=2, time_limit_s=5
        ).run()
        campaign = store.get_campaign("time-limit")
        assert outcome.timed_out and outcome.rounds == []
        assert outcome.stop_reason.startswith("time limit of 5 s reached in round 0 (30 points")
        assert campaign.status == "STOPPED" and store.rounds(campaign.id) == []
        points = store.get_points(campaign.id)
        assert len(points) == 30 and all(p.status == "PENDING" for p in points)
        # The same command with room for everything measures and trains the round.
        outcome = CampaignDriver(
            config, store, gpus=[get_gpu("H100-SXM")], workers=2, time_limit_s=3600
        ).run()
        assert not outcome.timed_out and [r.round_index for r in outcome.rounds] == [0]
        assert store.get_campaign("time-limit").status == "COMPLETE"
        points = store.get_points(campaign.id)
        assert [p for p in points if p.round_index == 0] and all(
            p.status == "COMPLETE" for p in points if p.round_index == 0
        )
    finally:
        store.close()


def test_a_time_limit_that_is_not_positive_is_refused(sqlite_url: str) -> None:
    from llmco2.errors import InvalidRequestError

    store = CampaignStore(sqlite_url)
    try:
        with pytest.raises(InvalidRequestError, match="time limit must be > 0 seconds, got 0"):
            CampaignDriver(small(), store, gpus=[get_gpu("H100-SXM")], time_limit_s=0)
    finally:
        store.close()


def test_serving_points_are_measured_and_exported_on_every_database(
    ray_cluster: None, db_url: str, tmp_path: Path
) -> None:
    from storage.export import export_campaign, read_exported_serving
    from storage.models import Point

    config = small(
        "random", name="serving", budget={"rounds": 2},
        serving={"traces": ["conv"], "concurrency": [2, 4], "rates": [5.0],
                 "engines_per_round": 1},
    )  # fmt: skip
    outcome = run(config, db_url)
    store = CampaignStore(db_url)
    try:
        campaign = store.get_campaign("serving")
        points = store.get_points(campaign.id)
        serving = store.get_serving_points(campaign.id)
        spent = store.gpu_seconds(campaign.id)
        points_spent = store._gpu_seconds_of(Point, campaign.id)
        export_campaign(store, "serving", "parquet", tmp_path / "out", include_simulated=True)
    finally:
        store.close()
    assert [r.round_index for r in outcome.rounds] == [0, 1]
    # Each round's first engine configuration serves the loads, once per configuration.
    firsts: dict[int, str] = {}
    for p in points:
        firsts.setdefault(p.round_index, p.config_key)
    assert {p.config_key for p in serving} == set(firsts.values())
    assert len(serving) == 3 * len(set(firsts.values()))
    assert all(p.status == "COMPLETE" for p in serving)
    exported = read_exported_serving([tmp_path / "out"], include_simulated=True)
    # The campaign's GPU time is its points' and its serving loads'.
    serving_spent = sum(e.row["gpu_seconds"] for e in exported)
    assert serving_spent > 0 and spent == pytest.approx(points_spent + serving_spent)
    assert sorted(e.row["serving_point_id"] for e in exported) == sorted(p.id for p in serving)
    assert read_exported_serving([tmp_path / "out"]) == []  # simulated rows left out by default


@pytest.mark.parametrize(
    ("tests_at", "expected"),
    [
        ([0, 3, 5, 7, 11], [0, 3]),  # five tests of 12 leave 7 to train: the last three go back
        ([], [11]),  # no test point: the last one tests
        ([4], [4]),  # already trains on 11 and tests on 1: as drawn
        ([2, 9], [2, 9]),  # 10 and 2: as drawn
    ],
)
def test_round_zero_split_trains_on_enough_points_and_tests_on_one(
    tests_at: list[int], expected: list[int]
) -> None:
    import numpy as np

    from gnn.names import MIN_TRAINING_ROWS
    from orchestrator.campaign import trainable_split
    from orchestrator.sampling import PointSampler
    from storage import PointSpec

    config = small()
    drawn = PointSampler(config, [get_gpu("H100-SXM")]).sample(12, np.random.default_rng(0))
    specs = [
        PointSpec(p, "simulated", split="test" if i in tests_at else "train")
        for i, p in enumerate(drawn)
    ]
    split = trainable_split(specs)
    assert [i for i, spec in enumerate(split) if spec.split == "test"] == expected
    assert sum(spec.split == "train" for spec in split) >= MIN_TRAINING_ROWS
    assert [spec.point for spec in split] == drawn


def test_a_topped_up_round_zero_split_counts_the_points_already_stored() -> None:
    import numpy as np

    from orchestrator.campaign import trainable_split
    from orchestrator.sampling import PointSampler
    from storage import PointSpec

    drawn = PointSampler(small(), [get_gpu("H100-SXM")]).sample(4, np.random.default_rng(0))
    new = [PointSpec(p, "simulated", split="test") for p in drawn]
    # 6 stored for training and 1 for testing: the 4 new ones all train (10 and 1).
    assert [s.split for s in trainable_split(new, 6, 1)] == ["train"] * 4
    # 7 stored for training, none for testing: one new one tests, three train (10 and 1).
    assert [s.split for s in trainable_split(new, 7, 0)] == ["test", "train", "train", "train"]
    # No stored test point and new ones that all train: the last new one tests.
    trains = [PointSpec(p, "simulated") for p in drawn]
    assert [s.split for s in trainable_split(trains, 7, 0)][-1] == "test"
