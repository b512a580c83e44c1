from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from featurize import GpuSetup, InferencePoint, InferenceRequest, get_gpu, resolve_architecture
from gnn.hybrid import (
    CorrectionSettings,
    HybridPredictor,
    Interval,
    agreed_corrections,
    checkpoint_from_bytes,
    train_hybrid,
)
from gnn.physics import PhysicsInputs
from gnn.training import Predictor, TrainConfig
from llmco2.errors import ConfigFileError, InvalidRequestError

QUICK = TrainConfig(epochs=25, patience=25, seed=0, correction_epochs=20)


@pytest.fixture(scope="module")
def hybrid(twin_data: Any) -> HybridPredictor:
    predictor = train_hybrid(twin_data, np.arange(70), QUICK, CorrectionSettings(hidden=32))
    predictor.interval = Interval(0.8, (-0.1, -0.2, -0.12), (0.08, 0.15, 0.1), 70)
    predictor.metadata = {"setups": ["1xH100-SXM"], "models": ["x"]}
    return predictor


def _physics(predictor: HybridPredictor, data: Any, index: np.ndarray) -> np.ndarray:
    energy, _ = predictor.physics.predict(data.physics_inputs.subset(index))
    return np.asarray(energy)


def test_corrections_stay_within_their_bound(hybrid: HybridPredictor, twin_data: Any) -> None:
    index = np.arange(len(twin_data))
    points = [twin_data.points[i] for i in index]
    energy = hybrid.predict_detailed(points).energy_j
    ratio = np.log(energy[:, :2] / _physics(hybrid, twin_data, index))
    decode = twin_data.decode_j > 0
    assert np.abs(ratio[:, 0]).max() <= hybrid.settings.bound + 1e-9
    assert np.abs(ratio[decode, 1]).max() <= hybrid.settings.bound + 1e-9
    np.testing.assert_allclose(energy[:, 2], energy[:, 0] + energy[:, 1])


def test_a_correction_regularised_to_zero_returns_the_analytical_answer(twin_data: Any) -> None:
    frozen = train_hybrid(
        twin_data, np.arange(70), QUICK, CorrectionSettings(penalty=1e7, hidden=16)
    )
    index = np.arange(70, 90)
    physics = _physics(frozen, twin_data, index)
    energy = frozen.predict_detailed([twin_data.points[i] for i in index]).energy_j
    np.testing.assert_allclose(energy[:, 0], physics[:, 0], rtol=2e-3)
    decode = twin_data.decode_j[index] > 0
    np.testing.assert_allclose(energy[decode, 1], physics[decode, 1], rtol=2e-3)


def test_the_correction_improves_on_the_physics_where_it_was_trained(twin_data: Any) -> None:
    from gnn.metrics import mape

    trained = train_hybrid(
        twin_data, np.arange(90), TrainConfig(epochs=120, patience=120), CorrectionSettings()
    )
    index = np.arange(90)
    physics = _physics(trained, twin_data, index).sum(axis=1)
    hybrid = trained.predict_detailed(list(twin_data.points)).energy_j[:, 2]
    assert mape(hybrid, twin_data.total_j) < mape(physics, twin_data.total_j)


def test_the_interval_brackets_the_prediction(hybrid: HybridPredictor, twin_data: Any) -> None:
    out = hybrid.predict_detailed(list(twin_data.points[:10]))
    assert np.all(out.low_j[:, 2] < out.energy_j[:, 2])
    assert np.all(out.energy_j[:, 2] < out.high_j[:, 2])
    np.testing.assert_allclose(out.high_j[:, 2] / out.energy_j[:, 2], np.exp(0.1))
    ratios = np.log(np.array([[0.9, 1.0, 1.1]] * 5 + [[1.2, 0.8, np.nan]] * 5))
    interval = Interval.of(ratios, 0.8)
    assert interval.low[0] == pytest.approx(np.quantile(ratios[:, 0], 0.1))
    assert interval.high[2] == pytest.approx(np.log(1.1))  # NaN rows left out


def test_torch_and_portable_files_round_trip(
    hybrid: HybridPredictor, twin_data: Any, tmp_path: Path
) -> None:
    points = list(twin_data.points[:25])
    expected = hybrid.predict_detailed(points)
    for name in ("h.pt", "h.npz"):
        hybrid.save(tmp_path / name)
        loaded = HybridPredictor.load(tmp_path / name)
        got = loaded.predict_detailed(points)
        np.testing.assert_allclose(got.energy_j, expected.energy_j, rtol=1e-4)
        np.testing.assert_allclose(got.latency_s, expected.latency_s, rtol=1e-4)
        np.testing.assert_allclose(got.high_j, expected.high_j, rtol=1e-4)
        assert loaded.metadata == hybrid.metadata and loaded.interval == hybrid.interval
        assert loaded.physics.to_dict() == json.loads(json.dumps(hybrid.physics.to_dict()))


