"""The engine interface: load an architecture once, run many requests on it.

An engine runs requests of exact shape: ``batch`` sequences of ``prompt`` random token ids each,
generating exactly ``generated`` tokens per sequence (end-of-sequence ignored), with prefix caching
off so repeated prompts are not cache hits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from featurize.architecture import Architecture
from featurize.gpus import Gpu
from featurize.precision import Precision
from featurize.request import InferenceRequest
from llmco2.errors import InfeasibleConfigError
from workers.devices import Clock, CounterSource, RealClock

if TYPE_CHECKING:
    from workers.serving import ServingSession


@dataclass(frozen=True)
class EngineConfig:
    """What one engine instance serves (one Ray actor per configuration).

    Attributes:
        architecture: The model shape (weights are random/dummy).
        precision: Bit widths.
        tp: Tensor-parallel degree (GPUs the engine uses).
        gpu: The GPU type, or None for a CPU engine.
        flash_attention: Fused attention kernel (False only for the transformers engine).
        seed: Seed of prompts, dummy weights and (simulated) noise.
    """

    architecture: Architecture
    precision: Precision
    tp: int = 1
    gpu: Gpu | None = None
    flash_attention: bool = True
    seed: int = 0


@dataclass(frozen=True)
class RunResult:
    """One request as the engine ran it."""

    latency_s: float
    output_tokens: int


class InferenceEngine(ABC):
    """Base of the vLLM, transformers and simulated engines.

    Contract: ``load`` once (it may raise :class:`~llmco2.errors.InfeasibleConfigError` for an
    out-of-memory or unsupported configuration), then ``run`` any number of requests, then
    ``close``. Implementations are importable without their heavy dependencies.
    """

    name: ClassVar[str]
    #: Whether the engine runs on the configuration's GPUs (False: a model of them).
    uses_gpus: ClassVar[bool] = True

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng(config.seed)
        self._version = "unknown"  # set by load() once the engine library is imported
        #: Seconds of each phase of ``load`` the engine times itself (``import_s``,
        #: ``engine_init_s``, ...), recorded with every measurement of this engine start.
        self.load_phases: dict[str, float] = {}
        self._counters: CounterSource | None = None  # set by load() on GPUs

    @classmethod  # noqa: B027 (most engines have no such settings)
    def check_environment(cls) -> None:
        """Refuse, before any work starts, settings of this engine the environment gets wrong.

        Raises:
            Llmco2Error: A setting that cannot be used (the engine's own subclass of it).
        """

    @abstractmethod
    def load(self) -> None:
        """Build the engine (weights, caches, compiled graphs)."""

    @abstractmethod
    def run(self, request: InferenceRequest) -> RunResult:
        """Run one request to completion."""

    @property
    def version(self) -> str:
        """Engine name and version, recorded with every measurement."""
        return self._version

    @property
    def settings(self) -> dict[str, Any]:
        """How the engine was started, where that can change what it measures (recorded)."""
        return {}

    def counter_source(self) -> CounterSource | None:
        """Energy counters of the devices the engine runs on (None: no energy metering)."""
        return self._counters

    def clock(self) -> Clock:
        """The clock the measurement protocol uses with this engine."""
        return RealClock()

    def close(self) -> None:  # noqa: B027 (engines without devices have nothing to release)
        """Release the engine's devices."""

    def leftovers(self) -> dict[str, Any]:
        """What of this closed engine is still alive in this process, and what holds it.

        Asked when a closed engine's GPUs did not come back; empty for an engine that leaves
        nothing in the caller's process.
        """
        return {}

    def serving_session(self, max_num_seqs: int, max_context: int) -> ServingSession:
        """This loaded engine serving continuously batched requests (:mod:`workers.serving`).

        Args:
            max_num_seqs: Sequences its scheduler runs at once, where the engine takes it now.
            max_context: Most prompt plus output tokens of a request it will be sent.

        Raises:
            InfeasibleConfigError: The engine has no continuous batching.
        """
        raise InfeasibleConfigError(
            f"the {self.name} engine does not serve continuously batched requests"
        )

    def prompt_token_ids(self, request: InferenceRequest) -> list[list[int]]:
        """Random prompts: ``batch`` lists of ``prompt`` token ids (ids ≥ 100, off specials)."""
        vocab = self.config.architecture.vocab_size
        ids = self._rng.integers(100, vocab, size=(request.batch_size, request.prompt_tokens))
        return [row.tolist() for row in ids]
