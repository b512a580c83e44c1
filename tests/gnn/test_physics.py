from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from featurize import (
    GpuSetup,
    InferencePoint,
    InferenceRequest,
    Precision,
    get_gpu,
    resolve_architecture,
)
from featurize.kernels import kernel_counts
from gnn.physics import (
    DATASHEET_PRIOR,
    DatasheetScale,
    EnergyCoefficients,
    NormalisedEnergy,
    PhysicsInputs,
    PhysicsModel,
    TimeCoefficients,
    _energy_design,
    phase_seconds,
)
from llmco2.errors import ConfigFileError, InvalidRequestError
from tests.conftest import twin_points

W8A8 = Precision(8, 8, 16)

TIME = TimeCoefficients(
    compute=1.6,
    memory=1.3,
    network=2.5,
    per_kernel_s=4e-6,
    step_floor_s=1.5e-3,
    request_s=4e-3,
    expert=0.6,
    sequence_s=1.5e-3,
    compute_8bit=2.2,
    memory_8bit=1.5,
)


def _with_moe(count: int, seed: int = 0) -> list[InferencePoint]:
    """Twin points plus a quarter as many requests on small MoE models: Mixtral-shaped (8 large
    experts, 2 per token) and Qwen3-MoE-shaped (128 small ones, 8 per token), and a quarter as
    many again of 16-bit twin points run in 8 bits (w8a8: FP8 on an H100, INT8 on an A100)."""
    points = twin_points(count, seed)
    sixteen = [p for p in points[: count // 2] if p.precision.label == "w16a16kv16"]
    points += [dataclasses.replace(p, precision=W8A8) for p in sixteen[: count // 4]]
    shapes = [resolve_architecture("mixtral-8x7b"), resolve_architecture("qwen3-30b-a3b")]
    rng = np.random.default_rng(seed)
    for index in range(count // 4):
        layers = int(rng.integers(2, 7))
        base = shapes[(index // 2) % 2]
        arch = base.with_depth(layers).replace(name=f"{base.name}~L{layers}")
        request = InferenceRequest(
            int(rng.integers(1, 5)), int(rng.integers(16, 2048)), int(rng.integers(1, 256))
        )
        gpu = get_gpu(["H100-SXM", "A100-80GB"][index % 2])
        points.append(InferencePoint(arch, request, GpuSetup(gpu, 1 + index % 2)))
    return points


def _synthetic(
    points: list[InferencePoint], energy: dict[str, EnergyCoefficients]
) -> tuple[PhysicsInputs, np.ndarray, np.ndarray]:
    """Inputs, energies and latencies made exactly by the model with known coefficients."""
    inputs = PhysicsInputs.of_points(points)
    seconds = phase_seconds(inputs, TIME)
    joules = np.zeros_like(seconds)
    for gpu, coefficients in energy.items():
        rows = inputs.gpu_type == gpu
        joules[rows] = _energy_design(inputs.subset(np.flatnonzero(rows)), TIME) @ (
            coefficients.as_array()
        )
    return inputs, joules, seconds


# Linked powers at the datasheet prior's 5 % of TDP (700 and 400 W): a fit keeps them there.
H100 = EnergyCoefficients(150.0, 400.0, 0.6e-12, 90e-12, 1.5e-9, 0.3, 0.4e-12, 35.0)
A100 = EnergyCoefficients(110.0, 250.0, 1.1e-12, 120e-12, 2.0e-9, 0.2, 0.7e-12, 20.0)


def test_the_fit_recovers_known_coefficients_per_gpu_type() -> None:
    inputs, joules, seconds = _synthetic(_with_moe(120, seed=3), {"H100-SXM": H100,
                                                                  "A100-80GB": A100})  # fmt: skip
    model = PhysicsModel.fit(inputs, joules, seconds, prior_strength=1e-9)
    for gpu, truth in (("H100-SXM", H100), ("A100-80GB", A100)):
        fitted = model.gpus[gpu]
        np.testing.assert_allclose(fitted.time.as_array(), TIME.as_array(), rtol=2e-2)
        np.testing.assert_allclose(fitted.energy.as_array(), truth.as_array(), rtol=5e-2)
        assert fitted.measured_points == int((inputs.gpu_type == gpu).sum())
    energy, predicted_seconds = model.predict(inputs)
    np.testing.assert_allclose(energy, joules, rtol=1e-2, atol=1e-6)
    np.testing.assert_allclose(predicted_seconds, seconds, rtol=1e-2)


def test_time_has_a_floor_per_forward_pass() -> None:
    gpu = get_gpu("H100-SXM")
    point = twin_points(1)[0]
    tiny = InferencePoint(point.architecture, point.request, GpuSetup(gpu, 1))
    inputs = PhysicsInputs.of_points([tiny])
    # a 1 s floor dwarfs any kernel; no set-up
    floor = TimeCoefficients(1.0, 1.0, 1.0, 0.0, 1.0, 0.0, sequence_s=0.0)
    seconds = phase_seconds(inputs, floor)
    assert seconds[0, 0] == pytest.approx(1.0, rel=1e-3)
    assert seconds[0, 1] == pytest.approx(inputs.passes[0, 1], rel=1e-3)


def test_an_unmeasured_gpu_type_gets_the_prior_scaled_by_its_datasheet() -> None:
    inputs, joules, seconds = _synthetic(_with_moe(120, seed=3), {"H100-SXM": H100,
                                                                  "A100-80GB": A100})  # fmt: skip
    h100_rows = np.flatnonzero(inputs.gpu_type == "H100-SXM")
    model = PhysicsModel.fit(inputs.subset(h100_rows), joules[h100_rows], seconds[h100_rows])
    assert model.measured("H100-SXM") and not model.measured("A100-80GB")
    a100_scale = inputs.scale_of("A100-80GB")
    h100_scale = inputs.scale_of("H100-SXM")
    prior = model.coefficients("A100-80GB", a100_scale)
    # The H100's normalised fit is the prior, carried over through the datasheet figures.
    normalised = h100_scale.to_normalised(model.gpus["H100-SXM"].energy)
    np.testing.assert_allclose(normalised.as_array(), model.prior_energy.as_array(), rtol=5e-2)
    np.testing.assert_allclose(
        prior.energy.as_array(), a100_scale.to_si(model.prior_energy).as_array()
    )
    assert prior.time == model.prior_time and prior.measured_points == 0
    h100_prior = h100_scale.to_si(model.prior_energy)
    assert prior.energy.static_w == pytest.approx(
        h100_prior.static_w * a100_scale.tdp_w / h100_scale.tdp_w
    )
    ratio = (a100_scale.tdp_w / a100_scale.memory_bandwidth) / (
        h100_scale.tdp_w / h100_scale.memory_bandwidth
    )
    assert prior.energy.per_byte_j == pytest.approx(h100_prior.per_byte_j * ratio)
    a100_rows = np.flatnonzero(inputs.gpu_type == "A100-80GB")
    energy, _ = model.predict(inputs.subset(a100_rows))
    assert np.all(np.isfinite(energy)) and np.all(energy[:, 0] > 0)


def test_without_any_measurement_the_datasheet_prior_applies() -> None:
    model = PhysicsModel()
    scale = DatasheetScale(700.0, 989e12, 4.8e12, 900e9)
    coefficients = model.coefficients("H200", scale)
    assert coefficients.energy.static_w == pytest.approx(NormalisedEnergy().static * 700.0)
    assert coefficients.time == TimeCoefficients()


def test_a_strong_prior_holds_the_coefficients_near_it() -> None:
    inputs, joules, seconds = _synthetic(_with_moe(60, seed=5), {"H100-SXM": H100,
                                                                 "A100-80GB": A100})  # fmt: skip
    loose = PhysicsModel.fit(inputs, joules, seconds, prior_strength=1e-9)
    tight = PhysicsModel.fit(inputs, joules, seconds, prior_strength=1e6)
    for gpu in ("H100-SXM", "A100-80GB"):
        scale = inputs.scale_of(gpu)
        prior = scale.to_si(tight.prior_energy).as_array()
        assert np.abs(tight.gpus[gpu].energy.as_array() / prior - 1).max() < 0.01
        assert np.abs(loose.gpus[gpu].energy.as_array() / prior - 1).max() > 0.01


def test_round_trip_and_malformed_coefficients() -> None:
    inputs, joules, seconds = _synthetic(_with_moe(40), {"H100-SXM": H100, "A100-80GB": A100})
    model = PhysicsModel.fit(inputs, joules, seconds)
    again = PhysicsModel.from_dict(model.to_dict())
    np.testing.assert_allclose(again.predict(inputs)[0], model.predict(inputs)[0])
    with pytest.raises(ConfigFileError, match="not an llmco2 analytical model"):
        PhysicsModel.from_dict({"format": "other"})
    broken = model.to_dict()
    del broken["gpus"]["H100-SXM"]["energy"]["static_w"]
    with pytest.raises(ConfigFileError, match="malformed"):
        PhysicsModel.from_dict(broken)


def test_bad_training_data_is_refused(twin_data: Any) -> None:
    inputs = twin_data.physics_inputs
    with pytest.raises(InvalidRequestError, match="≥ 3 rows"):
        PhysicsModel.fit(inputs.subset(np.arange(2)), twin_data.energy_j[:2])
    energy = twin_data.energy_j.copy()
    energy[0, 0] = -1.0
    with pytest.raises(InvalidRequestError, match="positive"):
        PhysicsModel.fit(inputs, energy)


def test_expert_terms_slow_and_charge_moe_requests_only() -> None:
    points = _with_moe(40, seed=2)
    inputs = PhysicsInputs.of_points(points)
    moe = np.array([p.architecture.is_moe for p in points])
    assert moe.any() and (~moe).any()
    assert np.all(inputs.expert_s[~moe] == 0) and np.all(inputs.expert_s[moe, 0] > 0)
    # Raise a_e: the time of MoE requests grows by exactly a_e·T_e, that of dense ones not at all.
    slow = TimeCoefficients(**{**TIME.__dict__, "expert": TIME.expert + 1.0})
    fast, slowed = phase_seconds(inputs, TIME), phase_seconds(inputs, slow)
    np.testing.assert_allclose(slowed[~moe], fast[~moe])
    assert np.all(slowed[moe, 0] > fast[moe, 0])
    # P_e charges the expert kernels' extra seconds at its power, only on MoE requests.
    design = _energy_design(inputs, TIME)
    np.testing.assert_allclose(design[~moe, :, 1], 0.0)
    gpus = inputs.gpus[moe, None]
    np.testing.assert_allclose(design[moe, :, 1], TIME.expert * inputs.expert_s[moe] * gpus)


def test_coefficients_written_before_the_later_terms_still_load() -> None:
    inputs, joules, seconds = _synthetic(_with_moe(40), {"H100-SXM": H100, "A100-80GB": A100})
    blob = PhysicsModel.fit(inputs, joules, seconds).to_dict()
    later_time = ("expert", "sequence_s", "compute_8bit", "memory_8bit")
    for gpu in blob["gpus"].values():
        for name in later_time:
            del gpu["time"][name]
        for name in ("expert_w", "per_flop_8bit_j", "linked_w"):
            del gpu["energy"][name]
    for name in later_time:
        del blob["prior_time"][name]
    for name in ("expert", "flop_8bit", "linked"):
        del blob["prior_energy"][name]
    # Files of the per-routed-expert overhead hold a term this model no longer has.
    for gpu in blob["gpus"].values():
        gpu["time"]["expert_gemm_s"], gpu["energy"]["expert_gemm_w"] = 4.6e-6, 0.07
    blob["prior_time"]["expert_gemm_s"], blob["prior_energy"]["expert_gemm"] = 2e-6, 0.1
    old = PhysicsModel.from_dict(blob)
    # Such a model had no such terms: they read as zero, not as today's priors, and it ran
    # 8-bit compute at its 16-bit efficiencies and energy per operation.
    for gpu in old.gpus.values():
        assert gpu.time.expert == 0 and gpu.energy.expert_w == 0 and gpu.energy.linked_w == 0
        assert gpu.time.sequence_s == 0
        assert gpu.time.compute_8bit == gpu.time.compute
        assert gpu.time.memory_8bit == gpu.time.memory
        assert gpu.energy.per_flop_8bit_j == gpu.energy.per_flop_j
    assert old.prior_energy.expert == 0 and old.prior_energy.linked == 0
    assert old.prior_energy.flop_8bit == old.prior_energy.flop
    assert old.prior_time.compute_8bit == old.prior_time.compute
    energy, _ = old.predict(inputs)
    assert np.all(np.isfinite(energy))


def test_eight_bit_compute_has_its_own_efficiencies_and_energy_per_operation() -> None:
    arch = resolve_architecture("llama3.1-8b")
    setup = GpuSetup(get_gpu("H100-SXM"), 1)
    request = InferenceRequest(2, 1024, 64)
    sixteen = InferencePoint(arch, request, setup)
    eight = InferencePoint(arch, request, setup, W8A8)
    inputs = PhysicsInputs.of_points([sixteen, eight])
    assert inputs.compute8_s[0].tolist() == [0.0, 0.0] and inputs.flops8[0].tolist() == [0.0, 0.0]
    assert inputs.compute_s[1].tolist() == [0.0, 0.0] and inputs.flops[1].tolist() == [0.0, 0.0]
    # The same operations; the roofline runs the 8-bit ones at twice the peak, over half the bytes.
    np.testing.assert_allclose(inputs.flops8[1], inputs.flops[0])
    np.testing.assert_allclose(inputs.compute8_s[1], inputs.compute_s[0] / 2, rtol=0.05)
    assert np.all(inputs.memory8_s[1] < inputs.memory_s[0])
    # The datasheet scale is the 16-bit one for both rows.
    np.testing.assert_array_equal(inputs.scale[0], inputs.scale[1])
    slow = TimeCoefficients(**{**TIME.__dict__, "compute_8bit": TIME.compute_8bit + 1.0})
    base_s, slow_s = phase_seconds(inputs, TIME), phase_seconds(inputs, slow)
    assert base_s[0].tolist() == slow_s[0].tolist()  # 16-bit rows do not see it
    assert slow_s[1, 0] > base_s[1, 0]
    dear = dataclasses.replace(H100, per_flop_8bit_j=H100.per_flop_8bit_j * 2)
    base_j = _energy_design(inputs, TIME) @ H100.as_array()
    dear_j = _energy_design(inputs, TIME) @ dear.as_array()
    assert base_j[0].tolist() == dear_j[0].tolist()
    assert np.all(dear_j[1] > base_j[1])


def test_each_sequence_of_the_batch_adds_its_set_up_to_the_prefill() -> None:
    arch = resolve_architecture("llama3.1-8b")
    gpu = GpuSetup(get_gpu("H100-SXM"), 1)
    one, four = (InferencePoint(arch, InferenceRequest(b, 64, 2), gpu) for b in (1, 4))
    inputs = PhysicsInputs.of_points([one, four])
    assert inputs.sequences.tolist() == [1.0, 4.0]
    slow = TimeCoefficients(**{**TIME.__dict__, "sequence_s": TIME.sequence_s + 0.1})
    added = phase_seconds(inputs, slow) - phase_seconds(inputs, TIME)
    np.testing.assert_allclose(added, [[0.1, 0.0], [0.4, 0.0]], atol=1e-9)


def test_q_and_k_norms_are_two_more_launches_per_layer_and_pass() -> None:
    gpu = GpuSetup(get_gpu("H100-SXM"), 1)
    request = InferenceRequest(2, 100, 11)  # one prefill pass and ten decode passes
    names = ("qwen3-1.7b", "olmo-2-7b", "llama3.1-8b")  # per-head, whole-projection, none
    points = [InferencePoint(resolve_architecture(n), request, gpu) for n in names]
    counts = kernel_counts(points)
    graph_calls = (counts.calls * counts.present).sum(axis=1)[:, None] * np.array([1.0, 10.0])
    extra = PhysicsInputs.of(counts, ["H100-SXM"] * 3).kernel_calls - graph_calls
    layers = np.array([p.architecture.num_layers for p in points], dtype=float)
    np.testing.assert_allclose(extra[:2], 2 * layers[:2, None] * np.array([1.0, 10.0]))
    np.testing.assert_allclose(extra[2], 0.0)


def test_a_group_of_several_gpus_draws_the_linked_power_on_each() -> None:
    arch = resolve_architecture("llama3.1-8b")
    request = InferenceRequest(1, 512, 64)
    one, two = (InferencePoint(arch, request, GpuSetup(get_gpu("H100-SXM"), tp)) for tp in (1, 2))
    inputs = PhysicsInputs.of_points([one, two])
    seconds = phase_seconds(inputs, TIME)
    unlinked = dataclasses.replace(H100, linked_w=0.0)
    extra = _energy_design(inputs, TIME) @ (H100.as_array() - unlinked.as_array())
    assert extra[0].tolist() == [0.0, 0.0]  # one GPU: no link to draw on
    np.testing.assert_allclose(extra[1], 2 * H100.linked_w * seconds[1])


@pytest.mark.parametrize("multi_gpu_only", [False, True])
def test_the_linked_power_stays_at_its_datasheet_share(multi_gpu_only: bool) -> None:
    """A fit never moves the linked power, with or without single-GPU rows beside the groups."""
    points = _with_moe(120, seed=3)
    if multi_gpu_only:
        points = [p for p in points if p.setup.count > 1]
    truth = {"H100-SXM": dataclasses.replace(H100, linked_w=60.0), "A100-80GB": A100}
    inputs, joules, seconds = _synthetic(points, truth)
    model = PhysicsModel.fit(inputs, joules, seconds, prior_strength=1e-9)
    assert model.prior_energy.linked == pytest.approx(DATASHEET_PRIOR[1].linked)
    for gpu, tdp_w in (("H100-SXM", 700.0), ("A100-80GB", 400.0)):
        assert model.gpus[gpu].energy.linked_w == pytest.approx(0.05 * tdp_w)
        # The rest of the energy is fitted around it: the rows still come out close.
        rows = np.flatnonzero(inputs.gpu_type == gpu)
        energy, _ = model.predict(inputs.subset(rows))
        np.testing.assert_allclose(energy.sum(axis=1), joules[rows].sum(axis=1), rtol=0.1)
