"""Benchmark: pricing a request log of N rows (default 1,000,000) with `llmco2.predict_log`.

The log's prompt and output lengths are drawn log-uniform (2-8,000 and 1-1,000 tokens: every
row distinct enough that the grid is used); the time covers the whole call (validation, the
grid's predictions and reading every row off it). The grid's error is measured against exact
predictions of a random sample of the rows. Prints a table and writes JSON.

    python experiments/benchmarks/predict_log_speed.py [--rows 1000000] [--sample 3000] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from llmco2.request_log import predict_log

DEFAULT_OUT = Path(__file__).parent / "results" / "predict_log_speed.json"
DEPLOYMENTS = (
    ("llama3.1-8b", "H200", 1),
    ("qwen3-30b-a3b", "H100-SXM", 1),
    ("qwen2-72b", "H200", 4),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    log = pd.DataFrame(
        {
            "ContextTokens": np.exp(rng.uniform(np.log(2), np.log(8000), args.rows)).astype(int),
            "GeneratedTokens": np.exp(rng.uniform(0, np.log(1000), args.rows)).astype(int),
        }
    )
    sample = log.sample(args.sample, random_state=1)
    rows = []
    for model, gpu, tp in DEPLOYMENTS:
        start = time.perf_counter()
        priced = predict_log(log, model=model, gpu=gpu, tp=tp, region="FRA")
        seconds = time.perf_counter() - start
        exact = predict_log(sample, model=model, gpu=gpu, tp=tp, region="FRA", exact=True)
        errors = {}
        for column in ("total_j", "latency_s"):
            error = np.abs(priced.loc[sample.index, column] / exact[column] - 1)
            errors[column] = {
                "median": float(np.median(error)),
                "p99": float(np.percentile(error, 99)),
                "max": float(error.max()),
            }
        rows.append(
            {
                "model": model, "gpu": gpu, "tp": tp, "rows": args.rows, "seconds": seconds,
                "rows_per_s": args.rows / seconds, "grid": priced.attrs["llmco2"]["grid"],
                "error_vs_exact": errors,
            }
        )  # fmt: skip
    header = ("rows", "s", "rows/s", "p99 err", "max err")
    widths = (10, 6, 10, 8, 8)
    columns = " ".join(f"{h:>{w}s}" for h, w in zip(header, widths, strict=True))
    print(f"{'deployment':28s} {columns}")
    for r in rows:
        e = r["error_vs_exact"]["total_j"]
        name = f"{r['model']} {r['tp']}x{r['gpu']}"
        print(
            f"{name:28s} {r['rows']:10,d} {r['seconds']:6.1f} {r['rows_per_s']:10,.0f} "
            f"{100 * e['p99']:7.2f}% {100 * e['max']:7.2f}%"
        )
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "sample": args.sample,
        "goal": "1,000,000 rows in <= 30 s on 2 cores",
        "deployments": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
