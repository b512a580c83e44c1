"""Measure many points on Ray actors, one actor per engine configuration.

Points are grouped by engine configuration so each actor loads its engine once (a vLLM start
costs 40-115 s on the lent GPUs) and measures its points one after another; actors of different
configurations run concurrently as far as the cluster's GPUs allow. An actor that dies takes its
in-flight point with it as a retryable FAILED result (``actor_died``) and is replaced for the
configuration's remaining points, up to ``max_actor_restarts`` times.

Processes outlive engines: an actor whose configuration is done loads the next waiting
configuration of as many GPUs in place (:meth:`workers.actors.EngineWorker.reload`) once its
closed engine has given the GPUs' memory back, instead of Ray starting a worker process and
vLLM being imported again. A configuration that fails to load in such a process is tried in a
fresh one before its points are given up.

Engines can outlive a call: given :class:`ResidentEngines`, an actor whose points are done stays
loaded, and the next call (the next round of a campaign) measures the points of its configuration
on it without a new engine start; a resident engine the next call has no work for, or whose GPUs
(or actor slots) another configuration needs, is closed, and its actor loads a configuration of as
many GPUs in place where one waits (else it is shut down).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from featurize import GpuSetup, InferencePoint
from featurize.request import InferenceRequest
from llmco2.errors import InvalidRequestError
from storage.records import PointStatus
from workers.actors import EngineWorker, WorkerResult, uses_gpu, worker_actor
from workers.engines import EngineConfig
from workers.protocol import ProtocolSettings
from workers.serving import ServingLoad


@dataclass(frozen=True)
class PointTask:
    """One point to measure: the caller's id, its engine configuration and its request."""

    point_id: int
    config: EngineConfig
    request: InferenceRequest

    def point(self) -> InferencePoint:
        """The inference point this task measures.

        Raises:
            InvalidRequestError: The configuration names no GPU (a CPU engine's).
        """
        config = self.config
        if config.gpu is None:
            raise InvalidRequestError("a task of a CPU engine is no inference point on a GPU")
        return InferencePoint(
            config.architecture, self.request, GpuSetup(config.gpu, config.tp),
            config.precision, config.flash_attention,
        )  # fmt: skip

    @property
    def kind(self) -> str:
        """What the task measures: one request (``point``)."""
        return "point"


@dataclass(frozen=True)
class ServingTask:
    """One serving point to measure: the caller's id, its engine configuration and its load.

    Attributes:
        point_id: The serving point's id (the caller's).
        config: The engine configuration that serves it.
        load: What to serve.
        max_num_seqs: Sequences the scheduler runs at once (where the engine takes it per run).
    """

    point_id: int
    config: EngineConfig
    load: ServingLoad
    max_num_seqs: int

    @property
    def kind(self) -> str:
        """What the task measures: a load (``serving``)."""
        return "serving"


#: Anything the pool measures on an engine.
Task = PointTask | ServingTask


class Admission(Protocol):
    """Whether a task may still be measured (a time limit's rule, for instance)."""

    def __call__(self, task: Task, starts_engine: bool, engine_tasks: Sequence[Task] = ()) -> bool:
        """True to measure ``task``; ``starts_engine``: its engine would be started first.

        ``engine_tasks``: where the engine would start, every task it has to measure (``task``
        first), so that a rule may weigh the whole engine and not only its first task.
        """
        ...


_LOG = logging.getLogger(__name__)


