"""`llmco2 predict-trace`: a request log in, every request's prediction and the totals out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.llmco2.cli.test_cli import llmco2


def _azure_log(path: Path, rows: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    log = pd.DataFrame(
        {
            "TIMESTAMP": [f"2023-11-16 18:{i // 60:02d}:{i % 60:02d}" for i in range(rows)],
            "ContextTokens": rng.integers(10, 4000, rows),
            "GeneratedTokens": rng.integers(1, 600, rows),
        }
    )
    if path.suffix == ".csv":
        log.to_csv(path, index=False)
    else:
        log.to_parquet(path, index=False)
    return log


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_log_is_priced_row_by_row_and_summed(tmp_path: Path, suffix: str) -> None:
    log = _azure_log(tmp_path / f"log{suffix}")
    out = tmp_path / f"priced{suffix}"
    plot = tmp_path / "histogram.png"
    result = llmco2(
        "predict-trace", str(tmp_path / f"log{suffix}"), "--model", "qwen3-8b", "--gpu", "H200",
        "--region", "FRA", "--pue", "1.1", "--out", str(out), "--plot", str(plot), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    priced = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(priced["TIMESTAMP"].astype(str)) == list(log["TIMESTAMP"])
    assert (priced["total_j"] > 0).all() and len(priced) == 300
    summary = data["summary"]
    assert summary["requests"] == 300
    assert summary["total_kwh"] == pytest.approx(priced["total_j"].sum() / 3.6e6, rel=1e-9)
    assert summary["operational_kg"] == pytest.approx(
        priced["total_j"].sum() / 3.6e6 * 1.1 * data["carbon_intensity_g_per_kwh"] / 1000
    )
    assert data["model"] == "Qwen/Qwen3-8B" and data["method"] == "exact"
    assert plot.stat().st_size > 1000
    assert not list(tmp_path.glob("*.partial"))


def test_the_table_names_the_totals(tmp_path: Path) -> None:
    _azure_log(tmp_path / "log.csv", rows=20)
    result = llmco2("predict-trace", str(tmp_path / "log.csv"), "--model", "llama3.1-8b")
    assert result.returncode == 0, result.stderr
    assert "energy, all requests" in result.stdout and "kWh" in result.stdout
    assert "operational CO2eq not computed" in result.stdout


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("prompt,gen\n10,5\n-3,5\n", [], "row 1 of the log: prompt must be a whole number ≥ 1"),
        ("prompt,tokens\n10,5\n", [], "no generated-token column"),
        ("prompt,gen\n10,5\n", ["--model", "nope"], "unknown model 'nope'"),
        ("prompt,gen\n10,5\n", ["--out", "priced.txt"], "write a .csv or a .parquet file"),
        ("prompt,gen\n10,5\n", ["--plot", "h.jpg"], "name it *.png"),
        ("prompt,gen\n10,5\n", ["--region", "FRA", "--intensity", "3"], "not both"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_file_is_written(
    tmp_path: Path, content: str, extra: list[str], message: str
) -> None:
    (tmp_path / "log.csv").write_text(content)
    arguments = ["predict-trace", str(tmp_path / "log.csv"), "--model", "qwen3-8b", *extra]
    if "--model" in extra:
        arguments = ["predict-trace", str(tmp_path / "log.csv"), *extra]
    result = llmco2(*[a if a not in ("priced.txt",) else str(tmp_path / a) for a in arguments])
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_an_existing_output_is_kept_without_overwrite(tmp_path: Path) -> None:
    _azure_log(tmp_path / "log.csv", rows=5)
    out = tmp_path / "priced.csv"
    out.write_text("the user's own file\n")
    args = ("predict-trace", str(tmp_path / "log.csv"), "--model", "qwen3-8b", "--out", str(out))
    refused = llmco2(*args)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert out.read_text() == "the user's own file\n"
    replaced = llmco2(*args, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert len(pd.read_csv(out)) == 5


def test_a_missing_or_unreadable_log_is_a_clear_error(tmp_path: Path) -> None:
    missing = llmco2("predict-trace", str(tmp_path / "none.csv"), "--model", "qwen3-8b")
    assert missing.returncode == 2 and "no request log" in missing.stderr
    (tmp_path / "log.json").write_text("{}")
    other = llmco2("predict-trace", str(tmp_path / "log.json"), "--model", "qwen3-8b")
    assert other.returncode == 2 and ".csv or .parquet" in other.stderr
    (tmp_path / "bad.parquet").write_text("not parquet")
    broken = llmco2("predict-trace", str(tmp_path / "bad.parquet"), "--model", "qwen3-8b")
    assert broken.returncode == 2 and "cannot read the request log" in broken.stderr