def test_checkpoint_bytes_round_trip_and_tell_hybrid_from_plain(
    hybrid: HybridPredictor, twin_data: Any, tmp_path: Path
) -> None:
    from gnn.training import Predictor, ensemble_energies

    points = list(twin_data.points[:25])
    loaded = checkpoint_from_bytes(hybrid.to_bytes())
    assert isinstance(loaded, HybridPredictor)
    np.testing.assert_allclose(
        loaded.predict_points(points), hybrid.predict_points(points), rtol=1e-5
    )
    assert isinstance(hybrid.network, Predictor)
    plain = checkpoint_from_bytes(hybrid.network.to_bytes())
    assert isinstance(plain, Predictor)
    # An ensemble may mix both kinds; each member answers as it would alone.
    energies = ensemble_energies([loaded, plain], points)
    np.testing.assert_allclose(energies[0], hybrid.predict_points(points)[:, 2], rtol=1e-5)
    np.testing.assert_allclose(energies[1], plain.predict_points(points)[:, 2], rtol=1e-5)
    assert ensemble_energies([loaded], []).shape == (1, 0)
    with pytest.raises(ConfigFileError, match="cannot read predictor checkpoint"):
        checkpoint_from_bytes(hybrid.to_bytes()[:100])
    hybrid.save(tmp_path / "h.npz")
    with pytest.raises(InvalidRequestError, match=r"only be saved as \.npz"):
        HybridPredictor.load(tmp_path / "h.npz").to_bytes()


def test_files_that_are_not_hybrid_predictors_are_refused(
    hybrid: HybridPredictor, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.pt"
    hybrid.network.save(plain)
    with pytest.raises(ConfigFileError, match="not an llmco2 hybrid"):
        HybridPredictor.load(plain)
    with pytest.raises(ConfigFileError, match="no predictor"):
        HybridPredictor.load(tmp_path / "missing.pt")
    path = tmp_path / "h.pt"
    hybrid.save(path)
    blob = torch.load(path, weights_only=True)
    blob["hybrid"] = json.dumps({"physics": {"format": "llmco2-physics"}})
    torch.save(blob, path)
    with pytest.raises(ConfigFileError, match="malformed"):
        HybridPredictor.load(path)
    npz = tmp_path / "h.npz"
    hybrid.save(npz)
    with np.load(npz) as stored:
        arrays = {k: stored[k] for k in stored.files}
    header = json.loads(str(arrays["__header__"]))
    header["feature_schema_version"] = -1
    arrays["__header__"] = np.array(json.dumps(header))
    np.savez(npz, **arrays)
    with pytest.raises(ConfigFileError, match="feature schema"):
        HybridPredictor.load(npz)


def test_an_unmeasured_gpu_type_falls_back_on_the_datasheet_prior(
    hybrid: HybridPredictor,
) -> None:
    points = [
        InferencePoint(resolve_architecture("llama3.1-8b"), InferenceRequest(1, 512, 64),
                       GpuSetup(get_gpu(gpu)))
        for gpu in ("L4", "H100-SXM")
    ]  # fmt: skip
    assert not hybrid.gpu_measured("L4") and hybrid.gpu_measured("H100-SXM")
    inputs = PhysicsInputs.of_points(points)
    prior = hybrid.physics.coefficients("L4", inputs.scale_of("L4"))
    assert prior.measured_points == 0
    out = hybrid.predict_detailed(points)
    assert np.isfinite(out.energy_j).all() and (out.energy_j[:, 2] > 0).all()
    physics_energy, physics_seconds = hybrid.physics.predict(inputs)
    # No correction on the type the networks never saw; the measured type keeps its own.
    np.testing.assert_allclose(out.energy_j[0, :2], physics_energy[0], rtol=1e-12)
    np.testing.assert_allclose(out.latency_s[0], physics_seconds[0], rtol=1e-12)
    assert abs(out.energy_j[1, 2] / physics_energy[1].sum() - 1) > 1e-4


def test_the_interval_widens_until_it_covers_held_out_groups() -> None:
    from gnn.hybrid import group_calibrated_level

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(8), 50)
    biased = rng.normal(0, 0.03, 400) + rng.normal(0, 0.1, 8)[groups]  # a bias per group
    level = group_calibrated_level(biased, groups, 0.8)
    assert 0.8 < level <= 0.99
    exchangeable = rng.normal(0, 0.1, 400)
    assert group_calibrated_level(exchangeable, groups, 0.8) < level
    interval = Interval.of(np.stack([biased] * 3, axis=1), 0.8, groups)
    assert interval.quantile_level == level and interval.level == 0.8
    assert interval.high[2] == pytest.approx(np.quantile(biased, (1 + level) / 2))


