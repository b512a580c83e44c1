"""The strategy benchmark runs Algorithm 1 per strategy and reports comparable numbers."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_benchmark_runs_every_strategy_and_can_be_resummarised(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "experiments/benchmarks/strategy_benchmark.py", "--seeds", "1",
        "--initial", "30", "--per-round", "15", "--neighbours", "5", "--budget", "60",
        "--epochs", "6", "--patience", "6", "--evaluation", "40", "--target", "0.01",
        "--jobs", "2", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    strategies = {"random", "focused", "disagreement", "diverse", "cost-aware", "oracle"}
    assert {r["strategy"] for r in data["runs"]} == strategies
    for run in data["runs"]:
        counts = [count for count, _ in run["curve"]]
        # cost-aware's round 0: 30 // 16 = one engine, filled to --points-per-engine (16).
        first = 16 if run["strategy"] == "cost-aware" else 30
        assert counts[0] == first and counts == sorted(counts) and counts[-1] <= 60
        assert run["reached_at"] is None  # a 0.01 % target is out of reach
    for row in data["summary"].values():
        assert row["median_measurements"] == 60  # unreached runs count as the budget
        assert row["mape_at"]["60"] is not None
    unmet = {"half_of_random": False, "two_thirds_of_focused": False}
    assert data["bars"] == {"disagreement": unmet, "diverse": unmet, "cost-aware": unmet}
    again = subprocess.run(
        [sys.executable, "experiments/benchmarks/strategy_benchmark.py", "--resummarise", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0 and "evaluation MAPE % at equal measurements" in again.stdout


def test_gpu_seconds_count_engine_starts_and_filled_strategies_start_fewer(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    command = [
        sys.executable, "experiments/benchmarks/strategy_benchmark.py", "--seeds", "1",
        "--cost", "gpu-seconds", "--strategies", "random,random+fill8",
        "--initial", "16", "--per-round", "8", "--neighbours", "4", "--budget", "32",
        "--epochs", "4", "--patience", "4", "--evaluation", "20", "--target", "0.01",
        "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    runs = {r["strategy"]: r for r in data["runs"]}
    assert set(runs) == {"random", "random+fill8"}
    for run in runs.values():
        assert run["curve"][0][0] == 16 and run["reached_gpu_s"] is None
        assert len(run["gpu_curve"]) == len(run["curve"])
        assert run["gpu_curve"] == sorted(run["gpu_curve"]) and run["gpu_curve"][0] > 0
    # Round 0: 16 points on up to 16 engines against 2 filled engines of 8 points each; an
    # engine start holds its GPUs for 108 s or more on the twin.
    assert runs["random"]["gpu_curve"][0] > 5 * 108
    assert runs["random+fill8"]["gpu_curve"][0] < runs["random"]["gpu_curve"][0] / 2
    assert set(data["strategies"]) == {"random", "random+fill8"}
    assert all(row["seeds"] == 1 and row["reached"] == 0 for row in data["strategies"].values())


def test_the_unseen_shapes_yardstick_holds_only_shapes_no_campaign_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import orchestrator.strategies

    # Importing the benchmark registers its oracle: into a copy of the registry, here.
    monkeypatch.setattr(
        orchestrator.strategies, "STRATEGIES", dict(orchestrator.strategies.STRATEGIES)
    )
    from experiments.benchmarks import strategy_benchmark as bench
    from featurize import resolve_architecture

    args = argparse.Namespace(
        points_per_engine=4, initial=60, per_round=30, neighbours=10, target=5.0, budget=600,
        epochs=4, patience=4, predictor="llmco2", resident_engines=0, evaluation=60,
    )  # fmt: skip
    held_out = {resolve_architecture(m).name for m in bench.HELD_OUT_MODELS}
    sampled = {resolve_architecture(m).name for m in bench.PRIORS["architectures"]["models"]}
    assert not held_out & sampled
    args.yardstick = "unseen-shapes"
    unseen = bench.evaluation_points(args)
    assert len(unseen) == 60 and {p.architecture.name for p in unseen} <= held_out
    args.yardstick = "priors"
    drawn = {p.architecture.name.split("~")[0] for p in bench.evaluation_points(args)}
    assert drawn <= sampled and not drawn & held_out
