"""How far the serving prediction is from real serving measurements.

    .venv/bin/python experiments/evaluation/serving_accuracy.py \
        experiments/data/serving-h200/serving.jsonl --out experiments/reports/serving-h200

Every row of the measurement files (written by ``experiments/gpu/serving_sweep.py``) is replayed
by :func:`gnn.serving.predict_serving` with the same load (trace, concurrency or rate, requests,
seed, context limit: the same request lengths) on the same GPU with the engine's
``max_num_seqs``, and the predicted energy per request at steady state is compared with the
measured one. The predictor is the shipped default (``--predictor`` for another); no serving
measurement is in its training data, so every shape is held out. Prints a table and writes
``serving_accuracy.json`` (per row and summary: MAPE, EBA10, whether the prediction falls as the
concurrency rises wherever the measurement does).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from featurize import resolve_architecture
from featurize.gpus import GpuCatalog
from featurize.point import GpuSetup
from gnn.predict import load_predictor
from gnn.serving import predict_serving
from workers.serving import ServingLoad


def _rows(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def _monotone(rows: list[dict[str, Any]]) -> bool:
    """Whether, per shape and trace, predictions fall with C wherever measurements fall."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["concurrency"] is not None:
            groups.setdefault((row["shape"], row["trace"]), []).append(row)
    for group in groups.values():
        group.sort(key=lambda r: r["concurrency"])
        for a, b in itertools.pairwise(group):
            if b["measured_j"] < a["measured_j"] and b["predicted_j"] >= a["predicted_j"]:
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--predictor", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    predictor = load_predictor(args.predictor)
    catalog = GpuCatalog.default()
    results = []
    print(f"{'shape':14s} {'trace':5s} {'load':>7s} {'measured J':>10s} {'predicted J':>11s} "
          f"{'error %':>8s}  {'tok/s meas':>10s} {'pred':>7s}")  # fmt: skip
    for row in _rows(args.files):
        load = ServingLoad(
            row["trace"],
            row["requests"],
            concurrency=row["concurrency"],
            rate_per_s=row["rate_per_s"],
            max_context=row["max_context"],
            seed=row["seed"],
        )
        setup = GpuSetup(catalog.get(row["gpu_names"][0]), len(row["gpu_names"]))
        prediction = predict_serving(
            predictor,
            resolve_architecture(row["shape"]),
            setup,
            load,
            max_num_seqs=row["engine_settings"]["max_num_seqs"],
        )
        measured = row["result"]["per_request_j"]
        predicted = prediction.result.per_request_j
        error = 100 * (predicted / measured - 1)
        results.append(
            {
                "shape": row["shape"],
                "trace": row["trace"],
                "concurrency": row["concurrency"],
                "rate_per_s": row["rate_per_s"],
                "gpu": setup.gpu.id,
                "measured_j": measured,
                "predicted_j": predicted,
                "low_j": prediction.per_request_low_j,
                "high_j": prediction.per_request_high_j,
                "error_pct": error,
                "measured_tokens_per_s": row["result"]["output_tokens_per_s"],
                "predicted_tokens_per_s": prediction.result.output_tokens_per_s,
            }
        )
        name = f"C={load.concurrency}" if load.closed else f"λ={load.rate_per_s:g}"
        print(
            f"{row['shape']:14s} {row['trace']:5s} {name:>7s} {measured:10.1f} {predicted:11.1f}"
            f" {error:+8.1f}  {row['result']['output_tokens_per_s']:10.0f}"
            f" {prediction.result.output_tokens_per_s:7.0f}"
        )
    errors = np.abs([r["error_pct"] for r in results])
    covered = [
        r["low_j"] <= r["measured_j"] <= r["high_j"] for r in results if r["low_j"] is not None
    ]
    summary = {
        "points": len(results),
        "mape": float(np.mean(errors)),
        "eba10": float(100 * np.mean(errors <= 10)),
        "worst_pct": float(np.max(errors)),
        "monotone_in_concurrency": _monotone(results),
        "interval_coverage": float(100 * np.mean(covered)) if covered else None,
        "by_trace": {
            t: float(np.mean([abs(r["error_pct"]) for r in results if r["trace"] == t]))
            for t in sorted({r["trace"] for r in results})
        },
    }
    print(
        f"MAPE {summary['mape']:.1f} %, EBA10 {summary['eba10']:.0f} %, worst"
        f" {summary['worst_pct']:.1f} %, monotone in C: {summary['monotone_in_concurrency']},"
        f" interval coverage {summary['interval_coverage']}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_accuracy.json").write_text(
        json.dumps({"summary": summary, "rows": results}, indent=1)
    )


if __name__ == "__main__":
    main()
