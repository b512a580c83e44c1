"""Train the default predictor shipped in gnn/data/ on the project's real measurements.

Reads exported real datasets (``points.parquet``), fits the llmco2 predictor (the analytical
model plus the GNN's correction, :mod:`gnn.hybrid`) on every point, calibrates its interval on
leave-one-shape-out errors (every architecture held out in turn), and writes
``gnn/data/default_predictor.pt`` and its portable copy ``default_predictor.npz`` plus the card
``gnn/data/DEFAULT_PREDICTOR.md``. Reproduce with:

    python experiments/training/train_default.py experiments/data/real-v1 ...
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gnn.dataset import LabelledData
from gnn.evaluation import evaluate
from gnn.hybrid import (
    INTERVAL_LEVEL,
    CorrectionSettings,
    Interval,
    held_out_log_ratios,
    train_hybrid,
)
from gnn.names import REAL_DATA_EPOCHS, REAL_DATA_PATIENCE
from llmco2.version import code_version

DATA = Path(__file__).resolve().parents[2] / "gnn" / "data"


def main() -> None:
    from gnn.training import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    config = TrainConfig(epochs=REAL_DATA_EPOCHS, patience=REAL_DATA_PATIENCE, seed=0)
    data = LabelledData.from_exported(args.datasets)
    held_out = evaluate(data, ["llmco2"], ["shape"], train_config=config, jobs=args.jobs)
    shape = held_out.get("llmco2", "shape")
    assert shape is not None
    measured = np.concatenate([data.energy_j, data.total_j[:, None]], axis=1)
    interval = Interval.of(
        held_out_log_ratios(measured, shape.predicted), INTERVAL_LEVEL, data.model_name
    )
    predictor = train_hybrid(data, np.arange(len(data)), config, CorrectionSettings())
    predictor.interval = interval
    s = shape.overall
    predictor.metadata = {
        "trained_on": [str(d) for d in args.datasets],
        "points": len(data),
        **data.coverage(),
        "leave_one_shape_out_mape": s.mape,
        "leave_one_shape_out_eba10": s.eba10,
        "leave_one_shape_out_coverage": shape.coverage,
        "simulated": False,
    }
    predictor.save(DATA / "default_predictor.pt")
    # The NumPy copy `llmco2 predict` loads without importing torch (start-up well under 1 s).
    predictor.save(DATA / "default_predictor.npz")
    physics = json.dumps(predictor.physics.to_dict()["gpus"], indent=1)
    datasets = " ".join(str(d) for d in args.datasets)
    (DATA / "DEFAULT_PREDICTOR.md").write_text(
        f"""# Default predictor card

| | |
| --- | --- |
| Trained on | {len(data)} real measurements ({", ".join(str(d) for d in args.datasets)}) |
| Models | {", ".join(predictor.metadata["models"])} |
| GPU setups | {", ".join(predictor.metadata["setups"])} |
| Predictor | llmco2: the analytical model (`gnn/physics.py`) × exp(the LLMCO2 GNN's bounded \
correction, ±{predictor.settings.bound:g} in log, penalty {predictor.settings.penalty:g}, \
hidden {predictor.settings.hidden}, the mean of {len(predictor.networks)} networks of seeds \
{config.seed}…{config.seed + len(predictor.networks) - 1}, shrunk by 1 / (1 + (spread / \
{predictor.settings.agreement:g})²) where they disagree), \
{getattr(predictor.network, "train_config", config)} |
| Leave-one-shape-out (total energy) | MAPE {s.mape:.1f} %, EBA5 {s.eba5:.0f} %, \
EBA10 {s.eba10:.0f} %, EBA30 {s.eba30:.0f} % over {len(set(data.model_name.tolist()))} shapes |
| Interval | {INTERVAL_LEVEL:.0%}: × {np.exp(interval.low[2]):.3f} … \
× {np.exp(interval.high[2]):.3f} of the total (split-conformal on the leave-one-shape-out \
errors); cross-conformal coverage on held-out shapes {shape.coverage:.1f} % |
| Files | `default_predictor.pt` (torch, `weights_only` checkpoint) and \
`default_predictor.npz` (the NumPy copy `llmco2 predict` loads, no torch import) |
| Code | {code_version()} |
| Trained | {datetime.now(UTC).isoformat(timespec="seconds")} |

Reproduce: `python experiments/training/train_default.py {datasets}`

Fitted analytical coefficients per measured GPU type (SI units; `gnn/physics.py` documents each
term; GPU types without measurements get the prior scaled by their datasheet):

```json
{physics}
```

Outside these GPU setups and model families, or on a GPU type without fitted coefficients, the
predictor extrapolates: `llmco2 predict` says so. A GPU type without fitted coefficients gets the
analytical model alone (the prior scaled by its datasheet), no correction.
"""
    )
    print(f"{len(data)} points; leave-one-shape-out {s}; coverage {shape.coverage:.1f} %")


if __name__ == "__main__":
    main()
