from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gnn.evaluation import count_fits, evaluate, make_splits
from gnn.report import write_report
from gnn.training import TrainConfig
from llmco2.errors import ExportError, InvalidRequestError
from llmco2.outputs import MARKER

QUICK = TrainConfig(epochs=10, patience=10, seed=0, correction_epochs=10)


def test_random_folds_partition_the_data(twin_data: Any) -> None:
    (split,) = make_splits(twin_data, ["random"], folds=4)
    tests = np.concatenate([f.test for f in split.folds])
    assert sorted(tests.tolist()) == list(range(len(twin_data)))
    for fold in split.folds:
        assert not set(fold.train.tolist()) & set(fold.test.tolist())
        assert len(fold.train) + len(fold.test) == len(twin_data)


def test_leave_one_out_splits_hold_out_each_value(twin_data: Any) -> None:
    family, gpu, tp = make_splits(twin_data, ["family", "gpu", "tp"])
    assert {f.label for f in family.folds} == set(twin_data.family.tolist())
    assert {f.label for f in gpu.folds} == {"A100-80GB", "H100-SXM"}
    assert {f.label for f in tp.folds} == {"1", "2"}
    for fold in gpu.folds:
        assert set(twin_data.gpu_type[fold.test].tolist()) == {fold.label}
        assert fold.label not in set(twin_data.gpu_type[fold.train].tolist())


def test_a_split_over_one_value_is_skipped_with_the_reason(twin_data: Any) -> None:
    h100 = twin_data.gpu_type == "H100-SXM"
    subset = type(twin_data)(**{
        k: (v[h100] if isinstance(v, np.ndarray) and len(v) == len(twin_data) else v)
        for k, v in twin_data.__dict__.items()
    })  # fmt: skip
    subset.points = [p for p, keep in zip(twin_data.points, h100, strict=True) if keep]
    (gpu,) = make_splits(subset, ["gpu"])
    assert gpu.folds == [] and gpu.skipped is not None and "H100-SXM" in gpu.skipped


def test_bad_split_method_and_fold_names(twin_data: Any) -> None:
    with pytest.raises(InvalidRequestError, match="unknown split"):
        make_splits(twin_data, ["sideways"])
    with pytest.raises(InvalidRequestError, match="folds"):
        make_splits(twin_data, ["random"], folds=1)
    with pytest.raises(InvalidRequestError, match="unknown method"):
        evaluate(twin_data, ["oracle"], ["random"])


