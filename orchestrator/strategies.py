"""How a round chooses the next points to measure (one interface, four strategies).

- ``focused`` (the paper's Algorithm 1): the test points the current model predicts worst, and
  B neighbours within ±C of each.
- ``random`` (its baseline): as many fresh points from the priors.
- ``disagreement`` (ours, needs no measured truth to choose): a pool of unmeasured candidates
  drawn from the priors — so common configurations are proportionally more likely — and the
  ones on which an ensemble of predictors disagrees most (spread of their log energies).
- ``diverse`` (ours, needs no measured truth either): disagreement spread over engine
  configurations — a candidate's spread is discounted for every point of its engine
  configuration (architecture, GPU setup, precision) already measured or chosen, so one
  disputed configuration cannot take the whole round — and a share of the round drawn plainly
  from the priors, a hedge for the rounds in which the ensemble's spread is a poor guide to its
  error (on the twin its rank correlation with the true error is 0.03–0.23:
  ``experiments/benchmarks/spread_vs_error.py``).
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

#: Candidates drawn per point chosen by the disagreement strategies.
CANDIDATE_FACTOR = 8

#: ``diverse``: share of a round drawn plainly from the priors.
HEDGE_FRACTION = 1 / 3

#: ``diverse``: factor on a candidate's spread per point of its engine configuration already
#: measured or chosen.
CONFIGURATION_DISCOUNT = 0.5

#: What makes points share an engine load.
EngineKey = tuple[object, ...]


def engine_key(point: InferencePoint) -> EngineKey:
    """The engine configuration of ``point``; points with one key share an engine load.

    Architecture, precision, attention kernel and GPU setup.
    """
    return (point.architecture, point.precision, point.flash_attention, point.setup)


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


def diverse_order(
    predictions: np.ndarray,
    keys: Sequence[EngineKey],
    already: dict[EngineKey, int] | None = None,
    count: int | None = None,
) -> np.ndarray:
    """Candidates in the order ``diverse`` takes them: greedy on discounted spread.

    Each pick multiplies the spread of every remaining candidate of its engine configuration
    by :data:`CONFIGURATION_DISCOUNT`, as do the points of that configuration measured before.

    Args:
        predictions: Energies (J) by each ensemble member, shape (members, candidates).
        keys: Each candidate's engine configuration.
        already: Points per engine configuration measured (or chosen) before.
        count: Stop after this many (default: order them all).
    """
    spread = np.log(np.maximum(predictions, 1e-9)).std(axis=0)
    codes: dict[EngineKey, int] = {}
    code_of = np.array([codes.setdefault(key, len(codes)) for key in keys], dtype=int)
    seen = np.zeros(len(codes), dtype=float)
    for key, code in codes.items():
        seen[code] = (already or {}).get(key, 0)
    alive = np.ones(len(keys), dtype=bool)
    order: list[int] = []
    for _ in range(len(keys) if count is None else min(count, len(keys))):
        score = np.where(alive, spread * CONFIGURATION_DISCOUNT ** seen[code_of], -np.inf)
        best = int(np.argmax(score))
        order.append(best)
        alive[best] = False
        seen[code_of[best]] += 1
    return np.array(order, dtype=int)


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
        strategy: ``focused``, ``random``, ``disagreement`` or ``diverse``.
        sampler: The campaign's priors.
        rng: Seeded per round, so a resumed driver chooses the same points.
        budget: Most points to return.
        neighbours: B, neighbours per high-error point.
        test_points: The measured test points.
        test_ids: Their point ids (the parents of their neighbours).
        test_errors: Absolute relative error of the current model on each test point.
        rule: Which test points are high-error.
        ensemble: Predictions of every ensemble member (``disagreement`` and ``diverse``).
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
    elif strategy == "diverse":
        if ensemble is None:
            raise ValueError("the diverse strategy needs an ensemble")
        hedge = round(HEDGE_FRACTION * wanted)
        for point in sampler.sample(hedge, rng):
            keep(point, None)
        pool = [p for p in sampler.sample(wanted * CANDIDATE_FACTOR, rng) if p not in taken]
        if pool:
            already: dict[EngineKey, int] = {}
            for point in taken:
                already[engine_key(point)] = already.get(engine_key(point), 0) + 1
            keys = [engine_key(p) for p in pool]
            for index in diverse_order(ensemble(pool), keys, already, count=wanted - len(chosen)):
                keep(pool[index], None)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return Selection(chosen, parents)
