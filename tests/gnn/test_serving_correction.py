"""The serving twin's correction: its step arithmetic, fit, held-out evaluation and file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from featurize import resolve_architecture
from featurize.gpus import GpuCatalog
from featurize.point import GpuSetup
from featurize.precision import Precision
from gnn.predict import default_predictor
from gnn.serving import predict_serving, step_costs
from gnn.serving_correction import (
    ServingCorrection,
    ServingObservation,
    TwinFactory,
    default_serving_correction,
    fit_step_correction,
    held_out_predictions,
    predict_observation,
    read_observations,
    replay,
    twin_factory,
)
from llmco2.errors import ConfigFileError, InvalidRequestError
from workers.serving import ServingLoad
from workers.serving_twin import StepCorrection, StepCosts

TRUTH = StepCorrection(
    decode_log_scale=0.08,
    decode_batch_slope=-0.03,
    decode_kv_slope=0.3,
    prefill_log_scale=-0.1,
    prefill_join_log_scale=-0.15,
    host_s=0.004,
)


def _observation(shape: str, trace: str, concurrency: int | None) -> ServingObservation:
    return ServingObservation(
        shape=shape,
        trace=trace,
        concurrency=concurrency,
        rate_per_s=None if concurrency is not None else 4.0,
        requests=max(12, 4 * concurrency) if concurrency is not None else 40,
        seed=0,
        max_context=4096,
        max_num_seqs=64,
        gpu="NVIDIA H200",
        gpu_count=1,
        measured_j=1.0,
        measured_tokens_per_s=1.0,
    )


@pytest.fixture(scope="module")
def make_twin() -> TwinFactory:
    return twin_factory(default_predictor())


@pytest.fixture(scope="module")
def synthetic(make_twin: TwinFactory) -> list[ServingObservation]:
    """Loads "measured" on a twin that runs ``TRUTH``: what a fit must find again."""
    observations = []
    for shape in ("qwen2-1.5b", "llama3.1-8b", "qwen3-8b"):
        for trace in ("conv", "code"):
            for concurrency in (1, 4, 16):
                draft = _observation(shape, trace, concurrency)
                energy, tokens = predict_observation(make_twin, draft, TRUTH)
                observations.append(
                    dataclasses.replace(draft, measured_j=energy, measured_tokens_per_s=tokens)
                )
    return observations


def test_the_identity_correction_is_the_twins_shared_forward_pass() -> None:
    seconds, joules = StepCorrection().apply(0.010, 5.0, 0.004, 3.0, 8, 9, 0.2, 100.0)
    # The 4 ms prefill hides under the 10 ms decode: static power is paid once over 10 ms.
    assert float(seconds) == pytest.approx(0.010)
    assert float(joules) == pytest.approx(5.0 + 3.0 - 0.004 * 100.0)


def test_a_step_lasts_at_least_its_host_time_and_the_gpus_idle_through_the_rest() -> None:
    host = StepCorrection(host_s=0.003, host_per_sequence_s=0.0001)
    seconds, joules = host.apply(0.002, 1.0, 0.0, 0.0, 10, 10, 0.1, 100.0)
    assert float(seconds) == pytest.approx(0.004)  # 3 ms + 10 × 0.1 ms
    assert float(joules) == pytest.approx(1.0 + 0.002 * 100.0)
    # A forward pass longer than the host's work is unchanged.
    assert host.apply(0.010, 5.0, 0.0, 0.0, 10, 10, 0.1, 100.0)[0] == pytest.approx(0.010)


def test_scales_apply_to_decode_by_batch_size_and_kv_share_and_to_prefill() -> None:
    scaled = StepCorrection(
        decode_log_scale=0.1, decode_batch_slope=0.05, decode_kv_slope=0.4, prefill_log_scale=-0.2
    )
    seconds, joules = scaled.apply(
        np.array([0.01, 0.0]), np.array([4.0, 0.0]), np.array([0.0, 0.02]),
        np.array([0.0, 9.0]), np.array([16, 0]), np.array([16, 1]), np.array([0.5, 0.0]), 100.0,
    )  # fmt: skip
    decode = np.exp(0.1 + 0.05 * np.log(16) + 0.4 * 0.5)
    assert seconds == pytest.approx([0.01 * decode, 0.02 * np.exp(-0.2)])
    assert joules == pytest.approx([4.0 * decode, 9.0 * np.exp(-0.2)])


def test_prefills_joining_another_in_the_pass_take_their_own_scale_on_top() -> None:
    scaled = StepCorrection(prefill_log_scale=-0.1, prefill_join_log_scale=-0.3)
    # 20 ms and 9 J of prefill, of which 8 ms and 4 J are prompts joining the first.
    seconds, joules = scaled.apply(
        0.0, 0.0, 0.02, 9.0, 0, 3, 0.0, 100.0, joining_s=0.008, joining_j=4.0
    )
    assert float(seconds) == pytest.approx((0.012 + 0.008 * np.exp(-0.3)) * np.exp(-0.1))
    assert float(joules) == pytest.approx((5.0 + 4.0 * np.exp(-0.3)) * np.exp(-0.1))
    # A pass of one prompt has nothing joining it: only the prefill scale applies.
    alone = scaled.apply(0.0, 0.0, 0.02, 9.0, 0, 1, 0.0, 100.0)
    assert float(alone[1]) == pytest.approx(9.0 * np.exp(-0.1))


def test_the_twin_records_what_joining_prompts_cost(make_twin: TwinFactory) -> None:
    twin = make_twin(_observation("llama3.1-8b", "code", 4), StepCorrection(), True)
    for request in range(3):
        twin.add(request, 1000, 4)
    twin.step()
    (step,) = twin.steps
    first_s, first_j = twin.costs.prefill(1000)
    joining_s, joining_j = twin.costs.prefill(1000, joining=True)
    assert (step.prefill_s, step.prefill_j) == pytest.approx(
        (first_s + 2 * joining_s, first_j + 2 * joining_j)
    )
    assert (step.joining_s, step.joining_j) == pytest.approx((2 * joining_s, 2 * joining_j))


def test_a_replayed_load_gives_what_the_full_replay_gives(make_twin: TwinFactory) -> None:
    for trace, concurrency in (("conv", 4), ("code", 16)):
        observation = _observation("llama3.1-8b", trace, concurrency)
        replayed = replay(make_twin, observation)
        for correction in (StepCorrection(), TRUTH):
            summed = replayed.predicted(correction)
            full = predict_observation(make_twin, observation, correction)
            # Up to where the full replay's 20 ms energy readings put the window's ends.
            assert summed == pytest.approx(full, rel=0.01)


def test_open_loops_are_not_replayed_for_fitting(make_twin: TwinFactory) -> None:
    with pytest.raises(InvalidRequestError, match="closed loops"):
        replay(make_twin, _observation("llama3.1-8b", "conv", None))


def test_the_fit_finds_the_correction_the_measurements_were_made_with(
    make_twin: TwinFactory,
    synthetic: list[ServingObservation],
) -> None:
    uncorrected = [
        abs(predict_observation(make_twin, o, StepCorrection())[0] / o.measured_j - 1)
        for o in synthetic
    ]
    assert max(uncorrected) > 0.1  # the correction matters on these loads
    fitted = fit_step_correction([replay(make_twin, o) for o in synthetic])
    errors = [
        abs(predict_observation(make_twin, o, fitted)[0] / o.measured_j - 1) for o in synthetic
    ]
    # The ridge pulls the log scales a little towards zero; the host time is recovered.
    assert max(errors) < 0.03
    assert fitted.host_s == pytest.approx(TRUTH.host_s, rel=0.25)


def test_a_held_out_shapes_prediction_does_not_see_its_own_measurements(
    make_twin: TwinFactory,
    synthetic: list[ServingObservation],
) -> None:
    before = held_out_predictions(make_twin, synthetic, "shape")
    # Measurements of qwen2-1.5b, far off: its own held-out predictions must not move...
    skewed = [
        dataclasses.replace(o, measured_j=3 * o.measured_j) if o.shape == "qwen2-1.5b" else o
        for o in synthetic
    ]
    after = held_out_predictions(make_twin, skewed, "shape")
    for b, a in zip(before, after, strict=True):
        if b.observation.shape == "qwen2-1.5b":
            assert a.predicted_j == pytest.approx(b.predicted_j)
            assert a.group == "qwen2-1.5b"
    # ...while the other shapes' corrections were fitted with them.
    moved = [
        a.predicted_j / b.predicted_j
        for b, a in zip(before, after, strict=True)
        if b.observation.shape != "qwen2-1.5b"
    ]
    assert max(abs(m - 1) for m in moved) > 0.01
    by_concurrency = held_out_predictions(make_twin, synthetic, "concurrency")
    assert {p.group for p in by_concurrency} == {"C=1", "C=4", "C=16"}
    with pytest.raises(InvalidRequestError, match="unknown split"):
        held_out_predictions(make_twin, synthetic, "vendor")
    # By GPU type: a GPU's NVML name and its catalog id are one group.
    mixed = [
        dataclasses.replace(o, gpu="H100-SXM" if n % 2 else "NVIDIA H100 80GB HBM3")
        if o.shape == "qwen3-8b" else o
        for n, o in enumerate(synthetic)
    ]  # fmt: skip
    by_gpu = held_out_predictions(make_twin, mixed, "gpu")
    assert {p.group for p in by_gpu} == {"H200", "H100-SXM"}


def test_the_shipped_form_round_trips_and_brackets_its_prediction(
    make_twin: TwinFactory,
    synthetic: list[ServingObservation],
    tmp_path: Path,
) -> None:
    correction, held_out = ServingCorrection.fitted(make_twin, synthetic, {"files": ["x"]})
    assert len(held_out) == len(synthetic)
    assert correction.interval_log is not None
    low, high = correction.interval_log
    assert low <= 0.0 <= high or low < high
    path = tmp_path / "correction.json"
    correction.save(path)
    assert ServingCorrection.load(path) == correction
    assert correction.provenance["shapes"] == ["llama3.1-8b", "qwen2-1.5b", "qwen3-8b"]
    bounds = correction.interval_of(100.0)
    assert bounds is not None and bounds[0] < bounds[1]
    path.write_text(json.dumps({"step": {"host_s": 1}}))
    with pytest.raises(ConfigFileError, match="not a serving correction"):
        ServingCorrection.load(path)
    # A file written before joining prefills had a scale of their own: they had none.
    older = json.loads(json.dumps(dataclasses.asdict(correction)))
    del older["step"]["prefill_join_log_scale"]
    path.write_text(json.dumps(older))
    assert ServingCorrection.load(path).step.prefill_join_log_scale == 0.0


def test_predict_serving_applies_the_correction_it_is_given() -> None:
    predictor = default_predictor()
    architecture = resolve_architecture("qwen2-1.5b")
    setup = GpuSetup(GpuCatalog.default().get("H200"), 1)
    load = ServingLoad("conv", 16, concurrency=4, max_context=4096)
    plain = predict_serving(
        predictor, architecture, setup, load, max_num_seqs=64, correction=ServingCorrection()
    )
    slow_host = ServingCorrection(StepCorrection(host_s=0.02), (-0.1, 0.2), 0.8)
    hosted = predict_serving(
        predictor, architecture, setup, load, max_num_seqs=64, correction=slow_host
    )
    assert hosted.result.output_tokens_per_s < plain.result.output_tokens_per_s
    assert hosted.result.per_request_j is not None and plain.result.per_request_j is not None
    assert hosted.result.per_request_j > plain.result.per_request_j
    assert hosted.per_request_low_j == pytest.approx(hosted.result.per_request_j * np.exp(-0.1))
    assert hosted.interval_level == 0.8
    # Without its own interval the single-request predictor's is used.
    assert plain.per_request_low_j is not None
    shipped = default_serving_correction()
    assert predict_serving(predictor, architecture, setup, load, max_num_seqs=64) == (
        predict_serving(predictor, architecture, setup, load, max_num_seqs=64, correction=shipped)
    )


def test_serving_files_that_are_not_measurements_are_refused_with_their_line(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigFileError, match="cannot read serving measurements"):
        read_observations([tmp_path / "absent.jsonl"])
    bad = tmp_path / "serving.jsonl"
    bad.write_text('{"shape": "x"}\n')
    with pytest.raises(ConfigFileError, match=r"serving.jsonl:1: not a serving measurement"):
        read_observations([bad])
    bad.write_text("\n")
    with pytest.raises(ConfigFileError, match="no serving measurements"):
        read_observations([bad])


def test_loads_without_a_steady_state_are_left_out_of_the_measurements(tmp_path: Path) -> None:
    measured = Path(__file__).resolve().parents[2] / "experiments/data/serving-h200/serving.jsonl"
    if not measured.is_file():
        pytest.skip("the measured serving loads are not in this checkout")
    rows = [json.loads(line) for line in measured.read_text().splitlines()[:3]]
    rows[1]["result"]["per_request_j"] = None
    path = tmp_path / "serving.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    observations = read_observations([path])
    assert [o.measured_j for o in observations] == [
        rows[0]["result"]["per_request_j"], rows[2]["result"]["per_request_j"],
    ]  # fmt: skip
    assert observations[0].max_num_seqs == rows[0]["engine_settings"]["max_num_seqs"]
    assert observations[0].load.lengths() == [tuple(t[:2]) for t in rows[0]["timeline"]]


def test_the_kv_share_of_a_decode_step_grows_with_its_contexts_and_the_kv_heads() -> None:
    setup = GpuSetup(GpuCatalog.default().get("H200"), 1)

    def costs(shape: str) -> StepCosts:
        return step_costs(
            default_predictor(), resolve_architecture(shape), setup, Precision(), 64, 4096
        )

    gqa, mha = costs("llama3.2-3b"), costs("phi-3-mini-4k")
    assert 0.0 == gqa.kv_share(0) < gqa.kv_share(1000) < gqa.kv_share(64_000) < 1.0
    # Phi-3-mini keeps a key and a value for each of its 32 heads, Llama-3.2-3B for 8 of 24.
    assert mha.kv_share(64_000) > gqa.kv_share(64_000)
    assert gqa.kv_bytes_per_token == pytest.approx(28 * 2 * 8 * 128 * 2)


def test_a_campaigns_exported_serving_loads_are_observations_of_their_own_shapes(
    tmp_path: Path, make_twin: TwinFactory
) -> None:
    from orchestrator.campaign import CampaignDriver, LocalTrainer
    from orchestrator.config import parse_config
    from storage import CampaignStore
    from storage.export import export_campaign
    from tests.orchestrator.test_campaign_in_process import SERVING_CAMPAIGN, InProcessMeasurer

    config = parse_config({**SERVING_CAMPAIGN, "serving": {
        "traces": ["code"], "concurrency": [2], "engines_per_round": 1}})  # fmt: skip
    store = CampaignStore(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        CampaignDriver(
            config, store, gpus=[GpuCatalog.default().get("H100-SXM")],
            measurer=InProcessMeasurer(), trainer=LocalTrainer(config.training),
        ).run()  # fmt: skip
        export_campaign(store, "serving", "parquet", tmp_path / "out", include_simulated=True)
        (stored,) = store.get_serving_points(store.get_campaign("serving").id)
        record = store.get_serving_measurement(stored.id)
    finally:
        store.close()
    # Simulated rows are never observations of real serving.
    with pytest.raises(ConfigFileError, match="no serving measurements"):
        read_observations([tmp_path / "out"])
    with pytest.raises(ConfigFileError, match=r"no serving\.parquet"):
        read_observations([tmp_path])
    from storage.export import read_exported_serving

    (served,) = read_exported_serving([tmp_path / "out"], include_simulated=True)
    observation = ServingObservation.from_export(served)
    assert observation is not None and record is not None
    architecture, precision, _ = stored.engine_parts()
    assert (observation.architecture, observation.precision) == (architecture, precision)
    assert (observation.gpu, observation.gpu_count) == ("H100-SXM", 1)
    assert observation.load == ServingLoad("code", stored.requests, 2, None, 4096, config.seed)
    assert observation.measured_j == record.per_request_j
    # Its twin is its own shape's, not a catalog model's of that name.
    energy, _ = predict_observation(make_twin, observation, StepCorrection())
    assert energy > 0
