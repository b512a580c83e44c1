"""Train the default predictor shipped in gnn/data/ on the project's real measurements.

Reads exported real datasets (``points.parquet``), trains the LLMCO2 GNN on every point, and
writes ``gnn/data/default_predictor.pt`` plus its card (``gnn/data/DEFAULT_PREDICTOR.md``) with
the 5-fold cross-validated accuracy. Reproduce with:

    python experiments/training/train_default.py experiments/data/real-v1
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from featurize import InferencePoint
from featurize.graphs import build_graphs
from gnn.metrics import Scores
from gnn.portable import PortablePredictor
from gnn.training import TrainConfig, train_predictor
from llmco2.version import code_version
from storage.export import read_exported_points

DATA = Path(__file__).resolve().parents[2] / "gnn" / "data"
CONFIG = TrainConfig(epochs=300, patience=40, seed=0)


def load(folders: list[Path]) -> tuple[list[InferencePoint], np.ndarray, list[str]]:
    rows = [(p, r) for p, r in read_exported_points(folders) if r["prefill_energy_j"] is not None]
    labels = np.array([[r["prefill_energy_j"], max(r["decode_energy_j"], 0.0)] for _, r in rows])
    return [p for p, _ in rows], labels, [f"{r['gpu_count']}x{r['gpu_type']}" for _, r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    args = parser.parse_args()
    points, labels, gpus = load(args.datasets)
    graphs = build_graphs(points)
    order = np.random.default_rng(0).permutation(len(graphs))
    predicted = np.zeros(len(graphs))
    for fold, test in enumerate(np.array_split(order, 5)):
        train = np.setdiff1d(order, test)
        model, _ = train_predictor(
            [graphs[i] for i in train], labels[train, 0], labels[train, 1],
            TrainConfig(epochs=CONFIG.epochs, patience=CONFIG.patience, seed=fold),
        )  # fmt: skip
        predicted[test] = model.predict([graphs[i] for i in test])[:, 2]
    cv = Scores.of(predicted, labels.sum(axis=1))
    predictor, history = train_predictor(graphs, labels[:, 0], labels[:, 1], CONFIG)
    predictor.metadata.update(
        {
            "trained_on": [str(d) for d in args.datasets],
            "points": len(graphs),
            "setups": sorted(set(gpus)),
            "models": sorted({p.architecture.name for p in points}),
            "cv_mape": cv.mape,
            "cv_eba10": cv.eba10,
            "simulated": False,
        }
    )
    predictor.save(DATA / "default_predictor.pt")
    # The NumPy copy `llmco2 predict` loads without importing torch (start-up well under 1 s).
    PortablePredictor.from_predictor(predictor).save(DATA / "default_predictor.npz")
    models = ", ".join(predictor.metadata["models"])
    setups = ", ".join(predictor.metadata["setups"])
    scores = (
        f"MAPE {cv.mape:.1f} %, EBA5 {cv.eba5:.0f} %, EBA10 {cv.eba10:.0f} %, "
        f"EBA30 {cv.eba30:.0f} %"
    )
    (DATA / "DEFAULT_PREDICTOR.md").write_text(
        f"""# Default predictor card

| | |
| --- | --- |
| Trained on | {len(graphs)} real measurements ({", ".join(str(d) for d in args.datasets)}) |
| Models | {models} |
| GPU setups | {setups} |
| Network | LLMCO2 GNN (GraphSAGE × 2, prefill and decode heads), {CONFIG} |
| 5-fold cross-validation (total energy) | {scores} |
| Best epoch | {history.best_epoch} |
| Files | `default_predictor.pt` (torch, `weights_only` checkpoint) and \
`default_predictor.npz` (the NumPy copy `llmco2 predict` loads, no torch import) |
| Code | {code_version()} |
| Trained | {datetime.now(UTC).isoformat(timespec="seconds")} |

Reproduce: `python experiments/training/train_default.py {" ".join(str(d) for d in args.datasets)}`

Outside these GPU setups and model families the predictor extrapolates: `llmco2 predict` says so.
"""
    )
    print(f"{len(graphs)} points; 5-fold CV: {cv}; wrote {DATA / 'default_predictor.pt'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
