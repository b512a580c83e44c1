"""What holds an object still alive: the chain the pool logs when a closed engine stays."""

from __future__ import annotations

import gc
from typing import Any

from workers.leftovers import live_cuda_tensors, referrer_chain


class _Weights:
    """Stands for a tensor: an object the collector tracks."""


class _Runner:
    model: _Weights


class _Engine:
    runner: _Runner


class _Registry:
    def __init__(self) -> None:
        self.kept: dict[str, Any] = {}


def _registered_engine() -> tuple[_Weights, _Registry]:
    weights = _Weights()
    engine = _Engine()
    engine.runner = _Runner()
    engine.runner.model = weights
    registry = _Registry()
    registry.kept["engine"] = engine
    return weights, registry


def test_the_chain_names_each_holder_and_how_it_holds() -> None:
    weights, _registry = _registered_engine()  # kept alive: the chain ends at it
    assert referrer_chain(weights, depth=4) == [
        f"{__name__}._Runner.model",
        f"{__name__}._Engine.runner",
        "builtins.dict['engine']",
        f"{__name__}._Registry.kept",
    ]
    weights, _registry = _registered_engine()  # kept alive: the chain ends at it
    assert referrer_chain(weights, depth=2) == [
        f"{__name__}._Runner.model",
        f"{__name__}._Engine.runner",
    ]


def test_a_saved_traceback_shows_as_the_frame_that_held_the_object() -> None:
    weights = _Weights()

    def fails(model: object) -> None:
        raise RuntimeError("out of memory")

    try:
        fails(weights)
    except RuntimeError as exc:
        saved = exc
    # The only holder besides this test's own frame (skipped: a call under way) is the frame
    # the exception's traceback keeps.
    chain = referrer_chain(weights, depth=1)
    assert len(chain) == 1
    assert chain[0].startswith("frame test_a_saved_traceback_shows_as_the_frame_that_held")
    assert ".<locals>.fails (" in chain[0]
    del saved


def test_the_callers_own_containers_are_not_holders() -> None:
    weights = _Weights()
    inspected = [weights]
    assert referrer_chain(weights, ignore=(inspected,)) == []
    assert referrer_chain(weights)[:1] == ["builtins.list"]


def test_a_freed_object_has_no_chain_and_a_process_without_cuda_no_tensors() -> None:
    assert referrer_chain(_Weights()) == []
    gc.collect()
    assert live_cuda_tensors() == {}
