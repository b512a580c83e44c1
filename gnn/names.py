"""Names of the predictors and splits the evaluation knows (importable without torch)."""

from __future__ import annotations

#: Every method: the baselines, the analytical model, the pure GNN, ours and its ablations.
METHOD_NAMES: tuple[str, ...] = (
    "llmcarbon",
    "physics",
    "deepen-rf",
    "nnlqp",
    "gnn+phases",
    "gnn",
    "llmco2",
    "llmco2-roofline",
    "llmco2-no-phases",
    "llmco2-unregularised",
    "llmco2-plain-mean",
)
#: What `llmco2 evaluate` runs unless told otherwise (``gnn+phases`` is the pure GNN's own
#: ablation, kept out of the default run for time).
DEFAULT_METHODS: tuple[str, ...] = tuple(m for m in METHOD_NAMES if m != "gnn+phases")
#: Splits of the evaluation, primary first (see :mod:`gnn.evaluation`).
SPLIT_NAMES: tuple[str, ...] = ("shape", "family", "tp", "size", "gpu", "random")
#: Fewest labelled points a predictor trains on.
MIN_TRAINING_ROWS = 10
#: Training of a campaign round's predictor, and of any training run that does not say.
ROUND_EPOCHS = 200
ROUND_PATIENCE = 30
#: Training of the predictors on real data (`llmco2 evaluate`, `llmco2 train` and the shipped
#: default): more epochs and patience than a campaign round's, which trains often.
REAL_DATA_EPOCHS = 300
REAL_DATA_PATIENCE = 40
