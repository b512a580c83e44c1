"""Inference engines behind one interface: vLLM, transformers and the simulated twin.

Engines are looked up by name (or ``package.module:Class`` for a plug-in engine); each module
imports its heavy dependency (vllm, torch) only when an engine loads, so this registry is cheap to
import anywhere.
"""

from __future__ import annotations

import importlib

from llmco2.errors import EngineUnavailableError
from workers.engines.base import EngineConfig, InferenceEngine, RunResult

ENGINE_NAMES: tuple[str, ...] = ("vllm", "transformers", "simulated")
_BUILTIN = {
    "vllm": "workers.engines.vllm_engine:VllmEngine",
    "transformers": "workers.engines.transformers_engine:TransformersEngine",
    "simulated": "workers.engines.simulated:SimulatedEngine",
}


def engine_class(name: str) -> type[InferenceEngine]:
    """The engine class called ``name``.

    Raises:
        EngineUnavailableError: Unknown engine name or unimportable plug-in.
    """
    target = _BUILTIN.get(name, name if ":" in name else None)
    if target is None:
        raise EngineUnavailableError(
            f"unknown engine {name!r} (choose one of {', '.join(ENGINE_NAMES)})"
        )
    module_name, _, class_name = target.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise EngineUnavailableError(f"cannot import engine {name!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, InferenceEngine)):
        raise EngineUnavailableError(f"{name!r} is not an InferenceEngine")
    return found


def create_engine(name: str, config: EngineConfig) -> InferenceEngine:
    """An (unloaded) engine of kind ``name``."""
    return engine_class(name)(config)


def engine_uses_gpus(name: str, config: EngineConfig) -> bool:
    """Whether an actor of this engine must hold real GPUs."""
    return engine_class(name).uses_gpus and config.gpu is not None


__all__ = [
    "ENGINE_NAMES",
    "EngineConfig",
    "InferenceEngine",
    "RunResult",
    "create_engine",
    "engine_class",
    "engine_uses_gpus",
]
