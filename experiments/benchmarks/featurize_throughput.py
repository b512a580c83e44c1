"""Benchmark: featurising many requests (kernel counts, roofline, graph features, PyG graphs).

Samples N points over the catalog's architectures, its GPUs, TP 1/2/4 where the heads allow it,
and requests with prompt and output lengths from heavy-tailed distributions, then times each
stage. Prints a table and writes JSON (machine, stage timings, requests/s).

    python experiments/benchmarks/featurize_throughput.py [--points 50000] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from featurize import (
    GpuCatalog,
    GpuSetup,
    InferencePoint,
    InferenceRequest,
    PointArrays,
    Precision,
    catalog_models,
    kernel_counts,
)
from featurize.graphs import build_graphs, graph_arrays

DEFAULT_OUT = Path(__file__).parent / "results" / "featurize_throughput.json"


def sample_points(count: int, seed: int) -> list[InferencePoint]:
    rng = np.random.default_rng(seed)
    archs = [m.architecture for m in catalog_models()]
    gpus = list(GpuCatalog.builtin())
    precisions = [Precision(), Precision(8, 16, 16), Precision(8, 8, 8), Precision(4, 16, 16)]
    points: list[InferencePoint] = []
    while len(points) < count:
        arch = archs[rng.integers(len(archs))]
        tp = int(rng.choice([1, 2, 4]))
        if arch.num_heads % tp or (arch.num_kv_heads % tp and tp % arch.num_kv_heads):
            continue
        request = InferenceRequest(
            int(rng.integers(1, 5)),
            int(np.clip(rng.lognormal(6.9, 0.8), 1, 8192)),
            int(np.clip(rng.lognormal(3.5, 1.2), 1, 2048)),
        )
        points.append(
            InferencePoint(
                arch,
                request,
                GpuSetup(gpus[rng.integers(len(gpus))], tp),
                precisions[rng.integers(len(precisions))],
                bool(rng.random() < 0.9),
            )
        )
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    points = sample_points(args.points, args.seed)
    stages: dict[str, float] = {}
    start = time.perf_counter()
    arrays = PointArrays.from_points(points)
    stages["gather inputs"] = time.perf_counter() - start
    start = time.perf_counter()
    counts = kernel_counts(arrays)
    stages["kernel counts"] = time.perf_counter() - start
    start = time.perf_counter()
    counts.roofline()
    stages["roofline"] = time.perf_counter() - start
    start = time.perf_counter()
    features = graph_arrays(counts)
    stages["graph features"] = time.perf_counter() - start
    start = time.perf_counter()
    graphs = build_graphs(features)
    stages["PyG Data objects"] = time.perf_counter() - start
    assert len(graphs) == len(points)
    # graph_arrays recomputes the roofline internally, so the end-to-end path is timed apart.
    start = time.perf_counter()
    build_graphs(points)
    end_to_end = time.perf_counter() - start

    n = len(points)
    print(f"featurize benchmark: {n} requests, {os.cpu_count()} CPUs, {platform.processor()}")
    print(f"{'stage':<20}{'seconds':>10}{'requests/s':>14}")
    for stage, seconds in stages.items():
        print(f"{stage:<20}{seconds:>10.3f}{n / seconds:>14,.0f}")
    print(f"{'end to end':<20}{end_to_end:>10.3f}{n / end_to_end:>14,.0f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "featurize_throughput",
        "points": n,
        "seed": args.seed,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "stage_seconds": stages,
        "end_to_end_seconds": end_to_end,
        "end_to_end_requests_per_s": n / end_to_end,
        "counts_requests_per_s": n / stages["kernel counts"],
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
