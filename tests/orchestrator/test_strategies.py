"""How the strategies rank candidates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from featurize import InferencePoint, get_gpu
from llmco2.errors import InvalidRequestError
from orchestrator.config import HighErrorRule, parse_config
from orchestrator.sampling import PointSampler, engine_key
from orchestrator.strategies import (
    CANDIDATE_FACTOR,
    DEFAULT_POINTS_PER_ENGINE,
    HEDGE_FRACTION,
    STRATEGIES,
    RoundChoice,
    Strategy,
    disagreement_order,
    diverse_order,
    engine_value_order,
    experiment_strategies,
    high_error_indices,
    register_strategy,
    round_sizes,
    select,
)
from storage.records import config_key


def test_disagreement_ranks_by_relative_spread_not_by_size() -> None:
    predictions = np.array([
        [100.0, 1.0, 1000.0, 5.0],
        [110.0, 2.0, 1001.0, 5.0],
    ])  # fmt: skip
    # 1 J vs 2 J disagrees far more than 100 J vs 110 J, which beats 1000 J vs 1001 J; the
    # unanimous candidate comes last.
    assert disagreement_order(predictions).tolist() == [1, 0, 2, 3]


def test_high_error_rules_pick_the_worst_first() -> None:
    errors = np.array([0.05, 0.4, 0.2, 0.01, 0.3])
    assert high_error_indices(errors, HighErrorRule(rule="top_fraction", value=0.4)).tolist() == [
        1, 4,
    ]  # fmt: skip
    assert high_error_indices(errors, HighErrorRule(rule="above", value=0.1)).tolist() == [1, 4, 2]


def test_diverse_discounts_a_configuration_for_each_point_it_already_has() -> None:
    # Two candidates of configuration "a" (spreads ≈ 1.0 and 0.9), one of "b" (≈ 0.6).
    spread = np.array([1.0, 0.9, 0.6])
    predictions = np.stack([np.exp(spread), np.exp(-spread)])  # log-std = spread
    keys = ["a", "a", "b"]
    # After "a" is picked once, the other "a" counts 0.9 × 0.5 < 0.6: "b" goes next.
    assert diverse_order(predictions, keys).tolist() == [0, 2, 1]
    # With "a" measured twice before, "b" (0.6) beats "a" (1.0 × 0.25) from the start.
    assert diverse_order(predictions, keys, {"a": 2}).tolist() == [2, 0, 1]
    assert diverse_order(predictions, keys, count=1).tolist() == [0]


def test_diverse_order_is_the_greedy_pick_by_discounted_spread() -> None:
    rng = np.random.default_rng(3)
    predictions = np.exp(rng.normal(size=(3, 200)))
    keys = [f"config-{k}" for k in rng.integers(0, 12, size=200)]
    already = {"config-0": 3, "config-5": 1}
    # The definition, one pick at a time: the highest spread × 0.5^(points of its
    # configuration measured or picked so far).
    spread = np.log(predictions).std(axis=0)
    seen = dict(already)
    left, greedy = list(range(200)), []
    while left:
        best = max(left, key=lambda i: spread[i] * 0.5 ** seen.get(keys[i], 0))
        greedy.append(best)
        left.remove(best)
        seen[keys[best]] = seen.get(keys[best], 0) + 1
    assert diverse_order(predictions, keys, already).tolist() == greedy


def _sampler() -> PointSampler:
    config = parse_config({
        "name": "d", "strategy": "diverse", "training": {"ensemble": 2},
        "priors": {"architectures": {"models": ["qwen2-0.5b", "qwen2-1.5b", "llama3.1-8b"]},
                   "requests": {"batch": [1, 4]}, "gpus": {"tp": [1, 2]}},
    })  # fmt: skip
    return PointSampler(config, [get_gpu("H100-SXM"), get_gpu("A100-80GB")])


def _disputed_llama(points: Sequence[InferencePoint]) -> np.ndarray:
    """An ensemble that disputes Llama-3.1-8B on one H100 only and agrees elsewhere."""
    hot = np.array([
        p.architecture.name.endswith("Llama-3.1-8B") and p.setup.label == "1xH100-SXM"
        for p in points
    ])  # fmt: skip
    base = np.ones(len(points))
    return np.stack([base, np.where(hot, 3.0, 1.0 + 0.01 * np.arange(len(points)) / len(points))])


def test_diverse_rounds_hedge_with_prior_draws_and_spread_over_configurations() -> None:
    sampler = _sampler()
    measured = set(sampler.sample(40, np.random.default_rng(1)))
    test = list(measured)[:10]
    args = {
        "budget": 100, "neighbours": 10, "test_points": test, "test_ids": list(range(10)),
        "test_errors": np.linspace(0.5, 0.01, 10),
        "rule": HighErrorRule(rule="top_fraction", value=0.2), "exclude": measured,
    }  # fmt: skip
    diverse = select("diverse", sampler, np.random.default_rng(2), ensemble=_disputed_llama,
                     **args)  # type: ignore[arg-type]  # fmt: skip
    plain = select("disagreement", sampler, np.random.default_rng(2), ensemble=_disputed_llama,
                   **args)  # type: ignore[arg-type]  # fmt: skip
    wanted = 2 * 10  # two high-error test points × B
    assert len(diverse.points) == len(plain.points) == wanted
    assert not set(diverse.points) & measured and len(set(diverse.points)) == wanted
    assert diverse.parents == [None] * wanted

    def hot(points: Sequence[InferencePoint]) -> int:
        return sum(_disputed_llama(points)[1] == 3.0)

    # Plain disagreement spends the round on the one disputed configuration (as far as the
    # pool holds it); diverse takes a few of it, then moves on to other configurations.
    pool_hot = hot(sampler.sample(wanted * CANDIDATE_FACTOR, np.random.default_rng(2)))
    assert hot(plain.points) >= min(wanted, pool_hot) - 1
    assert 1 <= hot(diverse.points) < hot(plain.points)
    assert len({config_key(p, "simulated") for p in diverse.points}) > len(
        {config_key(p, "simulated") for p in plain.points}
    )
    # The hedge: the first third of the round is a plain prior draw.
    hedge = round(HEDGE_FRACTION * wanted)
    assert (
        diverse.points[:hedge]
        == [p for p in sampler.sample(hedge, np.random.default_rng(2)) if p not in measured][:hedge]
    )


def test_diverse_needs_an_ensemble() -> None:
    sampler = _sampler()
    with pytest.raises(InvalidRequestError, match="needs an ensemble"):
        select("diverse", sampler, np.random.default_rng(0), budget=5, neighbours=5,
               test_points=[], test_ids=[], test_errors=np.array([]),
               rule=HighErrorRule(rule="top_fraction", value=0.1))  # fmt: skip


def test_the_registry_names_every_strategy_a_config_accepts() -> None:
    for name, entry in STRATEGIES.items():
        training = {"ensemble": 2 if entry.needs_ensemble else 1}
        priors = {"architectures": {"models": ["qwen2-0.5b"]}}
        config = parse_config({"name": "r", "strategy": name, "training": training,
                               "priors": priors})  # fmt: skip
        assert config.strategy == name == entry.name
    assert {"focused", "random", "disagreement", "diverse", "cost-aware"} <= set(STRATEGIES)
    with pytest.raises(InvalidRequestError, match="unknown strategy 'psychic'; choose from"):
        select("psychic", _sampler(), np.random.default_rng(0), budget=5, neighbours=5,
               test_points=[], test_ids=[], test_errors=np.array([]),
               rule=HighErrorRule(rule="top_fraction", value=0.1))  # fmt: skip


def test_a_registered_strategy_can_be_named_and_chooses_the_rounds_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("orchestrator.strategies.STRATEGIES", dict(STRATEGIES))

    def first_candidates(choice: RoundChoice) -> None:
        for point in choice.candidates(choice.wanted):
            choice.keep(point)

    mine = Strategy("first-drawn", first_candidates, False, "the first prior draws")
    register_strategy(mine)
    register_strategy(mine)  # the same strategy again: nothing changes
    config = parse_config({"name": "r", "strategy": "first-drawn",
                           "priors": {"architectures": {"models": ["qwen2-0.5b"]}}})  # fmt: skip
    chosen = select(
        config.strategy, PointSampler(config, [get_gpu("H100-SXM")]), np.random.default_rng(0),
        budget=5, neighbours=5, test_points=[], test_ids=[], test_errors=np.array([]),
        rule=HighErrorRule(rule="top_fraction", value=0.1),
    )  # fmt: skip
    assert len(chosen.points) == 5 and chosen.parents == [None] * 5
    with pytest.raises(InvalidRequestError, match="a strategy named 'random' exists already"):
        register_strategy(Strategy("random", first_candidates, False, "an impostor"))
    assert "first-drawn" not in STRATEGIES  # the registry this test changed was a copy


def test_engine_value_order_buys_the_most_disagreement_per_gpu_second() -> None:
    spreads = [np.array([0.2, 0.2, 0.0]), np.array([0.2, 0.2]), np.array([0.5, 0.1, 0.1])]
    points = [np.full(3, 10.0), np.full(2, 10.0), np.full(3, 10.0)]
    # Engine 0 and 1 teach the same (0.4 over their two best); 1 starts in 60 s, 0 in 600 s.
    # Engine 2 teaches 0.6 for a 300 s start: 0.6 / 320 beats 0.4 / 620, loses to 0.4 / 80.
    starts = np.array([600.0, 60.0, 300.0])
    assert engine_value_order(spreads, starts, points, 2, [0, 0, 0]).tolist() == [1, 2, 0]
    # Points of a configuration measured before discount it, by 0.5 per per_engine points:
    # four make engine 1 worth 0.1 / 80, below engine 2 and above engine 0.
    assert engine_value_order(spreads, starts, points, 2, [0, 4, 0]).tolist() == [2, 1, 0]


def test_cost_aware_rounds_take_whole_engine_configurations() -> None:
    sampler = _sampler()
    measured = set(sampler.sample(40, np.random.default_rng(1)))
    test = list(measured)[:10]
    selection = select(
        "cost-aware", sampler, np.random.default_rng(2), budget=100, neighbours=10,
        test_points=test, test_ids=list(range(10)), test_errors=np.linspace(0.5, 0.01, 10),
        rule=HighErrorRule(rule="top_fraction", value=0.2), exclude=measured,
        ensemble=_disputed_llama,
    )  # fmt: skip
    points = selection.points
    assert len(set(points)) == len(points) and not set(points) & measured
    per_engine: dict[object, int] = {}
    for point in points:
        per_engine[engine_key(point)] = per_engine.get(engine_key(point), 0) + 1
    # The round's 2 × B = 20 points, rounded up to whole engine starts of
    # DEFAULT_POINTS_PER_ENGINE (8) points: three starts, each measuring eight.
    assert list(per_engine.values()) == [DEFAULT_POINTS_PER_ENGINE] * 3
    # The disputed configuration (Llama-3.1-8B on one H100) is worth its start: taken first.
    assert _disputed_llama(points[:DEFAULT_POINTS_PER_ENGINE])[1].tolist() == [3.0] * 8


def test_gpu_cost_model_charges_starts_by_size_and_points_by_the_protocol() -> None:
    from featurize import InferenceRequest
    from featurize.point import GpuSetup
    from orchestrator.gpu_cost import GpuCostModel, loaded_engines
    from workers.engines import EngineConfig
    from workers.protocol import ProtocolSettings

    settings = ProtocolSettings(warmups=1, windows=2, min_window_s=2.0, min_requests=2)
    costs = GpuCostModel(settings)
    h100 = get_gpu("H100-SXM")

    def point(model: str, tp: int, batch: int, prompt: int, generated: int) -> InferencePoint:
        from featurize import resolve_architecture

        request = InferenceRequest(batch, prompt, generated)
        return InferencePoint(resolve_architecture(model), request, GpuSetup(h100, tp))

    small, large = point("qwen2-0.5b", 1, 1, 128, 16), point("llama3.1-8b", 1, 1, 128, 16)
    assert 0 < costs.start_seconds(small) < costs.start_seconds(large)
    assert costs.start_seconds(point("llama3.1-8b", 2, 1, 128, 16)) > costs.start_seconds(large)
    seconds = costs.point_seconds([small, point("llama3.1-8b", 1, 4, 2048, 2000),
                                   point("llama3.1-8b", 2, 4, 2048, 2000)])  # fmt: skip
    # Two windows of ≥ 2 s for the request and two for its prefill: the floor of a short one.
    assert 8.0 <= seconds[0] < 10.0
    # Windows of ≥ 1 s and 10 counter updates (100 ms each) halve a short point's windows.
    shorter = GpuCostModel(replace(settings, min_window_s=1.0, min_periods=10))
    assert 4.0 <= shorter.point_seconds([small])[0] < 5.5
    # The counter's updates are a floor of their own: 0.5 s windows of 20 updates last 2 s.
    assert GpuCostModel(replace(settings, min_window_s=0.5)).point_seconds([small])[0] >= 8.0
    assert seconds[1] > 2 * 2 * 2.0 + 2 * 2.0  # a long request's windows hold ≥ 2 requests
    assert seconds[2] > seconds[1]  # two GPUs held
    # An engine already loaded (kept from the last round) costs no start.
    config = EngineConfig(large.architecture, large.precision, 1, h100)
    loaded = GpuCostModel(settings, loaded_engines([config]))
    assert loaded.start_seconds(large) == 0.0 < loaded.start_seconds(small)


def test_strategy_names_with_a_fill_ask_for_engines_filled_and_fewer_chosen_points() -> None:
    plain = round_sizes("diverse", 60, 30, 4)
    assert (plain.strategy, plain.initial, plain.per_round, plain.points_per_engine) == (
        "diverse", 60, 30, None,
    )  # fmt: skip
    eight = round_sizes("random+fill8", 60, 30, 4)
    assert (eight.strategy, eight.initial, eight.per_round, eight.points_per_engine) == (
        "random", 7, 3, 8,
    )  # fmt: skip
    assert round_sizes("random+fill", 60, 30, 4).points_per_engine == 4
    # cost-aware chooses whole engines itself: its rounds keep their size, round 0 is engines.
    engines = round_sizes("cost-aware", 60, 30, 4)
    assert (engines.initial, engines.per_round, engines.points_per_engine) == (15, 30, 4)
    with pytest.raises(InvalidRequestError, match=r"\+fill takes a whole number"):
        round_sizes("random+fillmany", 60, 30, 4)


def test_an_experiments_strategy_list_is_checked_against_what_it_runs() -> None:
    known = ("random", "cost-aware", "oracle")
    assert experiment_strategies("random,random+fill4,oracle", 4, known) == [
        "random", "random+fill4", "oracle",
    ]  # fmt: skip
    with pytest.raises(InvalidRequestError, match=r"unknown strategies \['psychic'\]"):
        experiment_strategies("random,psychic+fill2", 4, known)
    with pytest.raises(InvalidRequestError, match="whole number"):
        experiment_strategies("random+fillx", 4, known)
