"""Benchmark `llmco2 evaluate`: every default method on every split of ~1,000 points.

The points are drawn by the campaign sampler from priors like the real campaigns' (ten catalog
architectures and 30 perturbed shapes of them, H200 and H100 at TP 1, 2 and 4, the Azure request
prior) and labelled by the simulated twin with 3 % repeat noise: what is timed is the evaluation,
whose cost depends on the number of points, shapes and folds, not on where the labels came from.
Prints a table (per split and method: folds, CPU-seconds of fitting summed over the folds, MAPE)
and the wall time of the whole evaluation, and writes
``experiments/benchmarks/results/evaluate_speed.json``.

    python experiments/benchmarks/evaluate_speed.py [--points 1000] [--jobs 2] [--shape-folds K]
        [--methods M,...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from featurize import get_gpu
from gnn.dataset import LabelledData
from gnn.evaluation import evaluate
from gnn.names import DEFAULT_METHODS, REAL_DATA_EPOCHS, REAL_DATA_PATIENCE, SPLIT_NAMES
from gnn.training import TrainConfig
from llmco2.version import code_version
from orchestrator.config import parse_config
from orchestrator.sampling import PointSampler
from workers.engines.simulated import TwinInputs, TwinParameters, twin_costs

RESULTS = Path(__file__).resolve().parent / "results" / "evaluate_speed.json"

#: The bar: all splits on ~1,000 points within this on the 2-core machine.
TARGET_S = 15 * 60

PRIORS: dict[str, Any] = {
    "architectures": {
        "models": ["qwen2-0.5b", "qwen2-1.5b", "qwen2-7b", "gemma-2b", "gemma-7b", "gemma-2-2b",
                   "gemma-2-9b", "llama3.1-8b", "mixtral-8x7b", "gemma-2-27b"],
        "perturbed_fraction": 0.5,
        "perturbed_variants": 30,
        "perturbation": {"num_layers": 0.5, "intermediate_size": 0.3},
    },
    "requests": {"batch": [1, 4], "max_context": 2048, "max_generated": 512},
    "gpus": {"types": ["H200", "H100-SXM"], "tp": [1, 4]},
}  # fmt: skip


def labelled_points(count: int, seed: int, noise: float = 0.03) -> LabelledData:
    """``count`` sampled points with twin energies and latencies (repeat noise ``noise``)."""
    config = parse_config(
        {"name": "evaluate-speed", "engine": "simulated", "seed": seed, "priors": PRIORS},
        "benchmark",
    )
    gpus = [get_gpu(name) for name in PRIORS["gpus"]["types"]]
    rng = np.random.default_rng(seed)
    points = PointSampler(config, gpus).sample(count, rng)
    rows: list[dict[str, Any]] = []
    for point in points:
        cost = twin_costs(TwinInputs.of([point]), TwinParameters.for_gpu(point.setup.gpu))[0]
        prefill, decode = cost[2:4] * np.exp(rng.normal(0.0, noise, size=2))
        rows.append(
            {
                "prefill_energy_j": float(prefill),
                "energy_j": float(prefill + decode),
                "prefill_latency_s": float(cost[0]),
                "latency_s": float(cost[0] + cost[1]),
                "simulated": True,
            }
        )
    return LabelledData.from_rows(list(zip(points, rows, strict=True)), "twin sample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shape-folds",
        type=int,
        default=None,
        help="folds of whole shapes (default: leave one shape out)",
    )
    parser.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS), help="comma-separated (default: evaluate's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.perf_counter()
    data = labelled_points(args.points, args.seed)
    build_s = time.perf_counter() - started
    # What `llmco2 evaluate` trains with by default.
    config = TrainConfig(epochs=REAL_DATA_EPOCHS, patience=REAL_DATA_PATIENCE, seed=args.seed)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = evaluate(data, methods, SPLIT_NAMES, train_config=config, jobs=args.jobs,
                      shape_folds=args.shape_folds)  # fmt: skip
    shapes = len(set(data.model_name.tolist()))
    folds = "one shape per fold" if args.shape_folds is None else f"{args.shape_folds} shape folds"
    print(f"{len(data)} points, {shapes} shapes ({folds}), {args.jobs} jobs; "
          f"data and graphs {build_s:.1f} s")  # fmt: skip
    print(f"{'split':<8} {'method':<22} {'folds':>5} {'CPU s':>8} {'MAPE %':>7}")
    for r in result.results:
        print(f"{r.split:<8} {r.method:<22} {len(r.by_fold):>5} {r.fit_seconds:>8.1f} "
              f"{r.overall.mape:>7.1f}")  # fmt: skip
    cpu_s = sum(r.fit_seconds for r in result.results)
    print(f"fits: {cpu_s:.0f} CPU-s over {args.jobs} workers")
    verdict = "within" if result.seconds <= TARGET_S else "over"
    print(f"evaluate: {result.seconds:.0f} s wall ({verdict} the {TARGET_S} s bar)")
    document = {
        "code_version": code_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "points": len(data),
        "shapes": shapes,
        "jobs": args.jobs,
        "shape_folds": args.shape_folds,
        "train_config": {"epochs": config.epochs, "patience": config.patience},
        "methods": methods,
        "splits": list(SPLIT_NAMES),
        "skipped_splits": result.skipped,
        "data_and_graphs_s": build_s,
        "evaluate_s": result.seconds,
        "target_s": TARGET_S,
        "fit_cpu_s": {f"{r.split}/{r.method}": r.fit_seconds for r in result.results},
        "summary": result.summary(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
