"""Hyper-parameter search for the LLMCO2 GNN with Optuna, its study kept in the campaign database.

The objective is the K-fold cross-validated MAPE of total energy (random held-out
configurations). The study lives in the same database as the campaign (SQLite or PostgreSQL,
through Optuna's RDB storage), named after the campaign, so rerunning the same command continues
it: ``--hpo N`` means N finished trials in all, not N more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gnn.baselines import HybridMethod, NetworkShape
from gnn.dataset import LabelledData
from gnn.evaluation import Fold, make_splits
from gnn.hybrid import CorrectionSettings
from gnn.metrics import Scores
from gnn.training import TrainConfig
from llmco2.errors import DatabaseError, InvalidRequestError


@dataclass(frozen=True)
class TuningResult:
    """The best trial of a study."""

    study_name: str
    trials: int
    new_trials: int
    best_mape: float
    shape: NetworkShape
    config: TrainConfig
    params: dict[str, Any]


def _suggest(trial: Any, base: TrainConfig) -> tuple[NetworkShape, TrainConfig]:
    shape = NetworkShape(
        hidden=trial.suggest_categorical("hidden", [64, 128, 256]),
        graph_layers=trial.suggest_int("graph_layers", 1, 3),
        dropout=trial.suggest_float("dropout", 0.0, 0.3),
    )
    config = dataclasses.replace(
        base,
        learning_rate=trial.suggest_float("learning_rate", 3e-4, 1e-2, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True),
        batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
    )
    return shape, config


def cross_validated_mape(
    data: LabelledData, shape: NetworkShape, config: TrainConfig, folds: int
) -> float:
    """K-fold MAPE (%) of total energy of the llmco2 predictor (physics + GNN correction).

    The folds hold out whole architecture shapes (``folds`` groups of them) when the data has
    enough shapes — what the predictor is for — and random rows otherwise.
    """
    predicted = np.full(len(data), np.nan)
    shapes = sorted(set(data.model_name.tolist()))
    if len(shapes) >= folds:
        order = np.random.default_rng(config.seed).permutation(len(shapes))
        everything = np.arange(len(data))
        split_folds = []
        for group in np.array_split(order, folds):
            held = np.isin(data.model_name, [shapes[i] for i in group])
            split_folds.append(Fold("shapes", everything[~held], everything[held]))
    else:
        (split,) = make_splits(data, ["random"], folds, config.seed)
        split_folds = split.folds
    for fold in split_folds:
        method = HybridMethod("llmco2", CorrectionSettings(hidden=shape.hidden), config, shape)
        method.fit(data, fold.train)
        predicted[fold.test] = method.predict(data, fold.test)[:, 2]
    return Scores.of(predicted, data.total_j).mape


def tune(
    data: LabelledData,
    storage_url: str,
    study_name: str,
    trials: int,
    *,
    base: TrainConfig | None = None,
    folds: int = 3,
    on_trial: Callable[[int, float], None] | None = None,
) -> TuningResult:
    """Run the study up to ``trials`` finished trials and return its best.

    Raises:
        InvalidRequestError: ``trials`` < 1 or ``folds`` < 2.
        DatabaseError: The study storage cannot be opened.
    """
    import optuna

    if trials < 1:
        raise InvalidRequestError(f"--hpo needs ≥ 1 trial, got {trials}")
    if folds < 2:
        raise InvalidRequestError(f"--folds must be ≥ 2, got {folds}")
    config = base or TrainConfig()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=optuna.storages.RDBStorage(storage_url),
            direction="minimize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=config.seed),
        )
    except Exception as exc:  # Optuna wraps SQLAlchemy errors in several types
        raise DatabaseError(
            f"cannot open the Optuna study {study_name!r}: {str(exc).splitlines()[0]}"
        ) from exc
    finished = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    done = sum(t.state in finished for t in study.trials)
    remaining = max(trials - done, 0)

    def objective(trial: Any) -> float:
        shape, cfg = _suggest(trial, config)
        return cross_validated_mape(data, shape, cfg, folds)

    def report(study: Any, trial: Any) -> None:
        if on_trial is not None:
            value: float | None = trial.value
            on_trial(trial.number, value if value is not None else float("nan"))

    if remaining:
        study.optimize(objective, n_trials=remaining, callbacks=[report])
    best = study.best_trial
    best_value: float | None = best.value
    assert best_value is not None, "a best trial has a value"
    shape = NetworkShape(best.params["hidden"], best.params["graph_layers"], best.params["dropout"])
    best_config = dataclasses.replace(
        config,
        learning_rate=best.params["learning_rate"],
        weight_decay=best.params["weight_decay"],
        batch_size=best.params["batch_size"],
    )
    return TuningResult(
        study_name, len(study.trials), remaining, best_value, shape, best_config,
        dict(best.params),
    )  # fmt: skip
