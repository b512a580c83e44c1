"""How a round chooses the next points to measure (one interface, four strategies).

- ``focused`` (the paper's Algorithm 1): the test points the current model predicts worst, and
  B neighbours within ±C of each.
- ``random`` (its baseline): as many fresh points from the priors.
- ``disagreement`` (ours, needs no measured truth to choose): a pool of unmeasured candidates
  drawn from the priors — so common configurations are proportionally more likely — and the
  ones on which an ensemble of predictors disagrees most (spread of their log energies).
- ``diverse`` (ours, needs no measured truth either): disagreement spread over engine
  configurations — a candidate's spread is discounted for every point of its engine
  configuration (the stored ``config_key``) already measured or chosen, so one
  disputed configuration cannot take the whole round — and a share of the round drawn plainly
  from the priors, a hedge for the rounds in which the ensemble's spread is a poor guide to its
  error (on the twin its rank correlation with the true error is 0.03–0.23:
  ``experiments/benchmarks/spread_vs_error.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from featurize.point import InferencePoint
from llmco2.errors import InvalidRequestError
from orchestrator.config import HighErrorRule
from orchestrator.sampling import PointSampler
from storage.records import config_key

#: Energies (J, total) of points by each ensemble member: shape (members, points).
EnsemblePredict = Callable[[Sequence[InferencePoint]], np.ndarray]

#: Candidates drawn per point chosen by the disagreement strategies.
CANDIDATE_FACTOR = 8

#: ``diverse``: share of a round drawn plainly from the priors.
HEDGE_FRACTION = 1 / 3

#: ``diverse``: factor on a candidate's spread per point of its engine configuration already
#: measured or chosen.
CONFIGURATION_DISCOUNT = 0.5


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


def _log_spread(predictions: np.ndarray) -> np.ndarray:
    """How much the members disagree on each candidate: the std of their log energies."""
    return np.asarray(np.log(np.maximum(predictions, 1e-9)).std(axis=0), dtype=float)


def disagreement_order(predictions: np.ndarray) -> np.ndarray:
    """Candidates, most disputed first: the spread of the members' log energies.

    Args:
        predictions: Energies (J) by each ensemble member, shape (members, candidates).
    """
    return np.argsort(-_log_spread(predictions), kind="stable")


def diverse_order(
    predictions: np.ndarray,
    keys: Sequence[str],
    already: Mapping[str, int] | None = None,
    count: int | None = None,
) -> np.ndarray:
    """Candidates in the order ``diverse`` takes them.

    Greedy on discounted spread: each pick multiplies the spread of the remaining candidates of
    its engine configuration by :data:`CONFIGURATION_DISCOUNT`, as do the points of that
    configuration measured before. Since a configuration's candidates are then taken most
    disputed first, that greedy order is a sort: each candidate's spread times the discount to
    the power of the points of its configuration ahead of it (measured, or more disputed).

    Args:
        predictions: Energies (J) by each ensemble member, shape (members, candidates).
        keys: Each candidate's engine configuration.
        already: Points per engine configuration measured (or chosen) before.
        count: Keep only the first ``count`` (default: order them all).
    """
    spread = _log_spread(predictions)
    ahead = dict(already or {})
    power = np.empty(len(keys), dtype=float)
    for index in np.argsort(-spread, kind="stable"):
        power[index] = ahead.get(keys[index], 0)
        ahead[keys[index]] = int(power[index]) + 1
    order = np.argsort(-(spread * CONFIGURATION_DISCOUNT**power), kind="stable")
    return order if count is None else order[:count]


def round_size(budget: int, neighbours: int, high_error_count: int) -> int:
    """Points a round adds: B per high-error test point (at least one), at most ``budget``.

    Every strategy takes as many as focused resampling would, so they compare at equal cost.
    """
    return min(budget, max(1, high_error_count) * neighbours)


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

    worst = high_error_indices(test_errors, rule)
    wanted = round_size(budget, neighbours, len(worst))
    if strategy == "focused":
        for index in worst:
            for point in sampler.neighbours(test_points[index], neighbours, rng):
                keep(point, test_ids[index])
    elif strategy == "random":
        for point in sampler.sample(wanted, rng):
            keep(point, None)
    elif strategy == "disagreement":
        if ensemble is None:
            raise InvalidRequestError("the disagreement strategy needs an ensemble")
        pool = [p for p in sampler.sample(wanted * CANDIDATE_FACTOR, rng) if p not in taken]
        if pool:
            for index in disagreement_order(ensemble(pool)):
                if len(chosen) >= wanted:
                    break
                keep(pool[index], None)
    elif strategy == "diverse":
        if ensemble is None:
            raise InvalidRequestError("the diverse strategy needs an ensemble")
        hedge = round(HEDGE_FRACTION * wanted)
        for point in sampler.sample(hedge, rng):
            keep(point, None)
        pool = [p for p in sampler.sample(wanted * CANDIDATE_FACTOR, rng) if p not in taken]
        if pool:
            engine = sampler.config.engine
            already = Counter(config_key(point, engine) for point in taken)
            keys = [config_key(point, engine) for point in pool]
            for index in diverse_order(ensemble(pool), keys, already, count=wanted - len(chosen)):
                keep(pool[index], None)
    else:
        raise InvalidRequestError(f"unknown strategy {strategy!r}")
    return Selection(chosen, parents)
