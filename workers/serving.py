"""Serving measurements: a stream of requests under continuous batching, energy per request.

A deployment serves many requests at once: the engine's scheduler admits them as they come and
runs every running sequence's next token in one forward pass. What a request costs there depends
on the load, so a serving point is a shape and GPU setup plus a **load**: the requests' lengths,
drawn from a traffic trace, and either

- a **closed loop at concurrency C**: C requests run from the start, and a new one enters as one
  finishes (a fixed number of users, each sending the next request on its answer), or
- an **open loop at an arrival rate λ**: requests arrive as a Poisson process whatever the engine
  is doing (independent users), and queue in the engine when it is busy.

The driver (:func:`serve`) feeds an engine that runs one scheduler step at a time
(:class:`StepEngine`), records each request's arrival, admission, first token and finish, and
reads the GPUs' cumulative energy counters between steps (every
:data:`ENERGY_READ_PERIOD_S` at most). Energy is attributed over the
**steady state** (:func:`steady_window`), as ML.ENERGY does: in a closed loop from the moment C
requests first run to the moment fewer than C remain (ramp-up and drain excluded); in an open loop
from the arrival of the first request after the ramp-up share (:data:`OPEN_LOOP_RAMP_UP`) to the
last arrival. Energy per request is the window's energy over the requests that finished in it;
per output token and per input token views divide it by their tokens; the whole run's figures
come alongside, with throughput and time-to-first-token and time-per-output-token percentiles.
:func:`measure_load` does all of it on a loaded engine (vLLM, or the simulated twin on its own
clock) and returns the :class:`~storage.records.ServingRecord` a campaign's serving point stores
and the serving sweep writes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from featurize.priors import RequestPrior, read_trace
from llmco2.errors import ConfigFileError, InvalidRequestError
from storage.records import ServingRecord
from workers.devices import Clock

if TYPE_CHECKING:
    from workers.engines.base import InferenceEngine

#: Traffic classes of the shipped request prior, by the names the CLI takes.
TRACE_CLASSES = {"conv": "conversation", "conversation": "conversation", "code": "code"}
#: Prompt plus output tokens a drawn request may have at most, unless the load says otherwise.
DEFAULT_MAX_CONTEXT = 8192
#: Share of an open loop's arrivals that is its ramp-up, left out of the steady state.
OPEN_LOOP_RAMP_UP = 0.1
#: Least time between two energy readings of a serving run (s). NVML's counter moves every few
#: tens of milliseconds, and a reading after every scheduler step (a few ms) would add its cost
#: to every step; windows last seconds, so their ends interpolated between readings this close
#: are off by a fraction of a percent at most.
ENERGY_READ_PERIOD_S = 0.02
#: Percentiles reported for time to first token and time per output token.
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class ServingLoad:
    """The load of one serving measurement.

    Attributes:
        trace: Where request lengths come from: ``conv`` (or ``conversation``) and ``code`` draw
            from the shipped Azure 2023 histogram, anything else is a CSV file of requests.
        requests: Requests the run serves in all.
        concurrency: Requests in flight in a closed loop (None for an open loop).
        rate_per_s: Poisson arrival rate of an open loop (None for a closed loop).
        max_context: Prompt plus output tokens a drawn request may have at most.
        seed: Seed of the drawn lengths and arrival times.
    """

    trace: str
    requests: int
    concurrency: int | None = None
    rate_per_s: float | None = None
    max_context: int = DEFAULT_MAX_CONTEXT
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate_per_s is None):
            raise InvalidRequestError("a serving load takes a concurrency or an arrival rate")
        if self.concurrency is not None and self.concurrency < 1:
            raise InvalidRequestError(f"concurrency must be ≥ 1, got {self.concurrency}")
        if self.rate_per_s is not None and not (
            math.isfinite(self.rate_per_s) and self.rate_per_s > 0
        ):
            raise InvalidRequestError(f"arrival rate must be > 0 per second, got {self.rate_per_s}")
        # A closed loop reaches its steady state once C requests run and leaves it when fewer
        # than C remain: with 2C requests each of the first C is followed by one more.
        least = 2 * self.concurrency if self.concurrency is not None else 10
        if self.requests < least:
            raise InvalidRequestError(
                f"a serving run needs ≥ {least} requests for a steady state, got {self.requests}"
            )
        if self.max_context < 2:
            raise InvalidRequestError(f"max_context must be ≥ 2 tokens, got {self.max_context}")

    @property
    def closed(self) -> bool:
        """Whether the load is a closed loop (fixed concurrency)."""
        return self.concurrency is not None

    @property
    def name(self) -> str:
        """``C=4`` for a closed loop, ``λ=2.5/s`` for an open one."""
        return f"C={self.concurrency}" if self.closed else f"λ={self.rate_per_s:g}/s"

    def lengths(self) -> list[tuple[int, int]]:
        """The ``(prompt, generated)`` tokens of every request, in the order they are sent.

        Raises:
            ConfigFileError: A trace file that cannot be read (:func:`read_trace`).
        """
        rng = np.random.default_rng(self.seed)
        name = TRACE_CLASSES.get(self.trace)
        if name is not None:
            drawn = RequestPrior.azure().sample(
                self.requests, rng, mix={name: 1.0}, batch_sizes=(1, 1),
                max_context=self.max_context,
            )  # fmt: skip
            return [(r.prompt_tokens, r.generated_tokens) for r in drawn]
        rows = [r for r in read_trace(Path(self.trace)) if sum(r) <= self.max_context]
        if not rows:
            raise ConfigFileError(
                f"trace {self.trace!r} has no request within {self.max_context} tokens"
            )
        picked = rng.integers(0, len(rows), size=self.requests)
        return [rows[int(i)] for i in picked]

    def arrivals(self) -> list[float]:
        """Seconds after the start at which each request arrives (all 0 in a closed loop)."""
        if self.rate_per_s is None:
            return [0.0] * self.requests
        # Drawn from their own stream so that the lengths do not depend on the rate.
        rng = np.random.default_rng([self.seed, 1])
        gaps = rng.exponential(1.0 / self.rate_per_s, size=self.requests)
        gaps[0] = 0.0
        return [float(t) for t in np.cumsum(gaps)]


@dataclass
class ServedRequest:
    """One request's life in a serving run (seconds since the run started).

    Attributes:
        prompt_tokens: Its prompt length.
        generated_tokens: Tokens it asked for (and got: end-of-sequence is ignored).
        arrival_s: When it was sent.
        admitted_s: When the engine took it (equals ``arrival_s`` unless the driver held it).
        first_token_s: When its first output token came back (None until then).
        finish_s: When its last token came back (None until then).
    """

    prompt_tokens: int
    generated_tokens: int
    arrival_s: float
    admitted_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None

    @property
    def ttft_s(self) -> float | None:
        """Time to first token, from arrival."""
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (None for one-token requests)."""
        if self.first_token_s is None or self.finish_s is None or self.generated_tokens < 2:
            return None
        return (self.finish_s - self.first_token_s) / (self.generated_tokens - 1)