class ResidentEngines:
    """Loaded engine actors kept between calls of :func:`measure_tasks`, oldest first.

    The owner closes it (:meth:`close`) when it has no more work: a resident actor holds its
    GPUs (or CPUs) until then.

    Args:
        capacity: Most engines kept; keeping one more shuts the oldest down.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._actors: dict[EngineConfig, Any] = {}
        #: Per resident actor, its cumulative timing when it was last reported (to report only
        #: what a later call adds).
        self._reported: dict[EngineConfig, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._actors)

    def configs(self) -> list[EngineConfig]:
        """The configurations loaded, oldest first."""
        return list(self._actors)

    def take(self, config: EngineConfig) -> tuple[Any, dict[str, float]] | None:
        """The actor of ``config`` and what of its timing was reported, if it is resident."""
        actor = self._actors.pop(config, None)
        if actor is None:
            return None
        return actor, self._reported.pop(config, {})

    def put(self, config: EngineConfig, actor: Any, reported: dict[str, float]) -> None:
        """Keep ``actor`` loaded (``reported``: its cumulative timing reported so far)."""
        self._actors[config] = actor
        self._reported[config] = dict(reported)
        while len(self._actors) > self.capacity:
            self.evict(next(iter(self._actors)))

    def evict(self, config: EngineConfig) -> None:
        """Shut the engine of ``config`` down."""
        actor = self._actors.pop(config)
        self._reported.pop(config, None)
        _shut_down(actor)

    def release(self, config: EngineConfig) -> Any:
        """Stop keeping the engine of ``config`` and hand its actor over (to load another)."""
        self._reported.pop(config, None)
        return self._actors.pop(config)

    def close(self) -> None:
        """Shut every resident engine down."""
        for config in list(self._actors):
            self.evict(config)


def _shut_down(actor: Any) -> None:
    import ray

    with contextlib.suppress(Exception):  # a dead actor has nothing to shut down
        ray.get(actor.shutdown.remote(), timeout=120)
    ray.kill(actor)


def _added(timing: dict[str, float], reported: dict[str, float]) -> dict[str, float]:
    """What a cumulative actor timing adds to what was reported of it before."""
    added = {k: v - reported.get(k, 0.0) for k, v in timing.items() if k in _CUMULATIVE}
    added = {**timing, **added}
    added["duty_cycle"] = added["window_s"] / added["held_s"] if added.get("held_s") else 0.0
    return added


#: Error kinds of a configuration that could not load (every point of it shares the fate).
_LOAD_FAILURES = ("infeasible", "engine_load_failed")
#: Timing fields that add up over an actor's life.
_CUMULATIVE = ("held_s", "window_s", "load_s", "points")


@dataclass
class _Group:
    config: EngineConfig
    pending: deque[Task]
    actor: Any = None
    in_flight: Any = None
    task: Task | None = None
    restarts: int = 0
    timing: dict[str, float] | None = None
    #: The actor's cumulative timing reported by earlier calls (it was resident).
    reported: dict[str, float] | None = None
    #: Whether the actor loaded this configuration in a process of an earlier one.
    reused: bool = False


def measure_tasks(
    engine_name: str,
    tasks: Sequence[Task],
    settings: ProtocolSettings | None = None,
    *,
    max_actors: int | None = None,
    max_actor_restarts: int = 2,
    idle_seconds: float = 2.0,
    num_cpus: float = 1.0,
    timings: list[dict[str, float]] | None = None,
    resident: ResidentEngines | None = None,
    admit: Admission | None = None,
    actor_env: dict[str, str] | None = None,
) -> Generator[WorkerResult, None, None]:
    """Measure ``tasks`` and yield one result per task as results arrive.

    A configuration's tasks run on its engine in the order given: points (one request each) and
    serving points (a load each, :class:`ServingTask`) alike.

    With ``admit``, a task it refuses is not measured and yields no result: an engine whose
    first task is refused is not started, and an engine whose next task is refused measures
    nothing more (its other tasks are left too). The caller tells the left tasks from the
    results.

    Args:
        engine_name: Engine of every task.
        tasks: Points with their configurations.
        settings: Protocol knobs.
        max_actors: Most actors alive at once (default: as many as the cluster's GPUs allow,
            or 4 for engines without GPUs).
        max_actor_restarts: Replacements per configuration after actor deaths.
        idle_seconds: Idle-power measurement after each engine load.
        num_cpus: CPUs each actor reserves (keep it explicit on small machines).
        timings: If given, each finished actor's held/window seconds are appended to it
            (what this call added, for an actor that was resident before).
        resident: Engines loaded by earlier calls, and where this call leaves its engines
            loaded (None: every engine is shut down when its points are done).
        admit: Asked before each engine start and each further point (see
            :class:`Admission`); None admits everything.
        actor_env: Environment variables of every actor started (the engine's settings).
    """
    import ray

    groups: dict[EngineConfig, _Group] = {}
    for task in tasks:
        group = groups.setdefault(task.config, _Group(task.config, deque()))
        group.pending.append(task)
    # Widest first; a loaded engine before the others of its width (it starts at once).
    loaded = set(resident.configs()) if resident is not None else set()
    waiting = deque(sorted(groups.values(), key=lambda g: (-g.config.tp, g.config not in loaded)))
    active: dict[Any, _Group] = {}  # in-flight object ref → group
    started: list[_Group] = []  # every group that got an actor, for the cleanup
    # Healthy actors whose engine is closed, ready to load another configuration of as many
    # GPUs (GPUs held, actor): a GPU actor is kept only while such a configuration waits.
    idle: list[tuple[int, Any]] = []
    gpu_budget = int(ray.cluster_resources().get("GPU", 0))
    limit = max_actors if max_actors is not None else 4

    def needs(group: _Group) -> int:
        return group.config.tp if uses_gpu(engine_name, group.config) else 0

    def released(actor: Any) -> bool:
        """Close the actor's engine; whether its GPUs came back, so it can load another.

        A refusal is logged with what the engine left (the job's log is where a campaign's
        operator sees why its engine starts pay for a new process).
        """
        try:
            if ray.get(actor.release.remote(), timeout=180):
                return True
            left = ray.get(actor.release_report.remote(), timeout=30)
        except Exception as exc:  # a dead or stuck actor loads nothing more
            left = {"error": type(exc).__name__}
        _LOG.warning("a closed engine's actor is replaced, not reused: %s", left)
        return False

    def retire(config: EngineConfig, width: int | None) -> bool:
        """Stop keeping the resident engine of ``config``; True if its actor went idle.

        A GPU actor whose engine closes cleanly is kept idle, to load a configuration of
        ``width`` GPUs in place (the actor's start and vLLM's imports are 20-30 s of an engine
        start); any other is shut down.
        """
        assert resident is not None
        gpus = config.tp if uses_gpu(engine_name, config) else 0
        if width is None or not gpus or gpus != width:
            resident.evict(config)
            return False
        actor = resident.release(config)
        if released(actor):
            idle.append((gpus, actor))
            return True
        _shut_down(actor)
        return False

    def gpus_in_use() -> int:
        return sum(needs(g) for g in active.values())

    def resident_gpus() -> int:
        if resident is None:
            return 0
        return sum(c.tp for c in resident.configs() if uses_gpu(engine_name, c))

    def take_idle(gpus: int) -> Any:
        """An idle actor holding ``gpus`` GPUs (None if there is none)."""
        for index, (held, actor) in enumerate(idle):
            if held == gpus:
                del idle[index]
                return actor
        return None

    def free_idle_gpus(group: _Group) -> None:
        """Shut idle GPU actors down, oldest first, until ``group`` can start beside them."""
        while True:
            held = sum(gpus for gpus, _ in idle)
            if not held or needs(group) <= gpu_budget - gpus_in_use() - held - resident_gpus():
                return
            index = next(i for i, (gpus, _) in enumerate(idle) if gpus)
            _shut_down(idle.pop(index)[1])

    def make_room(group: _Group, reuse: bool) -> Any:
        """Retire resident engines, oldest first, until ``group`` can start beside them.

        Returns:
            With ``reuse``, an actor of a resident engine of as many GPUs that closed to make
            room, for ``group`` to load in place (None if there was none).
        """
        if resident is None:
            return None
        for config in resident.configs():
            if needs(group):
                short = needs(group) > gpu_budget - gpus_in_use() - resident_gpus()
            else:  # an actor without GPUs holds CPUs, which queued actors may need
                short = len(active) + len(resident) >= limit
            if not short:
                break
            if retire(config, needs(group) if reuse else None):
                return take_idle(needs(group))
        return None

    def dispatch(group: _Group) -> None:
        task = group.pending.popleft()
        group.task = task
        if isinstance(task, ServingTask):
            call = group.actor.measure_serving.remote(task.point_id, task.load, task.max_num_seqs)
        else:
            call = group.actor.measure.remote(task.point_id, task.request)
        group.in_flight = call
        active[call] = group

    def start(group: _Group, fresh: bool = False) -> None:
        kept = resident.take(group.config) if resident is not None else None
        if kept is not None:
            group.actor, group.reported = kept
            started.append(group)
            dispatch(group)
            return
        if not needs(group) and resident is not None and resident.configs():
            oldest = resident.configs()[0]
            if not uses_gpu(engine_name, oldest) and len(active) + len(resident) >= limit:
                idle.append((0, resident.release(oldest)))  # loads this configuration in place
        reusable = None if fresh else take_idle(needs(group))
        if reusable is None:
            free_idle_gpus(group)
            reusable = make_room(group, reuse=not fresh)
        else:
            make_room(group, reuse=False)
        if reusable is not None:
            # An actor whose engine closed loads the next configuration in place: a new Ray
            # worker process costs its start and imports (for vLLM 20-30 s of a GPU's time),
            # more than the twin's few points of a configuration.
            group.actor, group.reused = reusable, True
            group.actor.reload.remote(group.config, settings, idle_seconds)
        else:
            group.actor, group.reused = (
                worker_actor(
                    engine_name, group.config, settings, idle_seconds, num_cpus, actor_env
                ),
                False,
            )
        started.append(group)
        dispatch(group)

    def finish(group: _Group, reusable: bool = False) -> None:
        if group.actor is not None:
            try:
                group.timing = ray.get(group.actor.timing.remote(), timeout=30)
                if timings is not None and group.timing is not None:
                    timings.append(_added(group.timing, group.reported or {}))
                if reusable and resident is not None and group.timing is not None:
                    resident.put(group.config, group.actor, group.timing)
                    group.actor = None
                    return
                # Kept only while a configuration of as many GPUs waits for it: an idle actor
                # holds its CPUs and GPUs, which actors still queued may need to start at all.
                if (
                    reusable
                    and any(needs(g) == needs(group) for g in waiting)
                    and (not needs(group) or released(group.actor))
                ):
                    idle.append((needs(group), group.actor))
                    group.actor = None
                    return
                ray.get(group.actor.shutdown.remote(), timeout=120)
            except Exception:  # a dead actor has nothing to shut down
                pass
            ray.kill(group.actor)
            group.actor = None

    if resident is not None:
        widths = {needs(g) for g in waiting}
        for config in resident.configs():
            if config not in groups:  # no work for it here: its GPUs go to what has
                retire(config, config.tp if config.tp in widths else None)
    try:
        while waiting or active:
            while len(active) < limit:
                unrunnable = [g for g in waiting if needs(g) > gpu_budget]
                for group in unrunnable:
                    waiting.remove(group)
                    while group.pending:  # would wait for GPUs forever
                        pending = group.pending.popleft()
                        yield WorkerResult(
                            pending.point_id,
                            PointStatus.FAILED,
                            error_kind="no_gpus",  # not retryable: the cluster is what it is
                            error_message=(
                                f"TP {needs(group)} needs more GPUs than the {gpu_budget} here"
                            ),
                            kind=pending.kind,
                        )
                # Resident engines count as free GPUs here: start() shuts them down for it.
                chosen = next_group(
                    [needs(g) for g in waiting], gpu_budget - gpus_in_use(), bool(active)
                )
                if chosen is None:
                    break
                group = waiting[chosen]
                del waiting[chosen]
                loads = resident is None or group.config not in resident.configs()
                if admit is not None and not admit(group.pending[0], loads, tuple(group.pending)):
                    continue  # no time for it: its tasks are left unmeasured
                start(group)
            if not active:
                break
            ready, _ = ray.wait(list(active), num_returns=1)
            ref = ready[0]
            group = active.pop(ref)
            current = group.task
            assert current is not None
            task = current
            try:
                result: WorkerResult = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                result = WorkerResult(
                    task.point_id,
                    PointStatus.FAILED,
                    error_kind="actor_died",
                    error_message=f"worker actor died: {str(exc).splitlines()[0][:300]}",
                    retryable=True,
                    healthy=False,
                    kind=task.kind,
                )
            if group.reused and not result.healthy and result.error_kind in _LOAD_FAILURES:
                # A load that failed in a process of an earlier engine is not the
                # configuration's fault until a fresh process fails it too.
                group.pending.appendleft(task)
                finish(group)
                start(group, fresh=True)
                continue
            yield result
            if not result.healthy:
                finish(group)
                if result.error_kind in _LOAD_FAILURES:
                    # The configuration cannot load: every remaining point shares its fate.
                    while group.pending:
                        pending = group.pending.popleft()
                        yield WorkerResult(
                            pending.point_id,
                            result.status,
                            error_kind=result.error_kind,
                            error_message=result.error_message,
                            retryable=result.retryable,
                            kind=pending.kind,
                        )
                    continue
                if group.pending and group.restarts < max_actor_restarts:
                    group.restarts += 1
                    start(group)
                else:
                    while group.pending:
                        pending = group.pending.popleft()
                        yield WorkerResult(
                            pending.point_id,
                            PointStatus.FAILED,
                            error_kind="actor_died",
                            error_message="worker actor kept failing; not tried",
                            retryable=True,
                            kind=pending.kind,
                        )
                continue
            if group.pending and (admit is None or admit(group.pending[0], False)):
                dispatch(group)
            else:
                group.pending.clear()  # what admit refused is left unmeasured
                finish(group, reusable=True)

    finally:
        # A caller that stops early (or an error) must not leave actors holding GPUs; the
        # group whose result the caller stopped at has already left `active`.
        for group in started:
            finish(group)
        for _, actor in idle:
            _shut_down(actor)


def next_group(needs: Sequence[int], free_gpus: int, busy: bool) -> int | None:
    """Which waiting group to start now: the first (widest, as groups are sorted) that fits.

    Backfilling: a TP 4 group waiting for a whole host does not keep a free GPU idle that a TP 1
    group behind it could use. With nothing running, the first group starts whatever it needs.

    Args:
        needs: GPUs each waiting group needs, in queue order.
        free_gpus: GPUs not held by running actors.
        busy: Whether any actor is running.

    Returns:
        The index of the group to start, or None to wait for a running one to finish.
    """
    for index, wanted in enumerate(needs):
        if not busy or wanted <= free_gpus:
            return index
    return None


def group_timings(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """Sum held and window time of several actors into one duty-cycle figure."""
    held = sum(r.get("held_s", 0.0) for r in results)
    window = sum(r.get("window_s", 0.0) for r in results)
    return {"held_s": held, "window_s": window, "duty_cycle": window / held if held else 0.0}


def measure_on(worker: EngineWorker, task: Task) -> WorkerResult:
    """Measure ``task`` on a worker of this process, as an actor of the pool measures it."""
    if isinstance(task, ServingTask):
        return worker.measure_serving(task.point_id, task.load, task.max_num_seqs)
    return worker.measure(task.point_id, task.request)


def point_tasks(tasks: Sequence[Task]) -> list[PointTask]:
    """The tasks of a measurer that replays single requests, which all must be.

    Raises:
        InvalidRequestError: A serving task among them (a campaign with a ``serving`` section).
    """
    points = [task for task in tasks if isinstance(task, PointTask)]
    if len(points) < len(tasks):
        raise InvalidRequestError("this measurer replays single requests, not serving loads")
    return points


def tasks_by_config(tasks: Sequence[PointTask]) -> dict[EngineConfig, list[PointTask]]:
    """Tasks grouped by engine configuration (insertion order kept)."""
    grouped: dict[EngineConfig, list[PointTask]] = defaultdict(list)
    for task in tasks:
        grouped[task.config].append(task)
    return dict(grouped)
