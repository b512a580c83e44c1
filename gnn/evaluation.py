"""Cross-validated comparison of the predictors (the paper's Tables 3-5, on our data).

Splits:

- ``random``: K folds of random held-out configurations (each configuration is one point:
  architecture, request and GPU setup);
- ``family``: leave one model family out (train on the others, test on it);
- ``gpu``: leave one GPU type out;
- ``tp``: leave one GPU count out (the data has TP 1, 2 and 4 from the same host).

Every point is predicted exactly once per split (by the fold that held it out), so a split's
scores cover the whole dataset. Scores are MAPE and EBA(5/10/30 %) of total energy, overall, per
family and per GPU setup, and of each phase for the methods that model phases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gnn.baselines import METHOD_NAMES, make_methods
from gnn.dataset import LabelledData
from gnn.metrics import Scores, scores_by_group
from gnn.training import TrainConfig
from llmco2.errors import InvalidRequestError

SPLIT_NAMES: tuple[str, ...] = ("random", "family", "gpu", "tp")


@dataclass(frozen=True)
class Fold:
    """One training/test partition."""

    label: str
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class Split:
    """A way of holding data out: its folds, or why it cannot be run on this data."""

    name: str
    folds: list[Fold]
    skipped: str | None = None


def _leave_one_out(name: str, groups: np.ndarray, what: str) -> Split:
    values = sorted(set(groups.tolist()))
    if len(values) < 2:
        return Split(name, [], f"the data has one {what} ({values[0]}): nothing to hold out")
    everything = np.arange(len(groups))
    folds = [
        Fold(str(v), everything[groups != v], everything[groups == v])
        for v in values
        if (groups != v).sum() >= 4
    ]
    return Split(name, folds)


def make_splits(
    data: LabelledData, names: Sequence[str], folds: int = 5, seed: int = 0
) -> list[Split]:
    """The requested splits of ``data``.

    Raises:
        InvalidRequestError: An unknown split name or fewer than 2 folds.
    """
    unknown = [n for n in names if n not in SPLIT_NAMES]
    if unknown:
        raise InvalidRequestError(
            f"unknown split {unknown[0]!r}; choose from {', '.join(SPLIT_NAMES)}"
        )
    if folds < 2:
        raise InvalidRequestError(f"--folds must be ≥ 2, got {folds}")
    result = []
    for name in names:
        if name == "random":
            order = np.random.default_rng(seed).permutation(len(data))
            parts = np.array_split(order, min(folds, len(data)))
            result.append(
                Split(
                    name,
                    [
                        Fold(f"fold {i + 1}", np.sort(np.setdiff1d(order, test)), np.sort(test))
                        for i, test in enumerate(parts)
                    ],
                )
            )
        elif name == "family":
            result.append(_leave_one_out(name, data.family, "model family"))
        elif name == "gpu":
            result.append(_leave_one_out(name, data.gpu_type, "GPU type"))
        else:
            result.append(_leave_one_out(name, data.gpu_count.astype(str), "GPU count"))
    return result


@dataclass
class MethodScores:
    """One method's predictions and scores on one split."""

    method: str
    split: str
    predicted: np.ndarray  # (N, 3) prefill, decode, total; NaN where not predicted
    overall: Scores
    by_family: dict[str, Scores]
    by_setup: dict[str, Scores]
    by_fold: dict[str, Scores]
    prefill: Scores | None
    decode: Scores | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (predictions included, as lists)."""
        return {
            "method": self.method,
            "split": self.split,
            "overall": asdict(self.overall),
            "by_family": {k: asdict(v) for k, v in self.by_family.items()},
            "by_setup": {k: asdict(v) for k, v in self.by_setup.items()},
            "by_fold": {k: asdict(v) for k, v in self.by_fold.items()},
            "prefill": asdict(self.prefill) if self.prefill else None,
            "decode": asdict(self.decode) if self.decode else None,
            "predicted_total_j": [None if np.isnan(v) else float(v) for v in self.predicted[:, 2]],
        }


@dataclass
class EvaluationResult:
    """Every method on every split, with what was skipped and why."""

    source: str
    simulated: bool
    points: int
    methods: list[str]
    train_config: TrainConfig
    results: list[MethodScores] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    measured_total_j: np.ndarray | None = None

    def get(self, method: str, split: str) -> MethodScores | None:
        """The scores of one method on one split, if it ran."""
        return next((r for r in self.results if r.method == method and r.split == split), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result."""
        return {
            "source": self.source,
            "simulated": self.simulated,
            "points": self.points,
            "methods": self.methods,
            "train_config": asdict(self.train_config),
            "skipped_splits": self.skipped,
            "measured_total_j": [float(v) for v in self.measured_total_j]
            if self.measured_total_j is not None
            else [],
            "results": [r.to_dict() for r in self.results],
        }