@dataclass
class EnergyTrace:
    """Cumulative energy of all the run's GPUs (J) read at times (s), both non-decreasing."""

    times_s: list[float] = field(default_factory=list)
    joules: list[float] = field(default_factory=list)

    def add(self, time_s: float, joules: float) -> None:
        """Record one reading."""
        self.times_s.append(time_s)
        self.joules.append(joules)

    def at(self, time_s: float) -> float:
        """Energy counted up to ``time_s``, interpolated linearly between readings.

        Raises:
            InvalidRequestError: No readings, or ``time_s`` outside them.
        """
        if not self.times_s or not self.times_s[0] <= time_s <= self.times_s[-1]:
            raise InvalidRequestError(f"no energy reading around {time_s:.3f} s")
        return float(np.interp(time_s, self.times_s, self.joules))

    def between(self, start_s: float, end_s: float) -> float:
        """Energy (J) spent from ``start_s`` to ``end_s``."""
        return self.at(end_s) - self.at(start_s)


def steady_window(
    requests: Sequence[ServedRequest], concurrency: int | None
) -> tuple[float, float] | None:
    """The steady state of a run: ``(start, end)`` seconds, or None if it never had one.

    Closed loop (``concurrency`` C): from the first moment C requests run at once to the first
    moment after it that fewer than C run, where a request runs from its admission to its finish
    and a request admitted at the instant another finishes takes its place without a gap. Open
    loop (``concurrency`` None): from the arrival of the first request after the ramp-up share
    :data:`OPEN_LOOP_RAMP_UP` to the last arrival.
    """
    if concurrency is None:
        arrivals = sorted(r.arrival_s for r in requests)
        if len(arrivals) < 2:
            return None
        first = min(len(arrivals) - 2, math.ceil(OPEN_LOOP_RAMP_UP * len(arrivals)))
        start, end = arrivals[first], arrivals[-1]
        return (start, end) if end > start else None
    changes: dict[float, int] = {}
    for r in requests:
        if r.admitted_s is None:
            continue
        changes[r.admitted_s] = changes.get(r.admitted_s, 0) + 1
        if r.finish_s is not None:
            changes[r.finish_s] = changes.get(r.finish_s, 0) - 1
    running = 0
    began: float | None = None
    for moment in sorted(changes):
        running += changes[moment]
        if began is None and running >= concurrency:
            began = moment
        elif began is not None and running < concurrency:
            return (began, moment) if moment > began else None
    return None


