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
    "llmco2-no-roofline",
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
#: Epochs of a correction network of the llmco2 predictor (see :class:`gnn.training.TrainConfig`).
#: A correction starts at zero and needs little training: on 470 real H200 points, 40 epochs on
#: every row against early stopping (at most 300 epochs, patience 40, 15 % of the rows held for
#: validation): unseen shape 5.56 against 5.81 % MAPE (EBA10 86 both), unseen family 7.36 against
#: 7.10 %, unseen TP 9.25 against 8.76 %, size extrapolation 7.15 against 7.58 %, random
#: configurations 4.47 against 4.81 %, in half the training time (20 epochs: 5.75, 7.22 and
#: 4.80 % on shape, family and random; 80 epochs: 5.60, 7.47 and 4.42 %).
CORRECTION_EPOCHS = 40
