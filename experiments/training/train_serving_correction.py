"""Fit the serving twin's correction shipped in gnn/data/ on the project's serving measurements.

Reads serving sweep files (``serving.jsonl``, written by ``experiments/gpu/serving_sweep.py``),
fits the step correction (:func:`gnn.serving_correction.fit_step_correction`) on every measured
closed loop against the shipped default predictor, calibrates its interval on the
leave-one-shape-out errors, and writes ``gnn/data/serving_correction.json``. Reproduce with:

    python experiments/training/train_serving_correction.py \
        experiments/data/serving-h200/serving.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gnn.predict import default_predictor
from gnn.serving_correction import ServingCorrection, read_observations, twin_factory
from llmco2.version import code_version

DATA = Path(__file__).resolve().parents[2] / "gnn" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=DATA / "serving_correction.json")
    args = parser.parse_args()
    observations = read_observations(args.files)
    root = Path(__file__).resolve().parents[2]
    files = [str(p.resolve().relative_to(root)) if p.resolve().is_relative_to(root) else str(p)
             for p in args.files]  # fmt: skip
    correction, held_out = ServingCorrection.fitted(
        twin_factory(default_predictor()),
        observations,
        {"files": files, "predictor": "gnn/data/default_predictor.npz", "code": code_version()},
    )
    errors = np.abs([p.error_pct for p in held_out])
    low, high = np.exp(correction.interval_log or (0.0, 0.0))
    print(f"step correction: {correction.step}")
    print(
        f"leave-one-shape-out: MAPE {errors.mean():.1f} %,"
        f" EBA10 {100 * np.mean(errors <= 10):.0f} % over {len(held_out)} loads;"
        f" interval ×{low:.3f} … ×{high:.3f}"
    )
    correction.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