def test_evaluate_predicts_every_point_once_per_split_and_writes_a_report(
    twin_data: Any, tmp_path: Path
) -> None:
    methods = ["llmcarbon", "deepen-rf", "nnlqp", "llmco2"]
    fits: list[tuple[str, str, str]] = []
    result = evaluate(
        twin_data, methods, ["random", "gpu"], folds=3, train_config=QUICK,
        on_fit=lambda *a: fits.append(a),
    )  # fmt: skip
    assert len(fits) == count_fits(twin_data, methods, ["random", "gpu"], 3) == 4 * (3 + 2)
    for r in result.results:
        assert np.isfinite(r.predicted[:, 2]).all()  # each point predicted by its held-out fold
        assert r.overall.count == len(twin_data)
        assert set(r.by_family) == set(twin_data.family.tolist())
    ours = result.get("llmco2", "random")
    assert ours is not None and ours.prefill is not None and ours.decode is not None
    assert result.get("llmcarbon", "random").prefill is None  # type: ignore[union-attr]

    folder = write_report(result, tmp_path / "report", "llmco2 evaluate --test")
    assert {p.name for p in folder.iterdir()} == {
        "report.md", "results.json", "scatter.png", "error_cdf.png", MARKER
    }  # fmt: skip
    text = (folder / "report.md").read_text()
    assert "llmco2 evaluate --test" in text and "Leave one GPU type out" in text
    assert "simulated" in text
    stored = json.loads((folder / "results.json").read_text())
    assert stored["points"] == len(twin_data) and len(stored["results"]) == 8
    with pytest.raises(ExportError, match="exists"):
        write_report(result, folder, "again")
    write_report(result, folder, "again", overwrite=True)
    assert "again" in (folder / "report.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_shape_and_size_splits_hold_out_exactly_their_groups(twin_data: Any) -> None:
    shape, size = make_splits(twin_data, ["shape", "size"], size_split_b=2.0)
    assert {f.label for f in shape.folds} == set(twin_data.model_name.tolist())
    for fold in shape.folds:
        assert set(twin_data.model_name[fold.test].tolist()) == {fold.label}
        assert fold.label not in set(twin_data.model_name[fold.train].tolist())
        assert len(fold.train) + len(fold.test) == len(twin_data)
    small = twin_data.size_b <= 2.0
    up, down = size.folds
    assert set(up.train.tolist()) == set(np.flatnonzero(small).tolist())
    assert set(up.test.tolist()) == set(np.flatnonzero(~small).tolist())
    assert set(down.train.tolist()) == set(up.test.tolist())
    assert set(down.test.tolist()) == set(up.train.tolist())
    (only_small,) = make_splits(twin_data, ["size"])  # every twin shape is below 9B
    assert only_small.folds == [] and "at most 9B" in str(only_small.skipped)


def test_shape_folds_hold_out_whole_shapes_each_once(twin_data: Any) -> None:
    shapes = set(twin_data.model_name.tolist())
    assert len(shapes) >= 3
    (grouped,) = make_splits(twin_data, ["shape"], shape_folds=2)
    assert len(grouped.folds) == 2
    held: list[str] = []
    for fold in grouped.folds:
        test_shapes = set(twin_data.model_name[fold.test].tolist())
        assert test_shapes and not test_shapes & set(twin_data.model_name[fold.train].tolist())
        assert len(fold.train) + len(fold.test) == len(twin_data)
        held += sorted(test_shapes)
    assert sorted(held) == sorted(shapes)  # every shape held out exactly once
    (plain,) = make_splits(twin_data, ["shape"], shape_folds=len(shapes))
    assert {f.label for f in plain.folds} == shapes  # as many folds as shapes: one each
    with pytest.raises(InvalidRequestError, match="--shape-folds must be ≥ 2"):
        make_splits(twin_data, ["shape"], shape_folds=1)
    result = evaluate(twin_data, ["physics"], ["shape"], shape_folds=2)
    assert result.shape_folds == 2 and len(result.results[0].by_fold) == 2
    assert result.results[0].fit_seconds > 0


def test_cross_conformal_coverage_uses_the_other_folds() -> None:
    from gnn.evaluation import Fold, cross_conformal_coverage

    rng = np.random.default_rng(0)
    measured = np.full(400, 100.0)
    predicted = measured / np.exp(rng.normal(0, 0.1, 400))  # exchangeable errors
    folds = [Fold(str(i), np.array([]), np.arange(i * 100, (i + 1) * 100)) for i in range(4)]
    coverage = cross_conformal_coverage(predicted, measured, folds, 0.8)
    assert coverage is not None and abs(coverage - 80) < 6
    biased = predicted.copy()
    biased[:100] /= 1.5  # one group far off: the others' interval misses it
    low = cross_conformal_coverage(biased, measured, folds, 0.8)
    assert low is not None and low < coverage - 5
    alone = cross_conformal_coverage(biased[:100], measured[:100], [folds[0]], 0.8)
    assert alone is None  # no other fold to calibrate on


def test_summary_and_parallel_fits_give_the_same_numbers(twin_data: Any) -> None:
    methods = ["llmcarbon", "physics"]
    serial = evaluate(twin_data, methods, ["shape", "tp"], train_config=QUICK)
    parallel = evaluate(twin_data, methods, ["shape", "tp"], train_config=QUICK, jobs=2)
    summary = serial.summary()
    assert set(summary) == {"shape", "tp"} and set(summary["shape"]) == set(methods)
    entry = summary["shape"]["physics"]
    assert {"mape", "eba10", "n", "coverage", "latency_mape"} <= set(entry)
    assert entry["n"] == len(twin_data) and entry["latency_mape"] is not None
    for split in ("shape", "tp"):
        for method in methods:
            a, b = serial.get(method, split), parallel.get(method, split)
            assert a is not None and b is not None
            np.testing.assert_allclose(a.predicted, b.predicted)
    physics = serial.get("physics", "shape")
    assert physics is not None
    assert set(physics.by_shape) == set(twin_data.model_name.tolist())
    assert set(physics.by_tp) == {"TP 1", "TP 2"}
    with pytest.raises(InvalidRequestError, match="jobs"):
        evaluate(twin_data, methods, ["shape"], jobs=0)
