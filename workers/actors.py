"""Ray GPU worker actors: one engine configuration at a time, reused for all of its points.

:class:`EngineWorker` is a plain class (so it is testable without Ray); :func:`worker_actor`
wraps it with ``ray.remote`` and the resources of its configuration: ``num_gpus = TP`` (whole
GPUs, since NVML meters whole devices) for GPU engines, none for the simulated twin or vLLM on a
CPU. The engine is built in ``__init__``; a configuration that cannot load makes every point an
INFEASIBLE (or FAILED) result instead of an exception, and an actor that crashes reaches the
caller as a ``RayActorError`` which :mod:`workers.pool` turns into a retryable FAILED result.
This module is safe to import under ``spawn`` (vLLM spawns processes): it starts nothing.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from featurize.request import InferenceRequest
from llmco2.errors import (
    GpuLostError,
    InfeasibleConfigError,
    MeasurementError,
    NvmlError,
    NvmlNotSupportedError,
)
from storage.records import MeasurementRecord, PointStatus, ServingRecord
from workers.devices import Clock, RealClock
from workers.engines import EngineConfig, InferenceEngine, create_engine, engine_uses_gpus
from workers.engines.vllm_engine import is_infeasible_error
from workers.meter import EnergyMeter
from workers.protocol import MeasurementProtocol, ProtocolSettings
from workers.serving import ServingLoad, measure_load


@dataclass(frozen=True)
class WorkerResult:
    """What measuring one point produced.

    Attributes:
        point_id: The point (the caller's id).
        status: COMPLETE, INFEASIBLE or FAILED.
        record: The measurement when COMPLETE.
        error_kind: Short error class (``oom``, ``actor_died``, ``measurement``, ...).
        error_message: One line for the user.
        retryable: Whether a FAILED point may be tried again.
        healthy: Whether the actor can take more points (False: replace it).
        gpu_seconds: GPU time the actor held since its previous result (its engine load
            included), times the GPUs it holds: stored with the point, so a crash loses none.
        kind: ``point`` (one request) or ``serving`` (a load; ``point_id`` is then a serving
            point's id).
        serving: What the load cost, when a serving point is COMPLETE.
    """

    point_id: int
    status: str
    record: MeasurementRecord | None = None
    error_kind: str | None = None
    error_message: str | None = None
    retryable: bool = False
    healthy: bool = True
    gpu_seconds: float = 0.0
    kind: str = "point"
    serving: ServingRecord | None = None


@dataclass
class WorkerStats:
    """Time accounting of one actor (for the duty cycle), on the engine's clock.

    Held time runs from the actor's start (engine load included); for the simulated engine it
    is the virtual time its GPUs were modelled busy or idle.
    """

    clock: Clock = field(default_factory=RealClock)
    started_at: float = 0.0
    load_seconds: float = 0.0
    window_seconds: float = 0.0
    measured_points: int = 0
    charged_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.started_at = self.clock.now()

    def charge(self) -> float:
        """Held seconds not yet attributed to a result; from now on they are."""
        held = self.held_seconds()
        delta = max(0.0, held - self.charged_seconds)
        self.charged_seconds = held
        return delta

    def held_seconds(self) -> float:
        """Time since the actor started (its GPUs were held all along)."""
        return self.clock.now() - self.started_at

    def duty_cycle(self) -> float:
        """Share of held time spent inside measurement windows."""
        held = self.held_seconds()
        return self.window_seconds / held if held > 0 else 0.0


#: Memory a GPU may still show in use once its engine closed, for the actor to load another
#: there: a CUDA context and the driver's reservations stay well below it, an engine holds most
#: of the card (85 % by default).
RELEASED_GPU_MEMORY_MIB = 2048.0
#: How long a closed engine's processes get to give their GPU memory back.
RELEASE_WAIT_S = 30.0
#: The same for an engine whose core ran in the actor's own process: its close frees what it
#: frees at once (an in-process vLLM 0.24 engine on an H100 still held 2.7 GB after 30 s, until
#: its close freed the CUDA graphs as well: 1.5 GB).
IN_PROCESS_RELEASE_WAIT_S = 2.0


def torch_memory_mib() -> dict[str, float]:
    """This process's memory in torch's CUDA allocator (empty if it never used CUDA)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return {}
    return {
        "torch_allocated_mib": torch.cuda.memory_allocated() / 2**20,
        "torch_reserved_mib": torch.cuda.memory_reserved() / 2**20,
    }


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _ray_node_id() -> str | None:
    """The Ray node this process runs on; None outside a Ray worker."""
    import sys

    ray = sys.modules.get("ray")  # never import Ray only to learn it is not running
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


def _failure(point_id: int, exc: Exception) -> WorkerResult:
    """The INFEASIBLE or FAILED result of a measurement that raised ``exc``."""
    if isinstance(exc, InfeasibleConfigError):
        return WorkerResult(point_id, PointStatus.INFEASIBLE, None, "infeasible", str(exc))
    if isinstance(exc, MeasurementError):
        return WorkerResult(
            point_id, PointStatus.FAILED, None, "measurement", str(exc), retryable=True
        )
    if isinstance(exc, NvmlNotSupportedError):
        # The same GPU will not grow a counter: measuring again cannot succeed.
        return WorkerResult(
            point_id, PointStatus.FAILED, None, "meter_unsupported", str(exc),
            retryable=False, healthy=False,
        )  # fmt: skip
    if isinstance(exc, NvmlError):
        kind = "gpu_lost" if isinstance(exc, GpuLostError) else "nvml"
        return WorkerResult(
            point_id, PointStatus.FAILED, None, kind, str(exc), retryable=True, healthy=False
        )
    if is_infeasible_error(exc):
        # An out-of-memory inside a request can leave the engine unusable.
        return WorkerResult(
            point_id, PointStatus.INFEASIBLE, None, "oom", _one_line(exc), healthy=False
        )
    return WorkerResult(
        point_id, PointStatus.FAILED, None, "engine_error", _one_line(exc),
        retryable=True, healthy=False,
    )  # fmt: skip


class EngineWorker:
    """Loads one engine configuration and measures points and serving loads on it.

    Args:
        engine_name: ``vllm``, ``transformers`` or ``simulated``.
        config: The engine configuration.
        settings: Measurement protocol knobs.
        idle_seconds: How long to measure idle power after loading (0: skip).
        requested_at: Wall-clock time (``time.time()``) the actor was asked for: the seconds
            until this process began to load (Ray starting a worker process, imports) held its
            GPUs too, and count in the load and held time of a GPU engine.
    """

    def __init__(
        self,
        engine_name: str,
        config: EngineConfig,
        settings: ProtocolSettings | None = None,
        idle_seconds: float = 2.0,
        requested_at: float | None = None,
    ) -> None:
        self.engine: InferenceEngine | None = None
        self.last_release: dict[str, Any] = {}
        actor_start = None if requested_at is None else max(0.0, time.time() - requested_at)
        self._load(engine_name, config, settings, idle_seconds, actor_start)

    def _load(
        self,
        engine_name: str,
        config: EngineConfig,
        settings: ProtocolSettings | None,
        idle_seconds: float,
        actor_start_s: float | None = None,
    ) -> None:
        self.stats = WorkerStats()
        #: Seconds of each phase of this engine start (recorded with its measurements).
        self.load_phases: dict[str, float] = {}
        if actor_start_s is not None:
            self.load_phases["actor_start_s"] = actor_start_s
        #: This engine start, named in every measurement it makes (exports group them by it).
        self.instance = uuid.uuid4().hex
        self.loaded_at = datetime.now(UTC) - timedelta(seconds=actor_start_s or 0.0)
        self.engine_name = engine_name
        self.config = config
        self.load_error: tuple[str, str] | None = None  # (kind, message)
        self.engine = None
        self.protocol: MeasurementProtocol | None = None
        start = time.monotonic()
        try:
            engine = create_engine(engine_name, config)
            if not engine.uses_gpus:
                self.stats = WorkerStats(engine.clock())  # a model's own (virtual) time
            try:
                engine.load()
            finally:
                self.load_phases.update(engine.load_phases)
            self.engine = engine
            source = engine.counter_source()
            meter = EnergyMeter(source, engine.clock()) if source is not None else None
            if meter is not None and idle_seconds > 0:
                clock = engine.clock()  # the twin's idle reading takes virtual time
                began = clock.now()
                meter.measure_idle_power(idle_seconds)
                self.load_phases["idle_power_s"] = clock.now() - began
            self.protocol = MeasurementProtocol(engine, settings, meter)
        except InfeasibleConfigError as exc:
            self.load_error = ("infeasible", str(exc))
        except Exception as exc:
            kind = "infeasible" if is_infeasible_error(exc) else "engine_load_failed"
            self.load_error = (kind, _one_line(exc))
            self._load_traceback = traceback.format_exc()
        if self.engine is None or self.engine.uses_gpus:
            # The GPUs were held from the actor's start, before this process could load.
            self.stats.started_at -= actor_start_s or 0.0
            self.stats.load_seconds = time.monotonic() - start + (actor_start_s or 0.0)
        else:
            self.stats.load_seconds = self.stats.held_seconds()  # the engine's (virtual) clock

    def reload(
        self,
        config: EngineConfig,
        settings: ProtocolSettings | None = None,
        idle_seconds: float = 2.0,
    ) -> None:
        """Close this engine and load another configuration in the same process.

        A new actor per configuration costs a Ray worker process, and for vLLM its imports
        (20-30 s of each engine start on an H200); the twin's few points per configuration cost
        far less than that. The pool reuses an actor for a configuration of as many GPUs, once
        :meth:`release` has shown its GPUs free. Timings start again from zero, with no actor
        start in the load.
        """
        self.shutdown()
        self._load(self.engine_name, config, settings, idle_seconds, actor_start_s=0.0)

    def release(self, wait_s: float = RELEASE_WAIT_S) -> bool:
        """Close the engine; whether this process may load another on the same GPUs.

        Closing a vLLM engine ends its engine-core and worker processes, whose memory comes
        back within seconds. A GPU still using more than :data:`RELEASED_GPU_MEMORY_MIB` after
        ``wait_s`` means part of the old engine lives on: a new engine would start short of
        memory and be metered beside it, so the caller replaces the actor instead. An engine
        whose core ran in this process has no process to end: what its close did not free stays,
        so it gets :data:`IN_PROCESS_RELEASE_WAIT_S`. An engine without GPU memory readings (the
        twin) is always released. :meth:`release_report` tells what a refused release left, and
        what of the engine is still alive in this process and what holds it.
        """
        engine = self.engine
        in_process = engine is not None and engine.settings.get("engine_core") == "in-process"
        source = engine.counter_source() if engine is not None else None
        self.shutdown()
        self.last_release = {}
        read = getattr(source, "memory_used_mib", None)
        if read is None:
            return True
        began = time.monotonic()
        deadline = began + (min(wait_s, IN_PROCESS_RELEASE_WAIT_S) if in_process else wait_s)
        while True:
            try:
                used = max(read(), default=0.0)
            except Exception:  # a GPU that cannot be read is not one to load onto again
                return False
            if used <= RELEASED_GPU_MEMORY_MIB:
                return True
            if time.monotonic() >= deadline:
                self.last_release = {
                    "gpu_memory_used_mib": used,
                    "waited_s": time.monotonic() - began,
                    "engine_core_in_process": in_process,
                    **torch_memory_mib(),
                    **(engine.leftovers() if engine is not None else {}),
                }
                return False
            time.sleep(0.5)

    def release_report(self) -> dict[str, Any]:
        """What the last refused :meth:`release` found (empty if it released the GPUs).

        GPU memory still in use, the seconds waited, whether the engine core ran in this
        process, this process's own share in torch's allocator (allocated, reserved), and the
        engine's :meth:`~workers.engines.base.InferenceEngine.leftovers` (for vLLM's in-process
        core: whether the closed engine is still alive, what holds it, the largest CUDA tensors
        left and their holders).
        """
        return dict(self.last_release)

    def info(self) -> dict[str, Any]:
        """Engine version, load time and load error (if any)."""
        source = self.engine.counter_source() if self.engine is not None else None
        return {
            "engine": self.engine_name,
            "version": self.engine.version if self.engine is not None else None,
            "load_seconds": self.stats.load_seconds,
            "load_error": self.load_error,
            "devices": source.names if source is not None else [],
            "idle_power_w": self.protocol.meter.idle_power_per_gpu_w
            if self.protocol is not None and self.protocol.meter is not None
            else None,
        }

    def measure(self, point_id: int, request: InferenceRequest) -> WorkerResult:
        """Measure one request shape; never raises for a per-point problem.

        The result carries the GPU time held since the previous one (:class:`WorkerResult`).
        """
        return self._charged(self._measure(point_id, request))

    def _charged(self, result: WorkerResult) -> WorkerResult:
        """``result`` with the GPU time held since the previous one, in its record too."""
        held = self.stats.charge()
        for record in (result.record, result.serving):
            if record is not None:
                record.extra = {**(record.extra or {}), "held_s": held}
        return dataclasses.replace(result, gpu_seconds=held * self.config.tp)

    def _measure(self, point_id: int, request: InferenceRequest) -> WorkerResult:
        if self.load_error is not None:
            return self._load_failure(point_id)
        assert self.protocol is not None
        before = self.protocol.window_seconds
        try:
            record = self.protocol.measure(request)
        except Exception as exc:
            return _failure(point_id, exc)
        finally:
            self.stats.window_seconds += self.protocol.window_seconds - before
        self.stats.measured_points += 1
        record.extra = {
            **(record.extra or {}),
            **self._engine_extra(),
            "window_s": self.protocol.window_seconds - before,
        }
        return WorkerResult(point_id, PointStatus.COMPLETE, record)

    def _load_failure(self, point_id: int, kind: str = "point") -> WorkerResult:
        assert self.load_error is not None
        error, message = self.load_error
        status = PointStatus.INFEASIBLE if error == "infeasible" else PointStatus.FAILED
        return WorkerResult(
            point_id, status, error_kind=error, error_message=message, retryable=True,
            healthy=False, kind=kind,
        )  # fmt: skip

    def _engine_extra(self) -> dict[str, Any]:
        """What every measurement records of the engine start that made it."""
        extra: dict[str, Any] = {
            "actor_duty_cycle": self.stats.duty_cycle(),
            "engine_load_s": self.stats.load_seconds,
            "engine_instance": self.instance,
            "engine_loaded_at": self.loaded_at.isoformat(),
            "engine_phases": dict(self.load_phases),
        }
        node = _ray_node_id()
        if node is not None:
            extra["ray_node_id"] = node  # which machine of a cluster measured it
        return extra

    def measure_serving(self, point_id: int, load: ServingLoad, max_num_seqs: int) -> WorkerResult:
        """Serve one load on this engine; never raises for a per-load problem.

        See :func:`workers.serving.measure_load`. The whole run counts as time inside a
        measurement window. The result carries the GPU time held since the previous one, as
        :meth:`measure`'s.
        """
        return self._charged(self._measure_serving(point_id, load, max_num_seqs))

    def _measure_serving(self, point_id: int, load: ServingLoad, max_num_seqs: int) -> WorkerResult:
        if self.load_error is not None:
            return self._load_failure(point_id, "serving")
        assert self.engine is not None
        clock = self.engine.clock()
        began = clock.now()
        try:
            record = measure_load(self.engine, load, max_num_seqs)
        except Exception as exc:
            return dataclasses.replace(_failure(point_id, exc), kind="serving")
        finally:
            self.stats.window_seconds += clock.now() - began
        if record.window_requests == 0:
            # The same load replays the same way: another try would not do better.
            return WorkerResult(
                point_id, PointStatus.FAILED, None, "measurement",
                f"{load.name} of {load.requests} requests had no steady state to attribute "
                "energy in: send more requests", retryable=False, kind="serving",
            )  # fmt: skip
        self.stats.measured_points += 1
        record.extra = {**(record.extra or {}), **self._engine_extra()}
        return WorkerResult(point_id, PointStatus.COMPLETE, kind="serving", serving=record)

    def timing(self) -> dict[str, float]:
        """Held time, time inside windows, load time and duty cycle so far."""
        return {
            "held_s": self.stats.held_seconds(),
            "window_s": self.stats.window_seconds,
            "load_s": self.stats.load_seconds,
            "duty_cycle": self.stats.duty_cycle(),
            "points": float(self.stats.measured_points),
            "pid": float(os.getpid()),
        }

    def shutdown(self) -> None:
        """Release the engine."""
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def uses_gpu(engine_name: str, config: EngineConfig) -> bool:
    """Whether the actor must hold real GPUs (not the twin, not vLLM on a CPU)."""
    return engine_uses_gpus(engine_name, config)


#: CPUs a GPU actor reserves per GPU, at most: Ray gives an actor ``OMP_NUM_THREADS`` equal to
#: its CPUs, and a vLLM start inside an actor of half a CPU (one thread) took 62.8 s on an H200
#: against 43.1 s with eight; more threads did not shorten it further.
GPU_ACTOR_MAX_CPUS_PER_GPU = 8
#: CPUs per GPU left to the driver, its training tasks and Ray itself.
CPUS_KEPT_PER_GPU = 2


def gpu_actor_cpus(tp: int, cluster_resources: dict[str, float]) -> float:
    """CPUs for a GPU actor of ``tp`` GPUs: the host's share per GPU, capped, at least one.

    Args:
        tp: GPUs the actor holds.
        cluster_resources: ``ray.cluster_resources()``.
    """
    gpus = max(1.0, cluster_resources.get("GPU", 1.0))
    per_gpu = cluster_resources.get("CPU", 1.0) / gpus - CPUS_KEPT_PER_GPU
    return float(tp * max(1, min(GPU_ACTOR_MAX_CPUS_PER_GPU, int(per_gpu))))


def worker_actor(
    engine_name: str,
    config: EngineConfig,
    settings: ProtocolSettings | None = None,
    idle_seconds: float = 2.0,
    num_cpus: float = 1.0,
    env: dict[str, str] | None = None,
) -> Any:
    """Start an :class:`EngineWorker` as a Ray actor with its configuration's resources.

    ``num_cpus`` applies to actors without GPUs; a GPU actor reserves
    :func:`gpu_actor_cpus` so that its engine starts with real threads. ``env``: environment
    variables of this actor's process alone (its engine settings, say), beside the cluster's.
    """
    import ray

    on_gpu = uses_gpu(engine_name, config)
    options: dict[str, Any] = {
        "num_gpus": config.tp if on_gpu else 0,
        "num_cpus": gpu_actor_cpus(config.tp, ray.cluster_resources()) if on_gpu else num_cpus,
        "max_restarts": 0,  # a crashed engine is replaced by the pool, not restarted blindly
    }
    if env:
        options["runtime_env"] = {"env_vars": dict(env)}
    remote_class = ray.remote(EngineWorker).options(**options)
    return remote_class.remote(engine_name, config, settings, idle_seconds, time.time())