@dataclass(frozen=True)
class ServingResult:
    """What a serving run cost, per request at steady state and over the whole run.

    Attributes:
        per_request_j: Steady-state energy over the requests that finished in the window (None
            without energy counters or a steady state).
        per_output_token_j: The same energy over their output tokens.
        per_input_token_j: The same energy over their prompt tokens.
        window_s: Length of the steady-state window (None without one).
        window_requests: Requests that finished inside it.
        window_energy_j: Energy spent inside it.
        total_energy_j: Energy of the whole run (ramp-up and drain included).
        total_s: Seconds from the first arrival to the last finish.
        requests: Requests served.
        output_tokens: Output tokens of all of them.
        requests_per_s: Requests finished per second at steady state (whole run without one).
        output_tokens_per_s: Output tokens per second, likewise.
        mean_running: Mean requests admitted and not finished over the window.
        ttft_s: Time-to-first-token percentiles (``p50``, ``p90``, ``p99``), whole run.
        tpot_s: Time-per-output-token percentiles, whole run.
    """

    per_request_j: float | None
    per_output_token_j: float | None
    per_input_token_j: float | None
    window_s: float | None
    window_requests: int
    window_energy_j: float | None
    total_energy_j: float | None
    total_s: float
    requests: int
    output_tokens: int
    requests_per_s: float
    output_tokens_per_s: float
    mean_running: float | None
    ttft_s: dict[str, float]
    tpot_s: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _percentiles(values: Sequence[float | None]) -> dict[str, float]:
    kept = np.array([v for v in values if v is not None], dtype=np.float64)
    if kept.size == 0:
        return {}
    return {f"p{q}": float(np.percentile(kept, q)) for q in PERCENTILES}


def _mean_running(requests: Sequence[ServedRequest], start: float, end: float) -> float:
    busy = sum(
        max(0.0, min(r.finish_s, end) - max(r.admitted_s, start))
        for r in requests
        if r.admitted_s is not None and r.finish_s is not None
    )
    return busy / (end - start)


def summarise(
    requests: Sequence[ServedRequest], energy: EnergyTrace | None, concurrency: int | None
) -> ServingResult:
    """Attribute a finished run's energy to its requests (see the module docstring).

    Raises:
        InvalidRequestError: A request that never finished.
    """
    if any(r.finish_s is None for r in requests):
        raise InvalidRequestError("a serving run is summarised once every request finished")
    finish = [float(r.finish_s) for r in requests if r.finish_s is not None]
    began = min(r.arrival_s for r in requests)
    total_s = max(finish) - began
    window = steady_window(requests, concurrency)
    metered = energy is not None and len(energy.times_s) >= 2
    inside = (
        [r for r in requests if r.finish_s is not None and window[0] < r.finish_s <= window[1]]
        if window is not None
        else []
    )
    window_energy = (
        energy.between(*window) if metered and window is not None and energy is not None else None
    )
    per_request: float | None = None
    per_output: float | None = None
    per_input: float | None = None
    if window_energy is not None and inside:
        per_request = window_energy / len(inside)
        per_output = window_energy / sum(r.generated_tokens for r in inside)
        per_input = window_energy / sum(r.prompt_tokens for r in inside)
    output_tokens = sum(r.generated_tokens for r in requests)
    if window is not None and inside:
        span = window[1] - window[0]
        rate = len(inside) / span
        token_rate = sum(r.generated_tokens for r in inside) / span
    else:
        rate = len(requests) / total_s if total_s > 0 else 0.0
        token_rate = output_tokens / total_s if total_s > 0 else 0.0
    total_energy = energy.joules[-1] - energy.joules[0] if metered and energy is not None else None
    return ServingResult(
        per_request_j=per_request,
        per_output_token_j=per_output,
        per_input_token_j=per_input,
        window_s=None if window is None else window[1] - window[0],
        window_requests=len(inside),
        window_energy_j=window_energy,
        total_energy_j=total_energy,
        total_s=total_s,
        requests=len(requests),
        output_tokens=output_tokens,
        requests_per_s=rate,
        output_tokens_per_s=token_rate,
        mean_running=None if window is None else _mean_running(requests, *window),
        ttft_s=_percentiles([r.ttft_s for r in requests]),
        tpot_s=_percentiles([r.tpot_s for r in requests]),
    )


