"""How far the serving prediction is from real serving measurements.

    .venv/bin/python experiments/evaluation/serving_accuracy.py \
        experiments/data/serving-h200/serving.jsonl experiments/data/serving-h100/sweep.jsonl \
        experiments/data/serving-h100 --out experiments/reports/serving

Every measured load (written by ``experiments/gpu/serving_sweep.py``, or a campaign's exported
``serving`` table) is replayed with the same
load (trace, concurrency or rate, requests, seed, context limit: the same request lengths) on the
twin of the same GPU with the engine's ``max_num_seqs`` (:mod:`gnn.serving_correction`), and its
predicted energy per request at steady state is compared with the measured one, four ways:

- ``uncorrected``: the twin on the predictor's costs alone (no serving measurement used);
- ``shipped``: with the shipped correction (``gnn/data/serving_correction.json``; fitted on
  these loads if they are the shipped ones, so in-sample);
- ``held-out shape``: with a correction fitted on the other shapes' loads;
- ``held-out concurrency``: with a correction fitted on the other concurrencies' loads;
- ``held-out GPU``: with a correction fitted on the other GPU types' loads (with loads of one GPU
  type only, as the shipped one).

The predictor is the shipped default (``--predictor`` for another); no serving measurement is in
its training data. The held-out-shape interval is cross-conformal: each shape's interval comes
from the other shapes' held-out errors. Prints a table and writes ``serving_accuracy.json`` (per
load and summary: MAPE, EBA10, worst, where on one GPU predictions do not fall as the concurrency
rises while the measurements do, interval coverage).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from featurize.gpus import GpuCatalog
from gnn.predict import load_predictor
from gnn.serving_correction import (
    INTERVAL_LEVEL,
    default_serving_correction,
    held_out_predictions,
    predict_observation,
    read_observations,
    replay_closed_loops,
    twin_factory,
)
from workers.serving_twin import StepCorrection

METHODS = ("uncorrected", "shipped", "held-out shape", "held-out concurrency", "held-out GPU")


def _against_measurements(rows: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """Where, per shape, trace and GPU, a prediction does not fall with C as the measurement does.

    Each entry names the two neighbouring concurrencies and how much the measurement fell and the
    prediction moved between them (%).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["concurrency"] is not None:
            groups.setdefault((row["shape"], row["trace"], row["gpu"]), []).append(row)
    found = []
    for (shape, trace, gpu), group in groups.items():
        group.sort(key=lambda r: r["concurrency"])
        for a, b in itertools.pairwise(group):
            if b["measured_j"] < a["measured_j"] and b[method] >= a[method]:
                found.append(
                    {
                        "shape": shape,
                        "trace": trace,
                        "gpu": gpu,
                        "concurrency": [a["concurrency"], b["concurrency"]],
                        "measured_change_pct": 100 * (b["measured_j"] / a["measured_j"] - 1),
                        "predicted_change_pct": 100 * (b[method] / a[method] - 1),
                    }
                )
    return found


def _cross_conformal(rows: list[dict[str, Any]]) -> list[bool]:
    """Whether each load's measurement lies in the interval made from the other shapes' errors."""
    covered = []
    tail = (1.0 - INTERVAL_LEVEL) / 2.0
    for row in rows:
        others = [np.log(r["held-out shape"] / r["measured_j"]) for r in rows
                  if r["shape"] != row["shape"]]  # fmt: skip
        low = row["held-out shape"] * np.exp(-np.quantile(others, 1.0 - tail))
        high = row["held-out shape"] * np.exp(-np.quantile(others, tail))
        covered.append(bool(low <= row["measured_j"] <= high))
    return covered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--predictor", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    observations = read_observations(args.files)
    make_twin = twin_factory(load_predictor(args.predictor))
    shipped = default_serving_correction()
    replayed = replay_closed_loops(make_twin, observations)
    by_shape = held_out_predictions(make_twin, observations, "shape", replayed)
    by_concurrency = held_out_predictions(make_twin, observations, "concurrency", replayed)
    catalog = GpuCatalog.default()
    gpus = {catalog.get(o.gpu).id for o in observations}
    by_gpu = (
        held_out_predictions(make_twin, observations, "gpu", replayed)
        if len(gpus) > 1
        else by_shape
    )
    rows = []
    print(f"{'load':34s} {'measured J':>10s} " + " ".join(f"{m:>11.11s}" for m in METHODS))
    for observation, shape, concurrency, gpu in zip(
        observations, by_shape, by_concurrency, by_gpu, strict=True
    ):
        uncorrected, _ = predict_observation(make_twin, observation, StepCorrection())
        corrected, tokens = predict_observation(make_twin, observation, shipped.step)
        row: dict[str, Any] = {
            "shape": observation.shape,
            "trace": observation.trace,
            "concurrency": observation.concurrency,
            "rate_per_s": observation.rate_per_s,
            "gpu": catalog.get(observation.gpu).id,
            "measured_j": observation.measured_j,
            "uncorrected": uncorrected,
            "shipped": corrected,
            "held-out shape": shape.predicted_j,
            "held-out concurrency": concurrency.predicted_j,
            "held-out GPU": gpu.predicted_j,
            "measured_tokens_per_s": observation.measured_tokens_per_s,
            "shipped_tokens_per_s": tokens,
        }
        row["error_pct"] = {m: 100 * (row[m] / observation.measured_j - 1) for m in METHODS}
        rows.append(row)
        print(
            f"{observation.name:34s} {observation.measured_j:10.1f} "
            + " ".join(f"{row['error_pct'][m]:+10.1f}%" for m in METHODS)
        )
    summary: dict[str, Any] = {
        "loads": len(rows),
        "shapes": sorted({r["shape"] for r in rows}),
        "gpus": sorted(gpus),
    }
    for method in METHODS:
        errors = np.abs([r["error_pct"][method] for r in rows])
        not_falling = _against_measurements(rows, method)
        summary[method] = {
            "mape": float(np.mean(errors)),
            "eba10": float(100 * np.mean(errors <= 10)),
            "worst_pct": float(np.max(errors)),
            "monotone_in_concurrency": not not_falling,
            "not_monotone": not_falling,
            "mape_by_shape": {
                s: float(np.mean([abs(r["error_pct"][method]) for r in rows if r["shape"] == s]))
                for s in summary["shapes"]
            },
            "mape_by_gpu": {
                g: float(np.mean([abs(r["error_pct"][method]) for r in rows if r["gpu"] == g]))
                for g in summary["gpus"]
            },
        }
    summary["held-out shape"]["interval_coverage"] = float(100 * np.mean(_cross_conformal(rows)))
    summary["interval_level"] = INTERVAL_LEVEL
    for method in METHODS:
        s = summary[method]
        print(
            f"{method:21s} MAPE {s['mape']:5.1f} %, EBA10 {s['eba10']:3.0f} %, worst"
            f" {s['worst_pct']:5.1f} %, not falling with C where measured: {len(s['not_monotone'])}"
        )
    print(
        f"held-out shape interval ({INTERVAL_LEVEL:.0%}, cross-conformal) coverage:"
        f" {summary['held-out shape']['interval_coverage']:.1f} %"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_accuracy.json").write_text(
        json.dumps({"summary": summary, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
