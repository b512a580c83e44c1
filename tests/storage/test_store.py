"""The campaign store's contract, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import pickle
import time

import pytest
from sqlalchemy import select

from featurize import (
    GpuSetup,
    InferencePoint,
    InferenceRequest,
    Precision,
    get_gpu,
    resolve_architecture,
)
from llmco2.errors import (
    CampaignBusyError,
    CampaignConflictError,
    DatabaseError,
    InvalidRequestError,
    UnknownCampaignError,
)
from storage import (
    CampaignStore,
    MeasurementRecord,
    PointSpec,
    PointStatus,
    RoundRecord,
    config_key,
    point_key,
)
from storage.models import Point
from tests.conftest import make_specs

RESULT = MeasurementRecord(
    engine_name="simulated",
    simulated=True,
    energy_j=12.5,
    prefill_energy_j=2.5,
    decode_energy_j=10.0,
    gpu_energies_j=[12.5],
    latency_s=0.3,
    repeats=3,
    energy_std_j=0.1,
    energy_cv=0.008,
    gpu_names=["NVIDIA H100 80GB HBM3"],
)


@pytest.fixture
def store(db_url: str) -> CampaignStore:
    return CampaignStore(db_url)


def test_campaign_is_created_then_resumed_by_name(store: CampaignStore) -> None:
    first = store.create_campaign("sweep", {"A": 10, "engine": "simulated"})
    again = store.create_campaign("sweep", {"engine": "simulated", "A": 10})  # key order
    assert again.id == first.id
    with pytest.raises(CampaignConflictError, match="different configuration"):
        store.create_campaign("sweep", {"A": 11, "engine": "simulated"})
    with pytest.raises(CampaignConflictError, match="exists already"):
        store.create_campaign("sweep", {"A": 10, "engine": "simulated"}, load_if_exists=False)
    assert [c.name for c in store.list_campaigns()] == ["sweep"]


def test_a_new_configuration_replaces_the_old_in_one_transaction(store: CampaignStore) -> None:
    first = store.create_campaign("sweep", {"A": 10})
    replaced = store.create_campaign("sweep", {"A": 12}, replace_config=True)
    assert replaced.id == first.id and replaced.config == {"A": 12}
    assert store.get_campaign("sweep").config_hash == replaced.config_hash != first.config_hash
    with pytest.raises(CampaignConflictError, match="different configuration"):
        store.create_campaign("sweep", {"A": 13}, replace_config=True, load_if_exists=False)
    assert store.get_campaign("sweep").config == {"A": 12}


def test_stored_points_carry_their_model_name_and_family(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    specs = make_specs(2)
    store.add_points(campaign.id, specs)
    point = store.get_points(campaign.id)[0]
    assert point.model_name == specs[0].point.architecture.name
    assert point.family == specs[0].point.architecture.family


def test_mxfp4_experts_are_stored_and_read_back(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    setup = GpuSetup(get_gpu("H200"), 1)
    arch = resolve_architecture("gpt-oss-20b")
    request = InferenceRequest(1, 100, 10)
    mxfp4 = InferencePoint(arch, request, setup, Precision(expert_weight_bits=4))
    bf16 = InferencePoint(arch, request, setup)
    store.add_points(campaign.id, [PointSpec(mxfp4, "vllm"), PointSpec(bf16, "vllm")])
    stored = {p.key: p for p in store.get_points(campaign.id)}
    assert len(stored) == 2  # the experts' width is part of the key
    assert stored[point_key(mxfp4, "vllm")].inference_point().precision == mxfp4.precision
    assert stored[point_key(bf16, "vllm")].expert_weight_bits is None
    assert config_key(mxfp4, "vllm") != config_key(bf16, "vllm")


def test_unknown_campaign_lists_the_known_ones(store: CampaignStore) -> None:
    store.create_campaign("alpha", {})
    with pytest.raises(UnknownCampaignError, match=r"no campaign 'beta'.*'alpha'"):
        store.get_campaign("beta")


def test_points_are_added_once_per_key(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    specs = make_specs(30)
    ids = store.add_points(campaign.id, specs)
    assert len(set(ids)) == 30
    assert store.add_points(campaign.id, specs[10:] + specs[:10]) == ids[10:] + ids[:10]
    assert store.status_counts(campaign.id)["PENDING"] == 30
    # The same point in another campaign is another row.
    other = store.create_campaign("d", {})
    assert set(store.add_points(other.id, specs[:3])).isdisjoint(ids)


def test_key_covers_what_determines_the_measurement() -> None:
    arch = resolve_architecture("llama3.1-8b")
    h100 = GpuSetup(get_gpu("H100-SXM"), 1)
    base = InferencePoint(arch, InferenceRequest(1, 100, 10), h100)
    renamed = InferencePoint(arch.replace(name="copy"), InferenceRequest(1, 100, 10), h100)
    assert point_key(base, "vllm") == point_key(renamed, "vllm")  # a label is not a shape
    variants = [
        InferencePoint(arch, InferenceRequest(2, 100, 10), h100),
        InferencePoint(arch, InferenceRequest(1, 101, 10), h100),
        InferencePoint(arch, InferenceRequest(1, 100, 11), h100),
        InferencePoint(arch, InferenceRequest(1, 100, 10), GpuSetup(get_gpu("H100-SXM"), 2)),
        InferencePoint(arch, InferenceRequest(1, 100, 10), GpuSetup(get_gpu("H200"), 1)),
        InferencePoint(arch.replace(num_layers=31), InferenceRequest(1, 100, 10), h100),
        InferencePoint(arch, InferenceRequest(1, 100, 10), h100, flash_attention=False),
    ]
    keys = {point_key(p, "vllm") for p in variants} | {point_key(base, "simulated")}
    assert len(keys) == len(variants) + 1 and point_key(base, "vllm") not in keys
    # The engine configuration ignores the request, and only the request.
    assert config_key(variants[0], "vllm") == config_key(base, "vllm")
    assert config_key(variants[3], "vllm") != config_key(base, "vllm")


def test_claims_are_atomic_disjoint_and_limited(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    ids = store.add_points(campaign.id, make_specs(12))
    first = store.claim(campaign.id, "driver-a", 5)
    second = store.claim(campaign.id, "driver-b", 5)
    third = store.claim(campaign.id, "driver-c", 5)
    assert [p.id for p in first] == ids[:5]
    assert [p.id for p in second] == ids[5:10]
    assert [p.id for p in third] == ids[10:]
    assert all(p.status == PointStatus.RUNNING and p.lease_owner == "driver-a" for p in first)
    assert store.claim(campaign.id, "driver-d", 5) == []
    assert store.status_counts(campaign.id)["RUNNING"] == 12


def test_claim_by_engine_configuration(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    store.add_points(campaign.id, make_specs(4, gpu="H100-SXM") + make_specs(3, gpu="H200"))
    h200_key = make_specs(1, gpu="H200")[0]
    key = config_key(h200_key.point, h200_key.engine)
    claimed = store.claim(campaign.id, "actor", 10, config_key=key)
    assert len(claimed) == 3 and {p.gpu_type for p in claimed} == {"H200"}
    rebuilt = claimed[0].inference_point()
    assert rebuilt.setup.gpu.id == "H200" and rebuilt.architecture.family == "qwen2"


def test_expired_leases_return_to_pending_then_fail(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    (point_id,) = store.add_points(campaign.id, make_specs(1))
    for attempt in range(1, 3):
        assert [p.id for p in store.claim(campaign.id, "a", 1, lease_seconds=0.2)] == [point_id]
        assert store.requeue_expired(campaign.id, max_attempts=3) == (0, 0)  # not yet expired
        time.sleep(0.4)
        assert store.requeue_expired(campaign.id, max_attempts=3) == (1, 0)
        (point,) = store.get_points(campaign.id)
        assert (point.status, point.attempts, point.lease_owner) == ("PENDING", attempt, None)
    store.claim(campaign.id, "a", 1, lease_seconds=0.2)
    time.sleep(0.4)
    assert store.requeue_expired(campaign.id, max_attempts=3) == (0, 1)
    (point,) = store.get_points(campaign.id)
    assert (point.status, point.attempts, point.error_kind) == ("FAILED", 3, "lease_expired")


def test_heartbeat_extends_only_the_owners_lease(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    ids = store.add_points(campaign.id, make_specs(2))
    store.claim(campaign.id, "a", 1, lease_seconds=0.3)
    store.claim(campaign.id, "b", 1, lease_seconds=0.3)
    assert store.heartbeat(ids, "a", lease_seconds=60) == 1
    time.sleep(0.5)
    assert store.requeue_expired(campaign.id) == (1, 0)
    statuses = {p.id: p.status for p in store.get_points(campaign.id)}
    assert statuses == {ids[0]: "RUNNING", ids[1]: "PENDING"}
    assert store.release([ids[0]], "b") == 0
    assert store.release([ids[0]], "a") == 1
    assert store.get_points(campaign.id, ids=[ids[0]])[0].attempts == 0


def test_a_result_is_recorded_exactly_once(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    (point_id,) = store.add_points(campaign.id, make_specs(1))
    store.claim(campaign.id, "a", 1)
    assert store.record_result(point_id, RESULT)
    duplicate = MeasurementRecord(engine_name="simulated", simulated=True, energy_j=99.0)
    assert not store.record_result(point_id, duplicate)  # Ray delivered it twice
    assert store.measurement_count(campaign.id) == 1
    stored = store.get_measurement(point_id)
    assert stored is not None and stored.energy_j == 12.5 and stored.gpu_energies_j == [12.5]


def test_finished_rows_never_change(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    done, failed, infeasible = store.add_points(campaign.id, make_specs(3))
    store.claim(campaign.id, "a", 3, lease_seconds=0.1)
    store.record_result(done, RESULT)
    assert store.record_failure(failed, "crash", "boom", retryable=False) == "FAILED"
    assert store.record_infeasible(infeasible, "needs 90 GB")
    with store.engine.connect() as conn:
        before = conn.execute(select(Point).order_by(Point.id)).all()
    time.sleep(0.2)
    for point_id in (done, failed, infeasible):
        assert not store.record_result(point_id, RESULT)
        assert store.record_failure(point_id, "crash", "again") is None
        assert not store.record_infeasible(point_id, "again")
    assert store.requeue_expired(campaign.id) == (0, 0)
    assert store.claim(campaign.id, "b", 10) == []
    assert store.heartbeat([done, failed, infeasible], "a") == 0
    with store.engine.connect() as conn:
        after = conn.execute(select(Point).order_by(Point.id)).all()
    assert before == after


def test_failures_are_retried_up_to_the_limit(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    (point_id,) = store.add_points(campaign.id, make_specs(1))
    for expected in ("PENDING", "PENDING", "FAILED"):
        store.claim(campaign.id, "a", 1)
        assert store.record_failure(point_id, "actor_died", "worker crashed") == expected
    (point,) = store.get_points(campaign.id)
    assert (point.attempts, point.error_kind, point.error_message) == (
        3,
        "actor_died",
        "worker crashed",
    )


def test_a_failure_repeated_word_for_word_is_final_when_asked(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    same, other = store.add_points(campaign.id, make_specs(2))
    load = "RuntimeError: Engine core initialization failed"
    store.claim(campaign.id, "a", 2)
    assert store.record_failure(same, "engine_load_failed", load, final_if_repeated=True) == (
        "PENDING"
    )
    assert store.record_failure(other, "engine_load_failed", load, final_if_repeated=True) == (
        "PENDING"
    )
    store.claim(campaign.id, "a", 2)
    # the same error again: final after two tries of three
    assert store.record_failure(same, "engine_load_failed", load, final_if_repeated=True) == (
        "FAILED"
    )
    # another error is not a repeat: the point keeps its last try
    assert store.record_failure(
        other, "engine_load_failed", "CUDA error: unknown", final_if_repeated=True
    ) == "PENDING"  # fmt: skip
    (failed,) = store.get_points(campaign.id, statuses=["FAILED"])
    assert (failed.id, failed.attempts) == (same, 2)


def test_infeasible_points_are_never_retried(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    (point_id,) = store.add_points(campaign.id, make_specs(1))
    store.claim(campaign.id, "a", 1)
    assert store.record_infeasible(point_id, "CUDA out of memory", kind="oom")
    assert store.claim(campaign.id, "a", 1) == []
    (point,) = store.get_points(campaign.id, statuses=["INFEASIBLE"])
    assert (point.error_kind, point.error_message) == ("oom", "CUDA out of memory")


def test_rounds_and_models(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    model_id = store.save_model(
        "gnn-round-0", feature_schema_version=1, checkpoint=b"\x00weights", metrics={"mape": 7.5}
    )
    record = RoundRecord(
        0, "focused", 50, train_points=40, test_points=10, mape=7.5, model_id=model_id
    )
    store.add_round(campaign.id, record)
    with pytest.raises(CampaignConflictError, match="round 0"):
        store.add_round(campaign.id, record)
    assert store.rounds(campaign.id) == [record]
    model = store.load_model(model_id)
    assert model["checkpoint"] == b"\x00weights" and model["metrics"] == {"mape": 7.5}
    with pytest.raises(InvalidRequestError, match="no model"):
        store.load_model(model_id + 100)
    with pytest.raises(InvalidRequestError, match="checkpoint bytes or a path"):
        store.save_model("empty", feature_schema_version=1)


def test_invalid_split_is_refused(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    spec = make_specs(1)[0]
    bad = PointSpec(spec.point, spec.engine, split="validation")
    with pytest.raises(InvalidRequestError, match="split"):
        store.add_points(campaign.id, [bad])


def _count_in_child(store: CampaignStore, name: str) -> int:
    campaign = store.get_campaign(name)
    return store.status_counts(campaign.id)["PENDING"]


def test_store_survives_pickling_into_another_process(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    store.add_points(campaign.id, make_specs(7))
    clone = pickle.loads(pickle.dumps(store))
    assert clone.status_counts(campaign.id)["PENDING"] == 7
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_count_in_child, (store, "c")) == 7


def test_server_clock_is_used_for_leases(store: CampaignStore) -> None:
    assert abs(store.server_time() - time.time()) < 5


def test_passwords_are_masked_in_urls_and_errors() -> None:
    store = CampaignStore("postgresql+psycopg://alice:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in store.url and "***" in store.url
    assert "s3cret" not in repr(store)
    with pytest.raises(DatabaseError) as info:
        store.list_campaigns()
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def test_one_driver_holds_a_campaign_until_its_lease_ends(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    store.acquire_driver(campaign.id, "host-a:1", lease_seconds=30)
    store.acquire_driver(campaign.id, "host-a:1", lease_seconds=30)  # its own lease: renewed
    with pytest.raises(CampaignBusyError, match=r"'c' is being run by host-a:1 since 20"):
        store.acquire_driver(campaign.id, "host-b:2", lease_seconds=30)
    assert store.driver_of(campaign.id) == "host-a:1"
    # a holder known to be gone is taken over at once
    store.acquire_driver(campaign.id, "host-b:2", holder_gone=lambda h: h == "host-a:1")
    assert not store.renew_driver(campaign.id, "host-a:1")  # it lost the lease
    assert not store.release_driver(campaign.id, "host-a:1")
    assert store.renew_driver(campaign.id, "host-b:2", lease_seconds=0.2)
    time.sleep(0.5)
    assert store.driver_of(campaign.id) is None  # expired by the database clock
    store.acquire_driver(campaign.id, "host-c:3")
    assert store.release_driver(campaign.id, "host-c:3")
    store.acquire_driver(campaign.id, "host-d:4")  # released: free at once


def test_gpu_time_is_stored_with_every_try_and_never_twice(store: CampaignStore) -> None:
    campaign = store.create_campaign("c", {})
    done, failed, infeasible = store.add_points(campaign.id, make_specs(3))
    store.claim(campaign.id, "a", 3)
    assert store.record_failure(failed, "engine_load_failed", "x", gpu_seconds=40.0) == "PENDING"
    assert store.record_result(done, RESULT, gpu_seconds=10.0)
    assert not store.record_result(done, RESULT, gpu_seconds=10.0)  # delivered twice
    assert store.record_infeasible(infeasible, "oom", gpu_seconds=5.0)
    store.claim(campaign.id, "a", 3)
    store.record_failure(failed, "engine_load_failed", "x", gpu_seconds=30.0, retryable=False)
    assert store.gpu_seconds(campaign.id) == pytest.approx(85.0)
    assert {p.id: p.status for p in store.get_points(campaign.id)}[failed] == "FAILED"