def trace_sha256(trace: str) -> str | None:
    """The content hash of a trace file (None for the shipped traces).

    Raises:
        ConfigFileError: A file that cannot be read.
    """
    if trace in TRACE_CLASSES:
        return None
    try:
        return hashlib.sha256(Path(trace).read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigFileError(f"cannot read request trace {trace!r}: {exc.strerror}") from None


@dataclass(frozen=True)
class StepProgress:
    """What one scheduler step did to one request: its output tokens so far, whether done."""

    request_id: int
    output_tokens: int
    finished: bool


class StepEngine(Protocol):
    """An engine driven one scheduler step at a time (vLLM's ``LLMEngine``, or its twin)."""

    def add(self, request_id: int, prompt_tokens: int, generated_tokens: int) -> None:
        """Hand the engine a request of random prompt tokens that generates exactly that many."""
        ...

    def step(self) -> list[StepProgress]:
        """Run one scheduler step; the requests it advanced."""
        ...

    def has_unfinished(self) -> bool:
        """Whether any request handed over has not finished."""
        ...


def serve(
    engine: StepEngine,
    load: ServingLoad,
    clock: Clock,
    read_energy_j: Callable[[], float] | None = None,
) -> tuple[list[ServedRequest], EnergyTrace | None]:
    """Run ``load`` on ``engine``: every request's timeline and the energy read as it ran.

    A closed loop hands the engine its first C requests at once and one more each time one
    finishes; an open loop hands each request over once its arrival time has come, and sleeps
    while the engine is idle and the next one has not arrived. Energy is read at the start, after
    a step once :data:`ENERGY_READ_PERIOD_S` has passed since the last reading, and at the end.

    Args:
        engine: The engine, loaded and idle.
        load: What to send.
        clock: Time source (the engine's: a twin runs on virtual time).
        read_energy_j: Cumulative energy of the engine's GPUs in joules (None: not metered).
    """
    lengths = load.lengths()
    arrivals = load.arrivals()
    begin = clock.now()
    requests = [ServedRequest(p, g, a) for (p, g), a in zip(lengths, arrivals, strict=True)]
    energy = EnergyTrace() if read_energy_j is not None else None

    def now() -> float:
        return clock.now() - begin

    def read(always: bool = False) -> None:
        if energy is None or read_energy_j is None:
            return
        moment = now()
        if always or moment - energy.times_s[-1] >= ENERGY_READ_PERIOD_S:
            energy.add(moment, read_energy_j())

    def admit(index: int, at: float) -> None:
        request = requests[index]
        if load.closed:
            # In a closed loop a request is sent when a slot frees: that is its arrival.
            request.arrival_s = at
        request.admitted_s = at
        engine.add(index, request.prompt_tokens, request.generated_tokens)

    read(always=True)
    waiting = 0  # the next request not yet handed over
    if load.concurrency is not None:
        first = now()  # the first C are sent together
        for index in range(min(load.concurrency, len(requests))):
            admit(index, first)
        waiting = min(load.concurrency, len(requests))
    while waiting < len(requests) or engine.has_unfinished():
        if not load.closed:
            while waiting < len(requests) and requests[waiting].arrival_s <= now():
                admit(waiting, requests[waiting].arrival_s)
                waiting += 1
            if not engine.has_unfinished():
                clock.sleep(max(0.0, requests[waiting].arrival_s - now()))
                continue
        progress = engine.step()
        moment = now()
        read()
        for item in progress:
            request = requests[item.request_id]
            if item.output_tokens > 0 and request.first_token_s is None:
                request.first_token_s = moment
            if item.finished and request.finish_s is None:
                request.finish_s = moment
                if load.closed and waiting < len(requests):
                    admit(waiting, moment)
                    waiting += 1
    read(always=True)
    return requests, energy


@dataclass
class ServingSession:
    """A loaded engine ready to serve: its step engine, clock and energy counter.

    Attributes:
        engine: Runs the scheduler's steps.
        clock: The time the run is timed on.
        read_energy_j: Cumulative energy of the engine's GPUs (None: not metered).
        settle: Called once the run is over: hands the run's time and energy to an engine that
            models them apart (the twin), so that the engine's own accounting holds them too.
    """

    engine: StepEngine
    clock: Clock
    read_energy_j: Callable[[], float] | None
    settle: Callable[[], None] = lambda: None


def _timeline(requests: Sequence[ServedRequest]) -> list[list[float | None]]:
    return [
        [r.prompt_tokens, r.generated_tokens, r.arrival_s, r.admitted_s, r.first_token_s,
         r.finish_s]
        for r in requests
    ]  # fmt: skip


def measure_load(engine: InferenceEngine, load: ServingLoad, max_num_seqs: int) -> ServingRecord:
    """Serve ``load`` on a loaded engine, metered, and attribute its energy (:func:`summarise`).

    Args:
        engine: The engine, loaded and idle.
        load: What to serve.
        max_num_seqs: Sequences its scheduler runs at once where the engine takes it per run (the
            twin); vLLM's is fixed when it loads, and the record holds the engine's own.

    Raises:
        InfeasibleConfigError: An engine that does not serve continuously batched requests.
        ConfigFileError: An unreadable trace file.
    """
    session = engine.serving_session(max_num_seqs, load.max_context)
    began = datetime.now(UTC)
    requests, energy = serve(session.engine, load, session.clock, session.read_energy_j)
    session.settle()
    result = summarise(requests, energy, load.concurrency)
    counters = engine.counter_source()
    settings = engine.settings
    return ServingRecord(
        engine_name=engine.name,
        simulated=not engine.uses_gpus,
        timeline=_timeline(requests),
        max_num_seqs=int(settings.get("max_num_seqs", max_num_seqs)),
        gpu_names=counters.names if counters is not None else None,
        gpu_uuids=counters.uuids if counters is not None else None,
        driver_version=counters.driver_version if counters is not None else None,
        engine_version=engine.version,
        engine_settings=settings or None,
        started_at=began,
        finished_at=datetime.now(UTC),
        **result.to_dict(),
    )


def record_result(record: ServingRecord) -> ServingResult:
    """The :class:`ServingResult` a record holds."""
    names = ServingResult.__dataclass_fields__
    values = {name: getattr(record, name) for name in names}
    values["ttft_s"] = dict(values["ttft_s"] or {})
    values["tpot_s"] = dict(values["tpot_s"] or {})
    return ServingResult(**values)


def record_row(record: ServingRecord, load: ServingLoad, **fields: Any) -> dict[str, Any]:
    """One JSON line of a serving dataset (``serving.jsonl``): the load, the result nested.

    ``fields`` (the shape's name, the engine's load time, ...) come first.
    """
    return {
        **fields,
        "trace": load.trace,
        "concurrency": load.concurrency,
        "rate_per_s": load.rate_per_s,
        "requests": load.requests,
        "seed": load.seed,
        "max_context": load.max_context,
        "max_num_seqs": record.max_num_seqs,
        "result": record_result(record).to_dict(),
        "timeline": record.timeline,
        "engine": record.engine_version,
        "engine_settings": record.engine_settings,
        "gpu_names": record.gpu_names,
        "gpu_uuids": record.gpu_uuids,
        "driver": record.driver_version,
        "measured_at": (record.finished_at or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
