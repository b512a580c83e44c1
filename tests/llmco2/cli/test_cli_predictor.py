"""`llmco2 evaluate` and `llmco2 train` on a simulated campaign, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.llmco2.cli.test_cli import llmco2

QUICK = ["--epochs", "6", "--patience", "6", "--correction-epochs", "6"]


def test_evaluate_from_an_exported_folder_writes_the_report(
    twin_export: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = llmco2(
        "evaluate", "--data", str(twin_export), "--include-simulated", "--methods",
        "llmcarbon,llmco2", "--splits", "random,gpu", "--folds", "2", "--out", str(out), *QUICK,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "llmcarbon" in result.stdout and f"report: {out}" in result.stdout.replace("\n", "")
    report = (out / "report.md").read_text()
    assert "--methods llmcarbon,llmco2" in report  # the exact command
    assert (out / "scatter.png").exists() and (out / "error_cdf.png").exists()
    stored = json.loads((out / "results.json").read_text())
    assert {(r["method"], r["split"]) for r in stored["results"]} == {
        (m, s) for m in ("llmcarbon", "llmco2") for s in ("random", "gpu")
    }
    again = llmco2("evaluate", "--data", str(twin_export), "--include-simulated", "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr


def test_evaluate_from_the_campaign_database(
    twin_campaign: tuple[str, str], tmp_path: Path
) -> None:
    url, name = twin_campaign
    out = tmp_path / "r"
    result = llmco2(
        "evaluate", "--db", url, "--campaign", name, "--include-simulated", "--methods",
        "deepen-rf", "--splits", "family", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Leave one model family out" in (out / "report.md").read_text()


def test_train_with_hpo_then_predict_with_the_checkpoint(
    twin_campaign: tuple[str, str], tmp_path: Path
) -> None:
    url, name = twin_campaign
    checkpoint = tmp_path / "model.pt"
    args = ["train", "--db", url, "--campaign", name, "--include-simulated", "--hpo", "2",
            "--folds", "2", "--out", str(checkpoint), *QUICK]  # fmt: skip
    result = llmco2(*args)
    assert result.returncode == 0, result.stderr
    assert "2 trials, 2 new" in result.stdout and checkpoint.exists()
    resumed = llmco2(*args)  # the same command continues the study: nothing left to do
    assert resumed.returncode == 0 and "2 trials, 0 new" in resumed.stdout
    predicted = llmco2("predict", "qwen2-0.5b", "--gpu", "H100-SXM", "--model", str(checkpoint),
                       "--json")  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["predictions"][0]["total_j"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.pt")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate"], "exactly one of them"),
        (["evaluate", "--campaign", "x", "--data", "y"], "exactly one of them"),
        (["evaluate", "--data", "/nonexistent"], "holds no exported points.parquet"),
        (["train", "--data", "/nonexistent"], "holds no exported points.parquet"),
        (["evaluate", "--db", "sqlite:////nonexistent/x.db", "--campaign", "c"], ""),
        (["train", "--epochs", "0", "--data", "x"], "epochs"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = llmco2(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_real_rows_only_unless_asked(twin_export: Path) -> None:
    result = llmco2("evaluate", "--data", str(twin_export))
    assert result.returncode == 2 and "at least 10 are needed" in result.stderr


def test_unknown_method_and_hpo_without_a_study_database(twin_export: Path, tmp_path: Path) -> None:
    bad = llmco2("evaluate", "--data", str(twin_export), "--include-simulated", "--methods",
                 "oracle", "--out", str(tmp_path / "r"))  # fmt: skip
    assert bad.returncode == 2 and "unknown method 'oracle'" in bad.stderr
    assert not (tmp_path / "r").exists()
    no_study = llmco2("train", "--data", str(twin_export), "--include-simulated", "--hpo", "1")
    assert no_study.returncode == 2 and "--study-db" in no_study.stderr


def test_evaluate_json_is_one_document_by_split_and_method(
    twin_export: Path, tmp_path: Path
) -> None:
    result = llmco2(
        "evaluate", "--data", str(twin_export), "--include-simulated", "--methods",
        "llmcarbon,physics", "--splits", "shape,size,tp", "--out", str(tmp_path / "r"),
        "--json", "--jobs", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) <= {"shape", "size", "tp"} and "shape" in document
    for split in document.values():
        assert set(split) == {"llmcarbon", "physics"}
        for scores in split.values():
            assert {"mape", "eba10", "n"} <= set(scores)
    bad = llmco2("evaluate", "--data", str(twin_export), "--include-simulated", "--jobs", "0")
    assert bad.returncode == 2 and "--jobs" in bad.stderr