def test_extrapolation_follows_the_families_the_data_covers(
    hybrid: HybridPredictor, twin_data: Any
) -> None:
    from gnn.predict import extrapolates

    coverage = twin_data.coverage()
    assert set(coverage) == {"setups", "models", "families", "precisions", "gpu_precisions"}
    point = twin_data.points[0]
    family = point.architecture.family
    assert family in coverage["families"]
    hybrid.metadata = {**hybrid.metadata, **coverage}
    try:
        assert not extrapolates(hybrid, point)
        # A precision measured on other GPU types only is an extrapolation on this one.
        gpu, label = point.setup.gpu.id, point.precision.label
        assert label in coverage["gpu_precisions"][gpu]
        hybrid.metadata["gpu_precisions"] = {**coverage["gpu_precisions"], gpu: []}
        assert label in hybrid.metadata["precisions"] and extrapolates(hybrid, point)
        hybrid.metadata["gpu_precisions"] = coverage["gpu_precisions"]
        hybrid.metadata["families"] = [f for f in coverage["families"] if f != family]
        assert extrapolates(hybrid, point)
    finally:
        hybrid.metadata = {"setups": ["1xH100-SXM"], "models": ["x"]}


def test_an_ensemble_averages_its_networks_and_round_trips(twin_data: Any, tmp_path: Path) -> None:
    settings = CorrectionSettings(hidden=16, members=2)
    predictor = train_hybrid(twin_data, np.arange(70), QUICK, settings)
    assert len(predictor.networks) == 2
    points = twin_data.points[70:80]
    graphs = settings.view.apply(twin_data.graphs[70:80])
    each = []
    for network in predictor.networks:
        assert isinstance(network, Predictor)  # trained here: torch networks
        each.append(network.outputs(graphs))
    assert not np.allclose(each[0], each[1])  # two seeds, two networks
    np.testing.assert_allclose(
        predictor.corrections(points, twin_data.graphs[70:80]),
        agreed_corrections(np.stack(each), settings.agreement),
        rtol=1e-6,
    )
    expected = predictor.predict_points(points)
    for name in ("ensemble.pt", "ensemble.npz"):
        predictor.save(tmp_path / name)
        loaded = HybridPredictor.load(tmp_path / name)
        assert len(loaded.networks) == 2 and loaded.settings.members == 2
        np.testing.assert_allclose(loaded.predict_points(points), expected, rtol=1e-4)
        np.testing.assert_allclose(
            loaded.member_outputs(points, None), predictor.member_outputs(points, None), atol=1e-5
        )
        assert loaded.settings.agreement == settings.agreement
    with pytest.raises(InvalidRequestError):
        CorrectionSettings(members=0)
    with pytest.raises(InvalidRequestError):
        CorrectionSettings(agreement=-0.1)


def test_networks_that_disagree_fall_back_towards_the_physics() -> None:
    agree = np.array([[[0.2, -0.1]], [[0.2, -0.1]]])
    np.testing.assert_allclose(agreed_corrections(agree, 0.05), [[0.2, -0.1]])
    # A spread of `agreement` halves the mean; a larger one shrinks it further, towards 0.
    split = np.array([[[0.25, 0.0]], [[0.15, 0.1]]])  # std 0.05 on both outputs
    np.testing.assert_allclose(agreed_corrections(split, 0.05), [[0.1, 0.025]])
    wide = np.array([[[0.7, 0.0]], [[-0.3, 0.0]]])  # mean 0.2, std 0.5
    assert abs(agreed_corrections(wide, 0.05)[0, 0]) < 0.002
    np.testing.assert_allclose(agreed_corrections(wide, 0.0), [[0.2, 0.0]])  # off: plain mean
    one = np.array([[[0.3, 0.1]]])  # a single network has no spread to judge by
    np.testing.assert_allclose(agreed_corrections(one, 0.05), [[0.3, 0.1]])


def test_predictors_saved_without_an_agreement_keep_the_plain_mean(
    twin_data: Any, tmp_path: Path
) -> None:
    predictor = train_hybrid(
        twin_data, np.arange(70), QUICK, CorrectionSettings(hidden=16, members=2)
    )
    old = predictor._header()
    del old["settings"]["agreement"]
    loaded = HybridPredictor._from_header(predictor.networks, old, {}, tmp_path / "old.pt")
    points = twin_data.points[70:75]
    assert loaded.settings.agreement == 0.0
    np.testing.assert_allclose(
        loaded.corrections(points, None), predictor.member_outputs(points, None).mean(axis=0)
    )


def test_corrections_train_their_own_fixed_schedule_on_every_row(twin_data: Any) -> None:
    early = dataclasses.replace(QUICK, correction_epochs=0)
    for config, epochs, held in ((QUICK, QUICK.correction_epochs, 0), (early, QUICK.epochs, 10)):
        predictor = train_hybrid(twin_data, np.arange(70), config, CorrectionSettings(hidden=16))
        network = predictor.networks[0]
        assert isinstance(network, Predictor)
        assert network.train_config.epochs == epochs
        assert network.metadata["validation_graphs"] == held  # 15 % of 70 rows, or none
        assert network.metadata["train_graphs"] == 70 - held
