from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gnn.baselines import (
    GnnMethod,
    HybridMethod,
    LLMCarbonMethod,
    NetworkShape,
    PhysicsMethod,
    RandomForestMethod,
    make_methods,
    training_groups,
)
from gnn.features import FeatureView
from gnn.metrics import mape
from gnn.names import METHOD_NAMES
from gnn.training import TrainConfig

QUICK = TrainConfig(epochs=15, patience=15, seed=0, correction_epochs=15)


def test_llmcarbon_recovers_an_efficiency_per_gpu_type(twin_data: Any) -> None:
    data = twin_data
    ideal = LLMCarbonMethod._ideal_energy(data)
    efficiency = np.where(data.gpu_type == "H100-SXM", 0.4, 0.25)
    data_like = type(data)(**{**data.__dict__, "total_j": ideal / efficiency})
    method = LLMCarbonMethod()
    everything = np.arange(len(data))
    method.fit(data_like, everything)
    assert method.log_efficiency["H100-SXM"] == pytest.approx(np.log(0.4))
    assert method.log_efficiency["A100-80GB"] == pytest.approx(np.log(0.25))
    predicted = method.predict(data_like, everything)
    np.testing.assert_allclose(predicted[:, 2], data_like.total_j, rtol=1e-9)
    assert np.isnan(predicted[:, :2]).all()  # the equation has no phases


def test_llmcarbon_uses_the_global_efficiency_for_an_unseen_gpu(twin_data: Any) -> None:
    method = LLMCarbonMethod()
    h100 = np.flatnonzero(twin_data.gpu_type == "H100-SXM")
    a100 = np.flatnonzero(twin_data.gpu_type == "A100-80GB")
    method.fit(twin_data, h100)
    ideal = LLMCarbonMethod._ideal_energy(twin_data)[a100]
    expected = ideal / np.exp(method.global_log_efficiency)
    np.testing.assert_allclose(method.predict(twin_data, a100)[:, 2], expected)


def test_random_forest_learns_the_twin(twin_data: Any) -> None:
    method = RandomForestMethod(trees=100)
    train, test = np.arange(70), np.arange(70, 90)
    method.fit(twin_data, train)
    predicted = method.predict(twin_data, test)
    assert predicted.shape == (20, 3)
    assert mape(predicted[:, 2], twin_data.total_j[test]) < 60
    assert RandomForestMethod.features(twin_data).shape[0] == len(twin_data)


def test_gnn_without_phase_split_answers_totals_only(twin_data: Any) -> None:
    method = GnnMethod("nnlqp", FeatureView(False, False), QUICK, NetworkShape(hidden=32))
    method.fit(twin_data, np.arange(60))
    predicted = method.predict(twin_data, np.arange(60, 90))
    assert np.isnan(predicted[:, :2]).all()
    assert np.isfinite(predicted[:, 2]).all() and (predicted[:, 2] > 0).all()


def test_gnn_shape_reaches_the_network(twin_data: Any) -> None:
    method = GnnMethod("gnn", FeatureView(), QUICK, NetworkShape(hidden=24, graph_layers=3))
    method.fit(twin_data, np.arange(40))
    assert method.predictor is not None
    assert method.predictor.model.config.hidden == 24
    assert len(method.predictor.model.convs) == 3


def test_make_methods_builds_every_named_method() -> None:
    methods = make_methods(METHOD_NAMES, QUICK)
    assert [m.name for m in methods] == list(METHOD_NAMES)


def test_physics_and_hybrid_methods_predict_phases_and_latency(twin_data: Any) -> None:
    train, test = np.arange(60), np.arange(60, 90)
    for method in (PhysicsMethod(), HybridMethod("llmco2", config=QUICK)):
        method.fit(twin_data, train)
        energy = method.predict(twin_data, test)
        latency = method.predict_latency(twin_data, test)
        assert energy.shape == (30, 3) and latency.shape == (30, 2)
        assert np.isfinite(energy).all() and (energy[:, 0] > 0).all()
        np.testing.assert_allclose(energy[:, 2], energy[:, :2].sum(axis=1))
        assert (latency[:, 0] > 0).all()


def test_hybrid_ablations_change_what_the_correction_sees() -> None:
    by_name = {m.name: m for m in make_methods(METHOD_NAMES, QUICK)}

    def settings(name: str) -> Any:
        method = by_name[name]
        assert isinstance(method, HybridMethod)
        return method.settings

    assert settings("llmco2").view == FeatureView(True, True)
    assert settings("llmco2-no-roofline").view == FeatureView(True, False)
    assert settings("llmco2-no-phases").view == FeatureView(False, False)
    assert settings("llmco2-unregularised").bound == 0
    assert settings("llmco2-unregularised").penalty == 0
    assert settings("llmco2-plain-mean").agreement == 0 < settings("llmco2").agreement


def test_methods_that_train_the_same_networks_share_one_fit(twin_data: Any) -> None:
    groups = training_groups(
        ["physics", "llmco2", "llmco2-no-roofline", "llmco2-plain-mean", "gnn"]
    )
    assert groups == [
        ("physics",), ("llmco2", "llmco2-plain-mean"), ("llmco2-no-roofline",), ("gnn",)
    ]  # fmt: skip
    mean_of, shrunk = make_methods(["llmco2-plain-mean", "llmco2"], QUICK)
    assert isinstance(mean_of, HybridMethod) and isinstance(shrunk, HybridMethod)
    shrunk.fit(twin_data, np.arange(60))
    mean_of.adopt(shrunk)
    assert mean_of.predictor is not None and shrunk.predictor is not None
    pairs = zip(mean_of.predictor.networks, shrunk.predictor.networks, strict=True)
    assert all(mine is theirs for mine, theirs in pairs)
    assert mean_of.predictor.settings.agreement == 0 < shrunk.predictor.settings.agreement
    # The same networks combined two ways: the plain mean and the shrunk one differ.
    test = np.arange(60, 90)
    assert not np.allclose(mean_of.predict(twin_data, test), shrunk.predict(twin_data, test))
    roofline = make_methods(["llmco2-no-roofline"], QUICK)[0]
    assert isinstance(roofline, HybridMethod)
    with pytest.raises(AssertionError, match="other networks"):
        roofline.adopt(shrunk)
