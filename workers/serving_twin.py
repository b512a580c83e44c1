"""A continuous-batching engine on tabulated step costs: the twin of a serving deployment.

A deployment under continuous batching runs one forward pass per scheduler step over every
running sequence: each decode step reads the weights once for all of them and each sequence's KV
cache, and a request entering the batch has its prompt prefilled in the step that admits it. Given
what uniform batches cost (a cost function of inference points: the llmco2 predictor's physics
times learned correction in :mod:`gnn.serving`, or the simulated engine's twin),
:class:`StepCosts` tabulates it on a grid of batch sizes and context lengths (one decode step of
``b`` sequences at context ``n``: the decode energy and time of a ``b``-sequence request per
generated token; one prefill of ``p`` tokens: the prefill of a one-sequence request, and what one
more such sequence adds to it) and interpolates between grid points. :class:`ServingTwin` is a
scheduler on that table with a virtual clock and an energy counter, a
:class:`~workers.serving.StepEngine` that :func:`workers.serving.serve` drives as it drives vLLM.

A step's prefills run in one forward pass: the first pays the pass's set-up (what a one-sequence
prefill costs), each further one what one more sequence adds to a two-sequence prefill of its
length. The step's decode runs in the same pass: the shorter of prefill and decode time hides under
the longer, and the GPUs' static power is paid once over it. Time the engine waits for arrivals
costs the GPUs' static power. A :class:`StepCorrection` (learned from serving measurements in
:mod:`gnn.serving_correction`; the identity by default) rescales each step's decode and prefill
parts and sets a floor of host time under it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np
import numpy.typing as npt

from featurize.architecture import Architecture
from featurize.memory import estimate_memory
from featurize.point import GpuSetup, InferencePoint
from featurize.precision import Precision
from featurize.request import InferenceRequest
from llmco2.errors import InvalidRequestError
from workers.serving import ServingLoad, ServingResult, StepProgress, serve, summarise

#: Sequences per decode step on the grid (up to the engine's ``max_num_seqs``).
BATCH_GRID = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
#: Context lengths on the grid: this many points log-spaced from 16 tokens to the limit.
CONTEXT_POINTS = 10
#: Decode steps of each grid point's request (its context grows by as many tokens).
GRID_DECODE_STEPS = 16
#: Sequences vLLM runs at once unless told otherwise (its serving default).
DEFAULT_MAX_NUM_SEQS = 256
#: What points cost: energy ``(N, 2)`` and seconds ``(N, 2)`` of prefill and decode (J, s).
CostFunction = Callable[[Sequence[InferencePoint]], tuple[np.ndarray, np.ndarray]]


def _log_grid(low: float, high: float, points: int) -> np.ndarray:
    return np.unique(np.round(np.geomspace(low, max(high, low + 1), points)).astype(int))


@dataclass(frozen=True)
class StepCosts:
    """Seconds and joules (all GPUs) of decode steps and prefills of one configuration.

    Attributes:
        batch: Batch sizes of the decode grid.
        context: Context lengths of the decode grid (tokens).
        decode_s: ``(len(batch), len(context))`` seconds of one decode step.
        decode_j: The same in joules.
        prompt: Prompt lengths of the prefill grid.
        prefill_s: ``(2, len(prompt))`` seconds of one prefill of each, alone (row 0) and what
            one more such sequence adds to a forward pass that prefills another (row 1).
        prefill_j: The same in joules.
        idle_w: Power of the GPUs while the engine waits (W, all GPUs).
        weight_bytes: Bytes of weights each GPU reads per forward pass.
        kv_bytes_per_token: Bytes of KV cache each GPU holds per token of context.
    """

    batch: np.ndarray
    context: np.ndarray
    decode_s: np.ndarray
    decode_j: np.ndarray
    prompt: np.ndarray
    prefill_s: np.ndarray
    prefill_j: np.ndarray
    idle_w: float
    weight_bytes: float = 0.0
    kv_bytes_per_token: float = 0.0

    def kv_share(self, total_context: float) -> float:
        """KV cache's share of what a decode step over ``total_context`` tokens reads."""
        kv = self.kv_bytes_per_token * total_context
        return kv / (kv + self.weight_bytes) if kv > 0 else 0.0

    @classmethod
    def tabulate(
        cls,
        costs: CostFunction,
        idle_w: float,
        architecture: Architecture,
        setup: GpuSetup,
        precision: Precision,
        max_num_seqs: int,
        max_context: int,
    ) -> StepCosts:
        """Tabulate one configuration's costs.

        Args:
            costs: Energy ``(N, 2)`` and seconds ``(N, 2)`` of prefill and decode of points.
            idle_w: Power of the configuration's GPUs while the engine waits (W, all GPUs).
            architecture: The model shape.
            setup: GPU type and count.
            precision: Bit widths.
            max_num_seqs: Sequences the engine runs at once (the batch grid's end).
            max_context: Prompt plus output tokens at most (the context grid's end).

        Raises:
            InvalidRequestError: ``max_num_seqs`` or ``max_context`` out of range.
        """
        if max_num_seqs < 1:
            raise InvalidRequestError(f"max_num_seqs must be ≥ 1, got {max_num_seqs}")
        if max_context < 2 * GRID_DECODE_STEPS:
            raise InvalidRequestError(f"max_context must be ≥ {2 * GRID_DECODE_STEPS} tokens")
        batch = np.array([b for b in BATCH_GRID if b < max_num_seqs] + [max_num_seqs])
        context = _log_grid(16 + GRID_DECODE_STEPS, max_context, CONTEXT_POINTS)
        prompt = _log_grid(1, max_context, CONTEXT_POINTS + 2)

        def point(request: InferenceRequest) -> InferencePoint:
            return InferencePoint(architecture, request, setup, precision)

        half = GRID_DECODE_STEPS // 2
        decode_points = [
            point(InferenceRequest(int(b), int(n) - half, GRID_DECODE_STEPS + 1))
            for b in batch
            for n in context
        ]
        prefill_points = [point(InferenceRequest(b, int(p), 2)) for b in (1, 2) for p in prompt]
        energy, seconds = costs(decode_points + prefill_points)
        # One sequence of one token of context: the weights, and the KV cache per token.
        one = InferenceRequest(1, 1, 1)
        memory = estimate_memory(point(one))
        single, double = (
            slice(count := len(decode_points), count + len(prompt)),
            slice(count + len(prompt), None),
        )
        shape = (len(batch), len(context))
        steps = float(GRID_DECODE_STEPS)
        return cls(
            batch=batch,
            context=context,
            decode_s=(seconds[:count, 1] / steps).reshape(shape),
            decode_j=(energy[:count, 1] / steps).reshape(shape),
            prompt=prompt,
            # What a second sequence adds is never taken as a saving.
            prefill_s=np.stack(
                [seconds[single, 0], np.maximum(seconds[double, 0] - seconds[single, 0], 0.0)]
            ),
            prefill_j=np.stack(
                [energy[single, 0], np.maximum(energy[double, 0] - energy[single, 0], 0.0)]
            ),
            idle_w=idle_w,
            weight_bytes=memory.weight_bytes,
            kv_bytes_per_token=memory.kv_cache_bytes / one.context_tokens,
        )

    @cached_property
    def _log_context(self) -> np.ndarray:
        return np.asarray(np.log(self.context), dtype=np.float64)

    def decode(self, sequences: float, context: float) -> tuple[float, float]:
        """Seconds and joules of one decode step of ``sequences`` at mean ``context`` tokens.

        Bilinear in batch size and log context between grid points, held at the grid's edges.
        """
        # Every step of a replay asks this: the four surrounding grid points are found once
        # and weighed for both tables (interpolating row by row cost most of a replay).
        b0, b1, along_b = _bracket(self.batch, float(sequences))
        n0, n1, along_n = _bracket(self._log_context, math.log(max(context, 1e-9)))

        def at(table: np.ndarray) -> float:
            low = (1.0 - along_n) * table[b0, n0] + along_n * table[b0, n1]
            high = (1.0 - along_n) * table[b1, n0] + along_n * table[b1, n1]
            return float((1.0 - along_b) * low + along_b * high)

        return at(self.decode_s), at(self.decode_j)

    def prefill(self, prompt_tokens: int, joining: bool = False) -> tuple[float, float]:
        """Seconds and joules of prefilling one prompt, alone or ``joining`` another's pass."""
        p = np.log(np.clip(prompt_tokens, self.prompt[0], self.prompt[-1]))
        logs, row = np.log(self.prompt), int(joining)
        return (
            float(np.interp(p, logs, self.prefill_s[row])),
            float(np.interp(p, logs, self.prefill_j[row])),
        )


