"""Serving points in the campaign store: their lease and exactly-once results, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from featurize import GpuSetup, Precision, get_gpu, resolve_architecture
from storage import CampaignStore, PointStatus, ServingPointSpec, ServingRecord, config_key
from storage.store.serving import SERVING_RECORD_COLUMNS
from tests.conftest import make_specs

RECORD = ServingRecord(
    engine_name="vllm",
    simulated=False,
    window_requests=20,
    total_s=12.5,
    requests=32,
    output_tokens=4096,
    requests_per_s=2.5,
    output_tokens_per_s=320.0,
    per_request_j=80.0,
    per_output_token_j=0.5,
    per_input_token_j=0.1,
    window_s=8.0,
    window_energy_j=1600.0,
    total_energy_j=2500.0,
    mean_running=7.8,
    ttft_s={"p50": 0.05, "p90": 0.08, "p99": 0.1},
    tpot_s={"p50": 0.01, "p90": 0.012, "p99": 0.02},
    timeline=[[100, 20, 0.0, 0.0, 0.05, 0.3]],
    max_num_seqs=64,
    gpu_names=["NVIDIA H100 80GB HBM3"],
    gpu_uuids=["GPU-1"],
    engine_version="vllm-0.24.0",
    engine_settings={"max_num_seqs": 64},
    started_at=datetime(2026, 12, 6, 7, 0, tzinfo=UTC),
    finished_at=datetime(2026, 12, 6, 7, 1, tzinfo=UTC),
)


def spec(concurrency: int | None = 4, trace: str = "conv", **changes: object) -> ServingPointSpec:
    values: dict[str, object] = dict(
        architecture=resolve_architecture("qwen2-0.5b"), precision=Precision(),
        setup=GpuSetup(get_gpu("H100-SXM"), 1), flash_attention=True, engine="simulated",
        trace=trace, concurrency=concurrency, rate_per_s=None if concurrency else 2.0,
        requests=32, max_context=4096, seed=0, max_num_seqs=64,
    )  # fmt: skip
    values.update(changes)
    return ServingPointSpec(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(db_url: str) -> CampaignStore:
    return CampaignStore(db_url)


def test_serving_points_are_added_once_and_share_their_engines_config_key(
    store: CampaignStore,
) -> None:
    campaign = store.create_campaign("serve", {"engine": "simulated"})
    first = store.add_serving_points(campaign.id, [spec(1), spec(4), spec(None)])
    again = store.add_serving_points(campaign.id, [spec(4), spec(8)])
    assert again[0] == first[1] and again[1] not in first
    points = store.get_serving_points(campaign.id)
    assert [(p.concurrency, p.rate_per_s) for p in points] == [
        (1, None), (4, None), (None, 2.0), (8, None)
    ]  # fmt: skip
    # A serving point runs on the engine its campaign's points of that configuration load.
    (point,) = make_specs(1)
    assert {p.config_key for p in points} == {config_key(point.point, "simulated")}
    assert all(p.status == PointStatus.PENDING and p.attempts == 0 for p in points)
    architecture, precision, setup = points[0].engine_parts()
    assert architecture == resolve_architecture("qwen2-0.5b") and precision == Precision()
    assert setup == GpuSetup(get_gpu("H100-SXM"), 1)


def test_a_trace_file_is_known_by_its_content_not_its_path(
    store: CampaignStore, tmp_path: Path
) -> None:
    campaign = store.create_campaign("files", {"engine": "simulated"})
    ids = store.add_serving_points(
        campaign.id,
        [spec(trace=str(tmp_path / "a.csv"), trace_sha256="1" * 64),
         spec(trace=str(tmp_path / "b.csv"), trace_sha256="1" * 64),
         spec(trace=str(tmp_path / "a.csv"), trace_sha256="2" * 64)],
    )  # fmt: skip
    assert ids[0] == ids[1] != ids[2]


def test_claims_are_exclusive_and_results_are_stored_exactly_once(store: CampaignStore) -> None:
    campaign = store.create_campaign("claims", {"engine": "simulated"})
    ids = store.add_serving_points(campaign.id, [spec(c) for c in (1, 2, 4)])
    mine = store.claim_serving(campaign.id, "a", 2)
    theirs = store.claim_serving(campaign.id, "b", 5)
    assert [p.id for p in mine] == ids[:2] and [p.id for p in theirs] == ids[2:]
    assert store.claim_serving(campaign.id, "c", 5) == []
    assert store.record_serving_result(ids[0], RECORD, gpu_seconds=30.0)
    assert not store.record_serving_result(ids[0], RECORD, gpu_seconds=30.0)  # delivered twice
    stored = store.get_serving_measurement(ids[0])
    assert stored is not None
    assert {f: getattr(stored, f) for f in SERVING_RECORD_COLUMNS if f not in (
        "started_at", "finished_at")} == {f: getattr(RECORD, f) for f in SERVING_RECORD_COLUMNS
        if f not in ("started_at", "finished_at")}  # fmt: skip
    # Only the holder gives a point back.
    assert store.release_serving([ids[1]], "b") == 0
    assert store.release_serving([ids[1]], "a") == 1
    counts = store.serving_status_counts(campaign.id)
    assert (counts["COMPLETE"], counts["PENDING"], counts["RUNNING"]) == (1, 1, 1)
    # GPU time of serving points is the campaign's too.
    assert store.gpu_seconds(campaign.id) == pytest.approx(30.0)


def test_failures_are_retried_until_the_attempt_limit_and_infeasible_is_final(
    store: CampaignStore,
) -> None:
    campaign = store.create_campaign("failing", {"engine": "simulated"})
    retried, infeasible = store.add_serving_points(campaign.id, [spec(1), spec(2)])
    store.claim_serving(campaign.id, "a", 2)
    assert store.record_serving_failure(retried, "measurement", "no steady state",
                                        max_attempts=2) == "PENDING"  # fmt: skip
    store.claim_serving(campaign.id, "a", 1)
    assert store.record_serving_failure(retried, "measurement", "no steady state",
                                        max_attempts=2) == "FAILED"  # fmt: skip
    assert store.record_serving_infeasible(infeasible, "out of memory", "oom")
    assert not store.record_serving_infeasible(infeasible, "again", "oom")
    points = {p.id: p for p in store.get_serving_points(campaign.id)}
    assert (points[retried].status, points[retried].attempts) == ("FAILED", 2)
    assert (points[infeasible].status, points[infeasible].error_kind) == ("INFEASIBLE", "oom")


def test_expired_leases_come_back_with_an_attempt_counted(store: CampaignStore) -> None:
    campaign = store.create_campaign("expiring", {"engine": "simulated"})
    (point_id,) = store.add_serving_points(campaign.id, [spec(1)])
    store.claim_serving(campaign.id, "gone", 1, lease_seconds=-1.0)
    assert store.requeue_expired_serving(campaign.id) == (1, 0)
    (point,) = store.get_serving_points(campaign.id)
    assert (point.id, point.status, point.attempts) == (point_id, "PENDING", 1)


def test_dataset_rows_name_the_engines_scheduler_apart_from_the_points(
    store: CampaignStore,
) -> None:
    campaign = store.create_campaign("rows", {"engine": "simulated"})
    ids = store.add_serving_points(campaign.id, [spec(1, max_num_seqs=32), spec(2)])
    store.claim_serving(campaign.id, "a", 2)
    store.record_serving_result(ids[0], RECORD, gpu_seconds=12.0)
    (row,) = store.serving_rows(campaign.id, json_as_text=("timeline",))
    assert (row["max_num_seqs"], row["engine_max_num_seqs"]) == (32, 64)
    assert (row["requests"], row["served_requests"]) == (32, 32)
    assert row["timeline"].startswith("[[100") and row["gpu_seconds"] == pytest.approx(12.0)
    assert row["architecture"]["hidden_size"] == resolve_architecture("qwen2-0.5b").hidden_size
