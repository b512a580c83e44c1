"""How a round chooses the next points to measure: one interface, a registry of strategies.

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
- ``cost-aware`` (ours, for what a campaign pays, GPU time): whole engine configurations, each
  with its most disputed requests, in the order of the disagreement they buy per GPU-second —
  an engine start (minutes) plus the requests' measurement windows (seconds), from
  :mod:`orchestrator.gpu_cost` — so a round starts few engines and fills each
  (``sampling.points_per_engine`` points, else :data:`DEFAULT_POINTS_PER_ENGINE`; the round's
  size rounded up to whole engines).

Each is a :class:`Strategy` in :data:`STRATEGIES`; the campaign config, the strategy benchmark
and the pool replay take their names from there.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from featurize.point import InferencePoint
from llmco2.errors import InvalidRequestError
from orchestrator.config import HighErrorRule
from orchestrator.gpu_cost import GpuCostModel
from orchestrator.sampling import EngineKey, Sampler, engine_key
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


def log_spread(predictions: np.ndarray) -> np.ndarray:
    """How much the members disagree on each candidate: the std of their log energies."""
    return np.asarray(np.log(np.maximum(predictions, 1e-9)).std(axis=0), dtype=float)


def disagreement_order(predictions: np.ndarray) -> np.ndarray:
    """Candidates, most disputed first: the spread of the members' log energies.

    Args:
        predictions: Energies (J) by each ensemble member, shape (members, candidates).
    """
    return np.argsort(-log_spread(predictions), kind="stable")


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
    spread = log_spread(predictions)
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


@dataclass
class RoundChoice:
    """What a strategy reads of the round, and the points it has chosen so far.

    Attributes:
        sampler: Where the points come from (the campaign's priors).
        rng: Seeded per round, so a resumed driver chooses the same points.
        budget: Most points to choose.
        wanted: Points a round adds (:func:`round_size`): every strategy takes as many.
        neighbours: B, neighbours per high-error point.
        test_points: The measured test points.
        test_ids: Their point ids (the parents of their neighbours).
        test_errors: Absolute relative error of the current model on each test point.
        worst: Indices of the high-error test points, worst first.
        ensemble: Predictions of every ensemble member (None: a single model).
        costs: GPU-seconds of engine starts and points.
        points_per_engine: Points each engine configuration measures
            (``sampling.points_per_engine``), None where not set.
    """

    sampler: Sampler
    rng: np.random.Generator
    budget: int
    wanted: int
    neighbours: int
    test_points: Sequence[InferencePoint]
    test_ids: Sequence[int]
    test_errors: np.ndarray
    worst: np.ndarray
    ensemble: EnsemblePredict | None
    costs: GpuCostModel
    points_per_engine: int | None
    taken: set[InferencePoint] = field(default_factory=set)
    points: list[InferencePoint] = field(default_factory=list)
    parents: list[int | None] = field(default_factory=list)

    def keep(self, point: InferencePoint, parent: int | None = None) -> bool:
        """Choose ``point`` unless it is taken or the budget is spent; whether it was."""
        if point in self.taken or len(self.points) >= self.budget:
            return False
        self.taken.add(point)
        self.points.append(point)
        self.parents.append(parent)
        return True

    def room(self) -> int:
        """Points the strategy may still add to reach :attr:`wanted`."""
        return max(0, self.wanted - len(self.points))

    def candidates(self, count: int) -> list[InferencePoint]:
        """Up to ``count`` fresh prior draws not already taken."""
        return [p for p in self.sampler.sample(count, self.rng) if p not in self.taken]

    def committee(self, strategy: str) -> EnsemblePredict:
        """The ensemble, which ``strategy`` needs."""
        if self.ensemble is None:
            raise InvalidRequestError(f"the {strategy} strategy needs an ensemble")
        return self.ensemble


@dataclass(frozen=True)
class Strategy:
    """A way of choosing a round's points.

    Attributes:
        name: What a campaign config names it by.
        choose: Adds the round's points to a :class:`RoundChoice` (through its ``keep``).
        needs_ensemble: Whether it reads the ensemble's disagreement (``training.ensemble``
            ≥ 2).
        summary: One line for listings.
        whole_engines: Whether it chooses whole engine configurations itself, each with
            ``sampling.points_per_engine`` points (else :data:`DEFAULT_POINTS_PER_ENGINE`).
    """

    name: str
    choose: Callable[[RoundChoice], None]
    needs_ensemble: bool
    summary: str
    whole_engines: bool = False


def _focused(choice: RoundChoice) -> None:
    for index in choice.worst:
        point = choice.test_points[index]
        for neighbour in choice.sampler.neighbours(point, choice.neighbours, choice.rng):
            choice.keep(neighbour, choice.test_ids[index])


def _random(choice: RoundChoice) -> None:
    for point in choice.sampler.sample(choice.wanted, choice.rng):
        choice.keep(point)


def _disagreement(choice: RoundChoice) -> None:
    ensemble = choice.committee("disagreement")
    pool = choice.candidates(choice.wanted * CANDIDATE_FACTOR)
    if pool:
        for index in disagreement_order(ensemble(pool)):
            if not choice.room():
                break
            choice.keep(pool[index])


def _diverse(choice: RoundChoice) -> None:
    ensemble = choice.committee("diverse")
    for point in choice.sampler.sample(round(HEDGE_FRACTION * choice.wanted), choice.rng):
        choice.keep(point)
    pool = choice.candidates(choice.wanted * CANDIDATE_FACTOR)
    if pool:
        engine = choice.sampler.config.engine
        already = Counter(config_key(point, engine) for point in choice.taken)
        keys = [config_key(point, engine) for point in pool]
        for index in diverse_order(ensemble(pool), keys, already, count=choice.room()):
            choice.keep(pool[index])


def engine_value_order(
    spreads: Sequence[np.ndarray],
    start_seconds: np.ndarray,
    point_seconds: Sequence[np.ndarray],
    per_engine: int,
    already: Sequence[int],
) -> np.ndarray:
    """Engine configurations, most disagreement bought per GPU-second first.

    A configuration is worth the spread of its ``per_engine`` most disputed candidates,
    discounted by :data:`CONFIGURATION_DISCOUNT` per ``per_engine`` points of it measured before,
    and costs its engine start plus the measurement of those candidates.

    Args:
        spreads: Per configuration, its candidates' spreads (log energies across members).
        start_seconds: GPU-seconds of starting each configuration's engine.
        point_seconds: Per configuration, GPU-seconds of measuring each candidate.
        per_engine: Points measured per engine start.
        already: Points of each configuration measured (or chosen) before.
    """
    value = np.empty(len(spreads))
    for k, (spread, seconds) in enumerate(zip(spreads, point_seconds, strict=True)):
        top = np.argsort(-spread, kind="stable")[:per_engine]
        discount = CONFIGURATION_DISCOUNT ** (already[k] / per_engine)
        value[k] = spread[top].sum() * discount / (start_seconds[k] + seconds[top].sum())
    return np.argsort(-value, kind="stable")


def whole_engines(
    spreads: Sequence[np.ndarray],
    start_seconds: np.ndarray,
    point_seconds: Sequence[np.ndarray],
    per_engine: int,
    already: Sequence[int],
    wanted: int,
    budget: int,
) -> list[tuple[int, np.ndarray]]:
    """The configurations ``cost-aware`` measures, each with the candidates it takes.

    Configurations in :func:`engine_value_order`, each with its ``per_engine`` most disputed
    candidates, until ``wanted`` points are taken — the last configuration whole, as an engine
    start measures it anyway — but never more than ``budget``.

    Returns:
        ``(configuration, positions of its candidates)`` pairs, in the order taken.
    """
    picks: list[tuple[int, np.ndarray]] = []
    taken = 0
    for k in engine_value_order(spreads, start_seconds, point_seconds, per_engine, already):
        if taken >= min(wanted, budget):
            break
        top = np.argsort(-spreads[k], kind="stable")[: min(per_engine, budget - taken)]
        picks.append((int(k), top))
        taken += len(top)
    return picks


def _cost_aware(choice: RoundChoice) -> None:
    """Whole engine configurations, by the disagreement they buy per GPU-second."""
    ensemble = choice.committee("cost-aware")
    per_engine = choice.points_per_engine or DEFAULT_POINTS_PER_ENGINE
    # Configurations drawn from the priors (so common ones come first), as many as make a
    # candidate pool the size the other strategies draw: CANDIDATE_FACTOR × the round.
    most = CANDIDATE_FACTOR * math.ceil(choice.wanted / per_engine) // 2
    groups: dict[EngineKey, list[InferencePoint]] = {}
    for point in choice.candidates(choice.wanted * CANDIDATE_FACTOR):
        if engine_key(point) in groups or len(groups) < most:
            groups.setdefault(engine_key(point), []).append(point)
    if not groups:
        return
    pool: list[InferencePoint] = []
    owner: list[int] = []
    for k, drawn in enumerate(groups.values()):
        # Requests enough to choose from inside each engine, beyond the prior's few draws.
        extra = per_engine * 2 - len(drawn)
        members = list(drawn)
        if extra > 0:
            taken = choice.taken | set(pool) | set(drawn)
            members += choice.sampler.same_engine(drawn[0], extra, choice.rng, taken)
        pool.extend(members)
        owner.extend([k] * len(members))
    spread = log_spread(ensemble(pool))
    seconds = choice.costs.point_seconds(pool)
    owners = np.array(owner)
    members_of = [np.flatnonzero(owners == k) for k in range(len(groups))]
    engine = choice.sampler.config.engine
    measured = Counter(config_key(point, engine) for point in choice.taken)
    firsts = [pool[m[0]] for m in members_of]
    picks = whole_engines(
        [spread[m] for m in members_of],
        np.array([choice.costs.start_seconds(p) for p in firsts]),
        [seconds[m] for m in members_of],
        per_engine,
        [measured.get(config_key(p, engine), 0) for p in firsts],
        choice.room(),
        choice.budget - len(choice.points),
    )
    for k, positions in picks:
        for index in members_of[k][positions]:
            choice.keep(pool[index])


#: Points per engine start of ``cost-aware`` where ``sampling.points_per_engine`` is not set.
DEFAULT_POINTS_PER_ENGINE = 8

#: Every strategy a campaign can name, by name.
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("focused", _focused, False,
                 "the paper's: B neighbours of each high-error test point"),
        Strategy("random", _random, False, "fresh draws from the priors"),
        Strategy("disagreement", _disagreement, True,
                 "prior draws the ensemble disagrees on most"),
        Strategy("diverse", _diverse, True,
                 "disagreement spread over engine configurations, a third plain draws"),
        Strategy("cost-aware", _cost_aware, True,
                 "whole engine configurations, by disagreement bought per GPU-second",
                 whole_engines=True),
    )
}  # fmt: skip


#: Suffix of a strategy name that chooses engine configurations and fills each
#: (``random+fill4``): the experiments' name for a campaign with ``sampling.points_per_engine``.
FILL_SUFFIX = "+fill"


@dataclass(frozen=True)
class RoundSizes:
    """The sampling a strategy name asks of a campaign (see :func:`round_sizes`)."""

    strategy: str
    initial: int
    per_round: int
    points_per_engine: int | None


def round_sizes(name: str, initial: int, per_round: int, points_per_engine: int) -> RoundSizes:
    """A campaign's strategy and round sizes for a strategy name of the experiments.

    ``STRATEGY+fillN`` (``+fill`` alone: N = ``points_per_engine``) is ``STRATEGY`` choosing
    engine configurations rather than points: ``initial`` and ``per_round`` divided by N and
    ``sampling.points_per_engine: N``, so a round measures about as many points over fewer
    engine starts. A strategy that chooses whole engines itself (``cost-aware``) takes N points
    per engine and a round 0 of ``initial`` ÷ N engines, each filled to N.

    Args:
        name: A strategy name, with or without the fill suffix.
        initial: A, the points of round 0.
        per_round: Points a round adds.
        points_per_engine: N where the name does not say it.

    Raises:
        InvalidRequestError: A fill suffix that is not followed by a whole number.
    """
    base, marker, count = name.partition(FILL_SUFFIX)
    if marker and count and not count.isdigit():
        raise InvalidRequestError(
            f"strategy {name!r}: {FILL_SUFFIX} takes a whole number of points"
        )
    fill = (int(count) if count else points_per_engine) if marker else None
    if base in STRATEGIES and STRATEGIES[base].whole_engines:
        fill = fill or points_per_engine
        return RoundSizes(base, max(1, initial // fill), per_round, fill)
    if fill is not None:
        return RoundSizes(base, max(1, initial // fill), max(1, per_round // fill), fill)
    return RoundSizes(base, initial, per_round, None)


def experiment_strategies(text: str, points_per_engine: int, known: Sequence[str]) -> list[str]:
    """The comma-separated strategy names of an experiment's ``--strategies``, checked.

    Args:
        text: Names, each a strategy of ``known`` with or without a fill (:func:`round_sizes`).
        points_per_engine: N of a bare ``+fill``.
        known: The strategies the experiment runs.

    Raises:
        InvalidRequestError: A malformed fill or a strategy not in ``known``.
    """
    names = [name for name in text.split(",") if name]
    bases = {round_sizes(name, 1, 1, points_per_engine).strategy for name in names}
    unknown = sorted(bases - set(known))
    if unknown:
        raise InvalidRequestError(f"unknown strategies {unknown}; choose from {', '.join(known)}")
    return names


def register_strategy(new: Strategy) -> None:
    """Add ``new`` to :data:`STRATEGIES`, so that a campaign config can name it.

    For strategies outside the product (an experiment's yardstick, such as the strategy
    benchmark's oracle); registering the same strategy again does nothing.

    Raises:
        InvalidRequestError: Another strategy has that name.
    """
    known = STRATEGIES.get(new.name)
    if known is not None and known != new:
        raise InvalidRequestError(f"a strategy named {new.name!r} exists already")
    STRATEGIES[new.name] = new


def strategy(name: str) -> Strategy:
    """The strategy called ``name``.

    Raises:
        InvalidRequestError: No strategy of that name.
    """
    try:
        return STRATEGIES[name]
    except KeyError:
        raise InvalidRequestError(
            f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}"
        ) from None


def select(
    strategy_name: str,
    sampler: Sampler,
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
    costs: GpuCostModel | None = None,
) -> Selection:
    """The next round's points, at most ``budget`` of them.

    Args:
        strategy_name: A name of :data:`STRATEGIES`.
        sampler: The campaign's priors.
        rng: Seeded per round, so a resumed driver chooses the same points.
        budget: Most points to return.
        neighbours: B, neighbours per high-error point.
        test_points: The measured test points.
        test_ids: Their point ids (the parents of their neighbours).
        test_errors: Absolute relative error of the current model on each test point.
        rule: Which test points are high-error.
        ensemble: Predictions of every ensemble member (the strategies that need one).
        exclude: Points already in the campaign.
        costs: GPU-seconds of starts and points (default: the twin's, the default protocol).
    """
    chosen = strategy(strategy_name)
    worst = high_error_indices(test_errors, rule)
    choice = RoundChoice(
        sampler, rng, budget, round_size(budget, neighbours, len(worst)), neighbours,
        test_points, test_ids, test_errors, worst, ensemble, costs or GpuCostModel(),
        sampler.config.sampling.points_per_engine, taken=set(exclude or ()),
    )  # fmt: skip
    chosen.choose(choice)
    return Selection(choice.points, choice.parents)
