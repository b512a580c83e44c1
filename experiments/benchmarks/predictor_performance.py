"""Benchmark the predictor: `llmco2 predict` start-up, batch prediction and training throughput.

Prints a table and writes ``experiments/benchmarks/results/predictor_performance.json``:

- start-up: wall time of a fresh ``llmco2 predict ... --json`` process (median of 5), the
  shipped NumPy predictor, no torch import;
- batch: requests per second of the NumPy predictor (median of 3 runs after a warm-up) and of
  the torch predictor (graph building included) on random requests over the catalog;
- training: wall time of training the GNN on 50,000 twin-labelled graphs on the CPU for a fixed
  number of epochs (and the time per epoch).

    python experiments/benchmarks/predictor_performance.py [--train-graphs 50000] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from featurize import GpuSetup, InferencePoint, InferenceRequest, check_fits, get_gpu
from featurize.models import catalog_models
from gnn.predict import default_predictor
from llmco2.errors import InfeasibleConfigError
from llmco2.version import code_version

RESULTS = Path(__file__).resolve().parent / "results" / "predictor_performance.json"


def requests(count: int, seed: int = 0) -> list[InferencePoint]:
    rng = np.random.default_rng(seed)
    models = [m.architecture for m in catalog_models()]
    gpus = [get_gpu(g) for g in ("H100-SXM", "H200", "A100-80GB", "L40S")]
    points: list[InferencePoint] = []
    while len(points) < count:
        point = InferencePoint(
            models[int(rng.integers(len(models)))],
            InferenceRequest(
                int(rng.integers(1, 9)), int(rng.integers(16, 4000)), int(rng.integers(1, 512))
            ),
            GpuSetup(gpus[int(rng.integers(len(gpus)))], int(rng.choice([1, 2, 4]))),
        )
        try:
            check_fits(point)
        except InfeasibleConfigError:
            continue
        points.append(point)
    return points


def startup_seconds(runs: int = 5) -> float:
    command = [sys.executable, "-m", "llmco2", "predict", "llama3.1-8b", "--gpu", "H200",
               "--prompt", "1500", "--gen", "129", "--region", "FRA", "--json"]  # fmt: skip
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _rate(predict: Any, points: list[InferencePoint], repeats: int = 3) -> float:
    """Requests per second: median of ``repeats`` timed runs after one warm-up."""
    predict(points[:500])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(points)
        times.append(time.perf_counter() - started)
    return len(points) / statistics.median(times)


def batch_rate(points: list[InferencePoint]) -> tuple[float, float]:
    numpy_rate = _rate(default_predictor().predict_points, points)
    from gnn.training import Predictor

    data = Path(__file__).resolve().parents[2] / "gnn" / "data" / "default_predictor.pt"
    torch_rate = _rate(Predictor.load(data).predict_points, points, repeats=1)
    return numpy_rate, torch_rate


def training_seconds(count: int, epochs: int) -> tuple[float, float]:
    from featurize.graphs import build_graphs
    from gnn.training import TrainConfig, train_predictor
    from workers.engines.simulated import twin_costs_of

    points = requests(count, seed=1)
    costs = twin_costs_of(points)
    started = time.perf_counter()
    graphs = build_graphs(points)
    built = time.perf_counter() - started
    config = TrainConfig(epochs=epochs, patience=epochs, batch_size=256, seed=0)
    started = time.perf_counter()
    train_predictor(graphs, costs[:, 2], costs[:, 3], config)
    return built, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--train-graphs", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    startup = startup_seconds()
    numpy_rate, torch_rate = batch_rate(requests(args.batch))
    built, trained = training_seconds(args.train_graphs, args.epochs)
    result = {
        "code_version": code_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "predict_startup_s": startup,
        "batch_requests": args.batch,
        "batch_numpy_requests_per_s": numpy_rate,
        "batch_torch_requests_per_s": torch_rate,
        "train_graphs": args.train_graphs,
        "train_epochs": args.epochs,
        "graph_build_s": built,
        "train_s": trained,
        "train_s_per_epoch": trained / args.epochs,
    }
    rows = [
        ("`llmco2 predict` one request, fresh process (median of 5)", f"{startup:.2f} s"),
        (f"batch, NumPy predictor ({args.batch:,} requests)", f"{numpy_rate:,.0f} req/s"),
        (f"batch, torch predictor ({args.batch:,} requests)", f"{torch_rate:,.0f} req/s"),
        (f"graphs built for training ({args.train_graphs:,})", f"{built:.1f} s"),
        (f"training, {args.epochs} epochs on {args.train_graphs:,} graphs", f"{trained:.0f} s"),
        ("training, per epoch", f"{trained / args.epochs:.1f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value:>14}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
