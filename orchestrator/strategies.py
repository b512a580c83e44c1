"""How a round chooses the next points to measure (one interface, three strategies).

- ``focused`` (the paper's Algorithm 1): the test points the current model predicts worst, and
  B neighbours within ±C of each.
- ``random`` (its baseline): as many fresh points from the priors.
- ``disagreement`` (ours, needs no measured truth to choose): a pool of unmeasured candidates
  drawn from the priors — so common configurations are proportionally more likely — and the
  ones on which an ensemble of predictors disagrees most (spread of their log energies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from featurize.point import InferencePoint
from orchestrator.config import HighErrorRule
from orchestrator.sampling import PointSampler

#: Energies (J, total) of points by each ensemble member: shape (members, points).
EnsemblePredict = Callable[[Sequence[InferencePoint]], np.ndarray]

#: Candidates drawn per point chosen by the disagreement strategy.
CANDIDATE_FACTOR = 8


@dataclass(frozen=True)
class Selection:
    """New points with the test point each grew from (None for fresh draws)."""

    points: list[InferencePoint]
    parents: list[int | None]


def high_error_indices(errors: np.ndarray, rule: HighErrorRule) -> np.ndarray:
    """Indices of the test points counted as high-error, worst first."""
    order = np.argsort(-errors, kind="stable")
    if rule.rule == "top_fraction":
        count = max(1, int(np.ceil(rule.value * len(errors))))
        return order[:count]
    return order[errors[order] > rule.value]


def disagreement_order(predictions: np.ndarray) -> np.ndarray:
    """Candidates, most disputed first: the spread of the members' log energies.

    Args:
        predictions: Energies (J) by each ensemble member, shape (members, candidates).
    """
    spread = np.log(np.maximum(predictions, 1e-9)).std(axis=0)
    return np.argsort(-spread, kind="stable")


def select(
    strategy: str,
    sampler: PointSampler,
    rng: np.random.Generator,
    *,
    budget: int,
    neighbours: int,
    test_points: Sequence[InferencePoint],
    test_ids: Sequence[int],
    test_errors: np.ndarray,
    rule: HighErrorRule,
    ensemble: EnsemblePredict | None = None,
    exclude: set[InferencePoint] | None = None,
) -> Selection:
    """The next round's points, at most ``budget`` of them.

    Args:
        strategy: ``focused``, ``random`` or ``disagreement``.
        sampler: The campaign's priors.
        rng: Seeded per round, so a resumed driver chooses the same points.
        budget: Most points to return.
        neighbours: B, neighbours per high-error point.
        test_points: The measured test points.
        test_ids: Their point ids (the parents of their neighbours).
        test_errors: Absolute relative error of the current model on each test point.
        rule: Which test points are high-error.
        ensemble: Predictions of every ensemble member (``disagreement`` only).
        exclude: Points already in the campaign.
    """
    taken = set(exclude or ())
    chosen: list[InferencePoint] = []
    parents: list[int | None] = []

    def keep(point: InferencePoint, parent: int | None) -> bool:
        if point in taken or len(chosen) >= budget:
            return False
        taken.add(point)
        chosen.append(point)
        parents.append(parent)
        return True

    worst = high_error_indices(test_errors, rule) if len(test_errors) else np.array([], int)
    wanted = min(budget, max(1, len(worst)) * neighbours)
    if strategy == "focused":
        for index in worst:
            for point in sampler.neighbours(test_points[index], neighbours, rng):
                keep(point, test_ids[index])
    elif strategy == "random":
        for point in sampler.sample(wanted, rng):
            keep(point, None)
    elif strategy == "disagreement":
        if ensemble is None:
            raise ValueError("the disagreement strategy needs an ensemble")
        pool = [p for p in sampler.sample(wanted * CANDIDATE_FACTOR, rng) if p not in taken]
        if pool:
            for index in disagreement_order(ensemble(pool)):
                if len(chosen) >= wanted:
                    break
                keep(pool[index], None)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return Selection(chosen, parents)