def _phase_scores(predicted: np.ndarray, measured: np.ndarray) -> Scores | None:
    mask = ~np.isnan(predicted) & (measured > 0)
    return Scores.of(predicted[mask], measured[mask]) if mask.any() else None


def evaluate(
    data: LabelledData,
    methods: Sequence[str] = METHOD_NAMES,
    splits: Sequence[str] = SPLIT_NAMES,
    *,
    folds: int = 5,
    train_config: TrainConfig | None = None,
    on_fit: Callable[[str, str, str], None] | None = None,
) -> EvaluationResult:
    """Train and score every method on every split.

    Args:
        data: The labelled dataset.
        methods: Method names (see :data:`gnn.baselines.METHOD_NAMES`).
        splits: Split names (see :data:`SPLIT_NAMES`).
        folds: Folds of the random split.
        train_config: Training knobs of the GNN methods (seed included).
        on_fit: Called after each fit with (split, method, fold label), for progress bars.

    Raises:
        InvalidRequestError: Unknown method or split names.
    """
    config = train_config or TrainConfig()
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        raise InvalidRequestError(
            f"unknown method {unknown[0]!r}; choose from {', '.join(METHOD_NAMES)}"
        )
    result = EvaluationResult(
        data.source, data.simulated, len(data), list(methods), config,
        measured_total_j=data.total_j,
    )  # fmt: skip
    setups = data.setup
    for split in make_splits(data, splits, folds, config.seed):
        if split.skipped is not None:
            result.skipped[split.name] = split.skipped
            continue
        for method_name in methods:
            predicted = np.full((len(data), 3), np.nan)
            by_fold = {}
            for fold in split.folds:
                (method,) = make_methods([method_name], config)
                method.fit(data, fold.train)
                predicted[fold.test] = method.predict(data, fold.test)
                by_fold[fold.label] = Scores.of(predicted[fold.test, 2], data.total_j[fold.test])
                if on_fit is not None:
                    on_fit(split.name, method_name, fold.label)
            covered = ~np.isnan(predicted[:, 2])
            groups = scores_by_group(predicted[covered, 2], data.total_j[covered],
                                     data.family[covered].tolist())  # fmt: skip
            per_setup = scores_by_group(predicted[covered, 2], data.total_j[covered],
                                        setups[covered].tolist())  # fmt: skip
            result.results.append(
                MethodScores(
                    method=method_name,
                    split=split.name,
                    predicted=predicted,
                    overall=groups.pop("all"),
                    by_family=groups,
                    by_setup={k: v for k, v in per_setup.items() if k != "all"},
                    by_fold=by_fold,
                    prefill=_phase_scores(predicted[:, 0], data.prefill_j),
                    decode=_phase_scores(predicted[:, 1], data.decode_j),
                )
            )
    return result


def count_fits(
    data: LabelledData, methods: Sequence[str], splits: Sequence[str], folds: int
) -> int:
    """How many trainings :func:`evaluate` will run (for a progress bar)."""
    return sum(len(s.folds) for s in make_splits(data, splits, folds)) * len(methods)
