"""Training the LLMCO2 GNN on simulated labels: it learns, checkpoints round-trip, bad ones fail."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from featurize import GpuSetup, InferencePoint, Precision, catalog_models, check_fits, get_gpu
from featurize.graphs import build_graphs
from featurize.priors import RequestPrior
from gnn.metrics import mape
from gnn.training import Predictor, TrainConfig, train_predictor
from llmco2.errors import ConfigFileError, InfeasibleConfigError, InvalidRequestError
from workers.engines.simulated import TwinInputs, TwinParameters, twin_costs


def simulated_dataset(count: int, seed: int) -> tuple[list[InferencePoint], np.ndarray]:
    rng = np.random.default_rng(seed)
    archs = [m.architecture for m in catalog_models()]
    gpus = [get_gpu(name) for name in ("H100-SXM", "A100-80GB", "L40S")]
    requests = RequestPrior.azure().sample(count * 2, rng, max_context=4096)
    points = []
    for request in requests:
        point = InferencePoint(
            archs[rng.integers(len(archs))],
            request,
            GpuSetup(gpus[rng.integers(len(gpus))], int(rng.choice([1, 2]))),
            Precision(),
        )
        try:
            check_fits(point)
        except InfeasibleConfigError:
            continue
        points.append(point)
        if len(points) == count:
            break
    costs = twin_costs(TwinInputs.of(points), TwinParameters())
    return points, costs[:, 2:4]  # prefill J, decode J


@pytest.fixture(scope="module")
def trained() -> tuple[Predictor, list[object], np.ndarray]:
    points, labels = simulated_dataset(360, seed=1)
    graphs = build_graphs(points)
    predictor, history = train_predictor(
        graphs[:300], labels[:300, 0], labels[:300, 1], TrainConfig(epochs=80, seed=0)
    )
    assert history.validation_loss[history.best_epoch] < history.validation_loss[0]
    return predictor, graphs[300:], labels[300:]


def test_the_gnn_learns_held_out_energies(
    trained: tuple[Predictor, list[object], np.ndarray],
) -> None:
    predictor, graphs, labels = trained
    predicted = predictor.predict(graphs)
    total = labels[:, 0] + labels[:, 1]
    assert mape(predicted[:, 2], total) < 25.0  # vs ~100 % for a constant guess
    assert np.all(predicted[:, 0] > 0) and np.all(predicted[:, 2] >= predicted[:, 0])


def test_checkpoints_round_trip_and_load_weights_only(
    trained: tuple[Predictor, list[object], np.ndarray], tmp_path: Path
) -> None:
    predictor, graphs, _ = trained
    path = tmp_path / "model.pt"
    predictor.save(path)
    blob = torch.load(path, weights_only=True)
    assert blob["feature_schema_version"] == 1 and "code_version" in blob
    again = Predictor.load(path)
    np.testing.assert_allclose(again.predict(graphs), predictor.predict(graphs), rtol=1e-6)


def test_bad_checkpoints_are_refused(
    trained: tuple[Predictor, list[object], np.ndarray], tmp_path: Path
) -> None:
    predictor, _, _ = trained
    with pytest.raises(ConfigFileError, match="no predictor checkpoint"):
        Predictor.load(tmp_path / "missing.pt")
    corrupted = tmp_path / "corrupted.pt"
    corrupted.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigFileError, match="cannot read predictor checkpoint"):
        Predictor.load(corrupted)
    path = tmp_path / "old.pt"
    predictor.save(path)
    blob = torch.load(path, weights_only=True)
    blob["feature_schema_version"] = 0
    torch.save(blob, path)
    with pytest.raises(ConfigFileError, match="feature schema 0"):
        Predictor.load(path)


def test_tampered_checkpoints_are_refused_with_what_is_wrong(
    trained: tuple[Predictor, list[object], np.ndarray], tmp_path: Path
) -> None:
    predictor, _, _ = trained
    path = tmp_path / "model.pt"
    predictor.save(path)
    original = torch.load(path, weights_only=True)

    def tampered(change: Any) -> Path:
        blob = copy.deepcopy(original)
        change(blob)
        target = tmp_path / "tampered.pt"
        torch.save(blob, target)
        return target

    def nan_weight(blob: dict[str, Any]) -> None:
        name = next(k for k in blob["state_dict"] if k.endswith("weight"))
        blob["state_dict"][name][0] = float("nan")

    def wrong_shape(blob: dict[str, Any]) -> None:
        name = next(k for k in blob["state_dict"] if k.endswith("weight"))
        blob["state_dict"][name] = torch.zeros(3, 3)

    def inf_stat(blob: dict[str, Any]) -> None:
        blob["stats"]["x_std"][0] = float("inf")

    cases = [
        (nan_weight, "non-finite weights"),
        (inf_stat, "non-finite weights"),
        (wrong_shape, "malformed predictor checkpoint"),
        (lambda b: b["stats"].pop("u_mean"), "malformed predictor checkpoint"),
        (lambda b: b["stats"].update(u_std=torch.ones(2)), "does not match the network"),
        (lambda b: b.pop("model_config"), "malformed predictor checkpoint"),
    ]
    for change, words in cases:
        with pytest.raises(ConfigFileError, match=words) as info:
            Predictor.load(tampered(change))
        assert "\n" not in str(info.value)


def test_training_input_checks() -> None:
    with pytest.raises(InvalidRequestError, match="≥ 4 graphs"):
        train_predictor([], [], [])


def test_the_dense_forward_equals_the_pyg_forward(
    trained: tuple[Predictor, list[object], np.ndarray],
) -> None:
    from torch_geometric.loader import DataLoader

    from gnn.dense import DenseGraphs

    predictor, graphs, _ = trained
    dense = predictor.normalise(DenseGraphs.from_graphs(graphs))
    assert dense.structures > 1  # several structures (TP 1 and 2 at least)
    with torch.no_grad():
        by_dense = np.zeros((len(graphs), 2))
        by_dense[dense.order] = predictor.forward_dense(dense).numpy()
        batch = next(iter(DataLoader(list(graphs), batch_size=len(graphs))))
        s = predictor.stats
        edges = torch.cat([batch.edge_index, batch.edge_index.flip(0)], dim=1)
        x = torch.clamp(batch.x, s["x_low"], s["x_high"])
        u = torch.clamp(batch.u, s["u_low"], s["u_high"])
        by_pyg = predictor.model(
            (x - s["x_mean"]) / s["x_std"], edges, batch.batch, (u - s["u_mean"]) / s["u_std"]
        ).numpy()
    np.testing.assert_allclose(by_dense, by_pyg, rtol=1e-4, atol=1e-5)


def test_features_beyond_the_training_range_are_held_at_its_edge(
    trained: tuple[Predictor, list[object], np.ndarray], tmp_path: Path
) -> None:
    predictor, graphs, _ = trained
    s = predictor.stats
    beyond: list[Any] = copy.deepcopy(graphs[:5])
    edge: list[Any] = copy.deepcopy(graphs[:5])
    span_u, span_x = s["u_high"] - s["u_low"] + 1.0, s["x_high"] - s["x_low"] + 1.0
    for far, near in zip(beyond, edge, strict=True):
        far.u = (s["u_high"] + 100 * span_u).expand_as(far.u).clone()
        near.u = s["u_high"].expand_as(near.u).clone()
        far.x = (s["x_low"] - 100 * span_x).expand_as(far.x).clone()
        near.x = s["x_low"].expand_as(near.x).clone()
    np.testing.assert_allclose(predictor.outputs(beyond), predictor.outputs(edge), rtol=1e-6)
    # A checkpoint written before the range was kept loads, and does not hold features to it.
    path = tmp_path / "older.pt"
    predictor.save(path)
    blob = torch.load(path, weights_only=True)
    for name in ("x_low", "x_high", "u_low", "u_high"):
        del blob["stats"][name]
    torch.save(blob, path)
    older = Predictor.load(path)
    assert "x_low" not in older.stats
    assert not np.allclose(older.outputs(beyond), older.outputs(edge))
    # Half a range is a tampered checkpoint.
    blob["stats"]["x_low"] = s["x_low"]
    torch.save(blob, path)
    with pytest.raises(ConfigFileError, match=r"feature ranges .* are incomplete"):
        Predictor.load(path)


def test_without_a_validation_share_every_graph_trains_the_whole_schedule() -> None:
    points, labels = simulated_dataset(60, seed=3)
    graphs = build_graphs(points)
    config = TrainConfig(epochs=12, patience=1, validation_fraction=0.0, seed=0)
    predictor, history = train_predictor(graphs, labels[:, 0], labels[:, 1], config)
    # No early stopping (patience 1 would otherwise cut a noisy run short), the last weights kept.
    assert len(history.train_loss) == 12 and history.best_epoch == 11
    assert history.validation_loss == []
    assert predictor.metadata == {"train_graphs": 60, "validation_graphs": 0}
    assert history.train_loss[-1] < history.train_loss[0]
