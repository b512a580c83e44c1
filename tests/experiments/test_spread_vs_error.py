"""The spread-vs-error benchmark compares a disagreement round's picks with random and oracle."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_spearman_is_a_rank_correlation(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = ROOT / "experiments" / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))  # it imports the strategy benchmark beside it
    spec = importlib.util.spec_from_file_location("spread_vs_error", folder / "spread_vs_error.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values = np.array([1.0, 5.0, 2.0, 9.0])
    assert module.spearman(values, values**3) == pytest.approx(1.0)  # monotone, any scale
    assert module.spearman(values, -values) == pytest.approx(-1.0)


def test_a_tiny_run_orders_random_taken_and_oracle_errors(tmp_path: Path) -> None:
    out = tmp_path / "spread.json"
    command = [
        sys.executable, "experiments/benchmarks/spread_vs_error.py", "--seeds", "1",
        "--points", "24", "--members", "2,3", "--pool", "40", "--take", "5", "--epochs", "3",
        "--patience", "3", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["members"] for r in rows] == [2, 3]
    for row in rows:
        assert -1.0 <= row["spearman"] <= 1.0
        # The K worst candidates are at least as wrong as any K, and as the pool on average.
        assert row["oracle_error"] >= row["taken_error"] and row["oracle_error"] >= row["pool_mape"]
