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
        "--epochs", "3", "--patience", "2", "--evaluation", "0.25", "--points-per-engine", "4",
        "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    held_out = set(data["held_out_rows"])
    assert data["pool"] + data["held_out"] == data["points"] and len(held_out) == data["held_out"]
    strategies = {"random", "focused", "disagreement", "diverse", "cost-aware"}
    assert {r["strategy"] for r in data["runs"]} == strategies
    for run in data["runs"]:
        chosen = run["chosen"]
        assert len(chosen) == len(set(chosen)) <= data["pool"]  # each point measured once
        assert not held_out & set(chosen)  # the yardstick is never chosen
        counts = [count for count, _ in run["curve"]]
        assert counts == sorted(counts) and counts[-1] == len(chosen)
        # cost-aware's round 0: 16 // 4 = 4 engine configurations, each filled up to 4.
        assert counts[0] == 16 if run["strategy"] != "cost-aware" else 2 <= counts[0] <= 16
    # Every strategy that chooses points starts from the same A points.
    starts = {tuple(r["chosen"][:16]) for r in data["runs"] if r["strategy"] != "cost-aware"}
    assert len(starts) == 1
    assert "| random |" in (tmp_path / "report.md").read_text()


def test_filled_strategies_choose_engines_and_every_run_counts_its_gpu_time(
    tmp_path: Path,
) -> None:
    from experiments.evaluation.pool_replay import round_gpu_seconds
    from storage.export import read_exported_points
    from workers.engines.simulated import engine_start_seconds

    command = [
        sys.executable, "experiments/evaluation/pool_replay.py", "experiments/data/real-h200",
        "experiments/data/real-h200-v2", "--seeds", "1", "--strategies", "random,random+fill8",
        "--initial", "24", "--per-round", "8", "--epochs", "3", "--patience", "2",
        "--budget", "40", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    runs = {r["strategy"]: r for r in data["runs"]}
    folders = [ROOT / "experiments/data/real-h200", ROOT / "experiments/data/real-h200-v2"]
    rows = [(p, r) for p, r in read_exported_points(folders)
            if r["prefill_energy_j"] is not None and r["energy_j"]]  # fmt: skip
    keys = [str(r["config_key"]) for _, r in rows]
    # random+fill8 starts from 24 // 8 = 3 chosen points, each engine filled up to 8 points.
    filled = runs["random+fill8"]
    first = filled["chosen"][: filled["curve"][0][0]]
    assert len({keys[i] for i in first}) <= 3 < 8 <= len(first)
    for run in runs.values():
        assert len(run["gpu_curve"]) == len(run["curve"])
        assert run["gpu_curve"] == sorted(run["gpu_curve"])
        # Round 0: one engine start per configuration and the points' recorded times.
        start = run["chosen"][: run["curve"][0][0]]
        assert run["gpu_curve"][0] == round_gpu_seconds(rows, start)
        starts = {keys[i]: rows[i][0] for i in start}
        assert run["gpu_curve"][0] > sum(engine_start_seconds(p) for p in starts.values())
    assert "GPU-hours each strategy" in (tmp_path / "report.md").read_text()
