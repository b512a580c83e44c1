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
import pyarrow.parquet as pq

from featurize import Architecture, GpuSetup, InferencePoint, InferenceRequest, Precision
from featurize.gpus import GpuCatalog
from featurize.graphs import build_graphs
from gnn.metrics import Scores
from gnn.training import TrainConfig, train_predictor
from llmco2.version import code_version

DATA = Path(__file__).resolve().parents[2] / "gnn" / "data"
ARCH_FIELDS = tuple(f for f in Architecture.__dataclass_fields__ if f != "name")
CONFIG = TrainConfig(epochs=300, patience=40, seed=0)


def load(folders: list[Path]) -> tuple[list[InferencePoint], np.ndarray, list[str]]:
    catalog = GpuCatalog.default()
    points, labels, gpus = [], [], []
    for folder in folders:
        for row in pq.read_table(folder / "points.parquet").to_pylist():
            if row["simulated"] or row["prefill_energy_j"] is None:
                continue
            arch = Architecture(
                name=row["model_name"], **{f: row[f"arch_{f}"] for f in ARCH_FIELDS}
            )
            points.append(
                InferencePoint(
                    arch,
                    InferenceRequest(
                        row["batch_size"], row["prompt_tokens"], row["generated_tokens"]
                    ),
                    GpuSetup(catalog.get(row["gpu_type"]), row["gpu_count"]),
                    Precision(row["weight_bits"], row["activation_bits"], row["kv_bits"]),
                    row["flash_attention"],
                )
            )
            labels.append([row["prefill_energy_j"], max(row["decode_energy_j"], 0.0)])
            gpus.append(f"{row['gpu_count']}x{row['gpu_type']}")
    return points, np.array(labels), gpus


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
