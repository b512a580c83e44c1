"""Accuracy metrics of energy predictors: MAPE and error-bound accuracy (EBA), overall and by group.

EBA(δ) is the share of predictions within ±δ of the measured value (the LLMCO2 paper's Table 4),
MAPE the mean absolute percentage error (Table 3). Both take measured values > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmco2.errors import InvalidRequestError

ArrayLike = npt.ArrayLike
#: Error bounds the reports use.
EBA_BOUNDS = (0.05, 0.10, 0.30)


def _relative_errors(predicted: ArrayLike, measured: ArrayLike) -> np.ndarray:
    pred = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(measured, dtype=np.float64)
    if pred.shape != true.shape:
        raise InvalidRequestError(f"{pred.shape} predictions for {true.shape} measurements")
    if true.size == 0:
        raise InvalidRequestError("no measurements to score")
    if np.any(true <= 0) or not np.all(np.isfinite(true)):
        raise InvalidRequestError("measured values must be positive and finite")
    return np.asarray(np.abs(pred / true - 1.0))


def mape(predicted: ArrayLike, measured: ArrayLike) -> float:
    """Mean absolute percentage error, in percent."""
    return float(100.0 * _relative_errors(predicted, measured).mean())


def eba(predicted: ArrayLike, measured: ArrayLike, bound: float) -> float:
    """Error-bound accuracy: percent of predictions within ±``bound`` (e.g. 0.1) of the truth."""
    return float(100.0 * (_relative_errors(predicted, measured) <= bound).mean())


@dataclass(frozen=True)
class Scores:
    """MAPE and EBA(5/10/30 %) of one set of predictions, in percent."""

    count: int
    mape: float
    eba5: float
    eba10: float
    eba30: float

    @classmethod
    def of(cls, predicted: ArrayLike, measured: ArrayLike) -> Scores:
        """Score predictions against measurements."""
        errors = _relative_errors(predicted, measured)
        return cls(
            count=int(errors.size),
            mape=float(100 * errors.mean()),
            eba5=float(100 * (errors <= 0.05).mean()),
            eba10=float(100 * (errors <= 0.10).mean()),
            eba30=float(100 * (errors <= 0.30).mean()),
        )


def scores_by_group(
    predicted: ArrayLike, measured: ArrayLike, groups: Sequence[str]
) -> dict[str, Scores]:
    """Scores per group (family, GPU, ...), plus ``all``."""
    pred = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(measured, dtype=np.float64)
    labels = np.asarray(groups)
    result = {"all": Scores.of(pred, true)}
    for group in sorted(set(labels.tolist())):
        mask = labels == group
        result[str(group)] = Scores.of(pred[mask], true[mask])
    return result


def learning_curve_at(curve: Sequence[tuple[int, float]], measurements: int) -> float | None:
    """The score of the last model trained on at most ``measurements`` points of a campaign.

    Args:
        curve: (measurements so far, score) after each round, in round order.
        measurements: The measurement count to read the curve at.

    Returns:
        That score, or None if the curve starts above ``measurements``.
    """
    before = [score for count, score in curve if count <= measurements]
    return before[-1] if before else None


def first_reaching(curve: Sequence[tuple[int, float]], level: float) -> int | None:
    """Measurements at the first round whose score was ≤ ``level`` (None if none was).

    Args:
        curve: (measurements so far, score) after each round, in round order.
        level: The score to reach (a MAPE, say).
    """
    return next((count for count, score in curve if score <= level), None)
