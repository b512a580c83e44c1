"""The pool replay runs the strategies on committed real data and never chooses held-out points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_pool_replay_chooses_only_pool_points(tmp_path: Path) -> None:
    command = [
        sys.executable, "experiments/evaluation/pool_replay.py", "experiments/data/real-h200",
        "--seeds", "1", "--initial", "16", "--per-round", "2", "--neighbours", "2",
        "--epochs", "3", "--patience", "2", "--evaluation", "0.25", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    held_out = set(data["held_out_rows"])
    assert data["pool"] + data["held_out"] == data["points"] and len(held_out) == data["held_out"]
    strategies = {"random", "focused", "disagreement", "diverse"}
    assert {r["strategy"] for r in data["runs"]} == strategies
    for run in data["runs"]:
        chosen = run["chosen"]
        assert len(chosen) == len(set(chosen)) <= data["pool"]  # each point measured once
        assert not held_out & set(chosen)  # the yardstick is never chosen
        counts = [count for count, _ in run["curve"]]
        assert counts[0] == 16 and counts == sorted(counts) and counts[-1] == len(chosen)
    # Every strategy starts from the same A points.
    assert len({tuple(r["chosen"][:16]) for r in data["runs"]}) == 1
    assert "| random |" in (tmp_path / "report.md").read_text()
