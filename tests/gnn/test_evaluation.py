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

QUICK = TrainConfig(epochs=10, patience=10, seed=0)


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
        "report.md", "results.json", "scatter.png", "error_cdf.png"
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