@dataclass(frozen=True)
class StepCorrection:
    """What serving measurements teach the twin about its steps (the identity by default).

    The step costs come from uniform batches of a few sequences; a serving engine runs up to
    hundreds, and its host (scheduler, input preparation, output processing) takes time of its
    own that a small model's forward pass no longer hides. A corrected step runs its decode part
    ``exp(decode_log_scale + decode_batch_slope · ln b + decode_kv_slope · k)`` times as long and
    as costly (``b`` sequences decoding, ``k`` the KV cache's share of the bytes the step reads:
    attention over many long contexts reads less efficiently than the weights do), its prefill
    part ``exp(prefill_log_scale)`` times, the prefills that join another in the same pass
    ``exp(prefill_join_log_scale)`` times more (the twin prices each from a two-sequence prefill;
    a pass of many prompts runs larger, more efficient kernels), and lasts at least the host's
    ``host_s + host_per_sequence_s · n`` for its ``n`` sequences, the GPUs drawing their static
    power while they wait for it.

    Attributes:
        decode_log_scale: Log multiplier of decode time and energy.
        decode_batch_slope: Its change per unit of log decode batch size.
        decode_kv_slope: Its change per unit of KV-cache share of the step's reads.
        prefill_log_scale: Log multiplier of prefill time and energy.
        prefill_join_log_scale: Further log multiplier of the prefills joining another in a pass.
        host_s: Host time of a step whatever its size (s).
        host_per_sequence_s: Host time per sequence in the step (s).
    """

    decode_log_scale: float = 0.0
    decode_batch_slope: float = 0.0
    decode_kv_slope: float = 0.0
    prefill_log_scale: float = 0.0
    prefill_join_log_scale: float = 0.0
    host_s: float = 0.0
    host_per_sequence_s: float = 0.0

    def apply(
        self,
        decode_s: npt.ArrayLike,
        decode_j: npt.ArrayLike,
        prefill_s: npt.ArrayLike,
        prefill_j: npt.ArrayLike,
        decoding: npt.ArrayLike,
        sequences: npt.ArrayLike,
        kv_share: npt.ArrayLike,
        idle_w: float,
        joining_s: npt.ArrayLike = 0.0,
        joining_j: npt.ArrayLike = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Seconds and joules of steps (arrays of one value per step, or scalars).

        Args:
            decode_s: Seconds of each step's decode part, uncorrected (0 without one).
            decode_j: Its joules.
            prefill_s: Seconds of each step's prefills, uncorrected (0 without any).
            prefill_j: Their joules.
            decoding: Sequences decoding in each step.
            sequences: Sequences in each step, decoding or prefilling.
            kv_share: KV cache's share of the bytes each decode part reads (0 to 1).
            idle_w: Power of the GPUs while they wait (W, all GPUs).
            joining_s: The part of ``prefill_s`` that prefills joining another in the pass take.
            joining_j: Their joules.
        """
        decode_s, decode_j, prefill_s, prefill_j, decoding, sequences, kv_share = (
            np.asarray(v, dtype=np.float64)
            for v in (decode_s, decode_j, prefill_s, prefill_j, decoding, sequences, kv_share)
        )
        joining_s, joining_j = np.asarray(joining_s, np.float64), np.asarray(joining_j, np.float64)
        decode_scale = np.exp(
            self.decode_log_scale
            + self.decode_batch_slope * np.log(np.maximum(decoding, 1))
            + self.decode_kv_slope * kv_share
        )
        prefill_scale = np.exp(self.prefill_log_scale)
        joining_more = np.expm1(self.prefill_join_log_scale)
        dec_s, dec_j = decode_s * decode_scale, decode_j * decode_scale
        pre_s = (prefill_s + joining_more * joining_s) * prefill_scale
        pre_j = (prefill_j + joining_more * joining_j) * prefill_scale
        # One forward pass runs the prefills and the decode step together: the shorter of the two
        # hides under the longer, and the GPUs' static power is paid once over that time.
        overlap = np.minimum(dec_s, pre_s)
        gpu_s = dec_s + pre_s - overlap
        gpu_j = dec_j + pre_j - overlap * idle_w
        step_s = np.maximum(gpu_s, self.host_s + self.host_per_sequence_s * sequences)
        return step_s, gpu_j + (step_s - gpu_s) * idle_w

    def to_dict(self) -> dict[str, float]:
        """JSON-ready fields."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class StepRecord:
    """One twin step before correction: what :meth:`StepCorrection.apply` takes."""

    decode_s: float
    decode_j: float
    prefill_s: float
    prefill_j: float
    decoding: int
    sequences: int
    kv_share: float
    joining_s: float
    joining_j: float
    end_s: float


def _bracket(grid: np.ndarray, value: float) -> tuple[int, int, float]:
    """The grid points around ``value`` and the weight of the upper one (held at the edges)."""
    upper = int(np.searchsorted(grid, value))
    if upper <= 0:
        return 0, 0, 0.0
    if upper >= len(grid):
        return len(grid) - 1, len(grid) - 1, 0.0
    low, high = float(grid[upper - 1]), float(grid[upper])
    return upper - 1, upper, (value - low) / (high - low)


class TwinClock:
    """The twin's time: it passes only when the twin runs a step or waits."""

    def __init__(self, twin: ServingTwin) -> None:
        self._twin = twin
        self.seconds = 0.0

    def now(self) -> float:
        """Seconds since the twin started."""
        return self.seconds

    def sleep(self, seconds: float) -> None:
        """Wait idle: the GPUs draw their static power."""
        self.seconds += seconds
        self._twin.joules += seconds * self._twin.costs.idle_w


@dataclass
class _Sequence:
    request_id: int
    context: int
    remaining: int
    produced: int = 0


@dataclass
class ServingTwin:
    """Continuous batching on :class:`StepCosts`: a :class:`~workers.serving.StepEngine`.

    Attributes:
        costs: What steps cost.
        max_num_seqs: Sequences running at once; later requests wait in the queue.
        correction: What serving measurements taught about the steps.
        record: Whether to keep every step's uncorrected costs in ``steps``.
        joules: Energy spent so far (the twin's counter).
        steps: The steps run so far, uncorrected (kept with ``record``).
    """

    costs: StepCosts
    max_num_seqs: int
    correction: StepCorrection = field(default_factory=StepCorrection)
    record: bool = False
    joules: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)
    _queue: list[_Sequence] = field(default_factory=list)
    _running: list[_Sequence] = field(default_factory=list)
    clock: TwinClock = field(init=False)

    def __post_init__(self) -> None:
        self.clock = TwinClock(self)

    def add(self, request_id: int, prompt_tokens: int, generated_tokens: int) -> None:
        """Queue a request."""
        self._queue.append(_Sequence(request_id, prompt_tokens, generated_tokens))

    def step(self) -> list[StepProgress]:
        """One step: a decode token for every running sequence, a prefill for every admission."""
        decode_s = decode_j = prefill_s = prefill_j = joining_s = joining_j = 0.0
        decoding = list(self._running)
        context = sum(s.context for s in decoding)
        if decoding:
            decode_s, decode_j = self.costs.decode(len(decoding), context / len(decoding))
        admitted = self._queue[: max(0, self.max_num_seqs - len(self._running))]
        del self._queue[: len(admitted)]
        # The prefills of one step run in one forward pass: the first pays the pass's set-up,
        # each further one what one more sequence adds to it.
        for index, sequence in enumerate(admitted):
            seconds, joules = self.costs.prefill(sequence.context, joining=index > 0)
            prefill_s += seconds
            prefill_j += joules
            if index > 0:
                joining_s += seconds
                joining_j += joules
        parts = (
            decode_s,
            decode_j,
            prefill_s,
            prefill_j,
            len(decoding),
            len(decoding) + len(admitted),
            self.costs.kv_share(context),
        )
        step_s, step_j = self.correction.apply(
            *parts, self.costs.idle_w, joining_s=joining_s, joining_j=joining_j
        )
        self.clock.seconds += float(step_s)
        self.joules += float(step_j)
        if self.record:
            self.steps.append(StepRecord(*parts, joining_s, joining_j, self.clock.seconds))
        progress = []
        for sequence in decoding + admitted:
            sequence.produced += 1
            sequence.context += 1
            sequence.remaining -= 1
            finished = sequence.remaining <= 0
            progress.append(StepProgress(sequence.request_id, sequence.produced, finished))
        self._running = [s for s in decoding + admitted if s.remaining > 0]
        return progress

    def replay(self, load: ServingLoad) -> ServingResult:
        """Serve ``load`` on this twin's own clock and counter and attribute its energy.

        Raises:
            InvalidRequestError: A load that never reaches a steady state here.
            ConfigFileError: An unreadable trace file.
        """
        requests, energy = serve(self, load, self.clock, self.energy_j)
        result = summarise(requests, energy, load.concurrency)
        if result.per_request_j is None:
            raise InvalidRequestError(
                "the load never reached a steady state on this deployment: send more requests"
            )
        return result

    def has_unfinished(self) -> bool:
        """Whether any request is queued or running."""
        return bool(self._queue or self._running)

    def energy_j(self) -> float:
        """The twin's energy counter (J)."""
        return self.joules
