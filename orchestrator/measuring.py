"""How the campaign driver has its points measured: one interface, Ray's actors behind it.

The driver hands a round's pending points to a :class:`Measurer` and stores what comes back.
:class:`RayMeasurer` is what campaigns use: engine actors on the Ray cluster
(:func:`workers.pool.measure_tasks`), some of them kept loaded from one round to the next.
Experiments on Algorithm 1 itself (the strategy benchmark on the simulated twin, the pool replay
on real data) run the same driver with a measurer of their own, in process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from workers.actors import WorkerResult
from workers.engines import EngineConfig
from workers.pool import Admission, ResidentEngines, Task, measure_tasks
from workers.protocol import ProtocolSettings


class Measurer(Protocol):
    """Measures points for the campaign driver."""

    def measure(
        self, tasks: Sequence[Task], timings: list[dict[str, float]]
    ) -> Iterator[WorkerResult]:
        """One result per task, as they arrive.

        Args:
            tasks: The points and serving points, with their engine configurations.
            timings: Each finished engine's held and in-window seconds are appended here
                (the round's duty cycle).
        """
        ...

    def loaded(self) -> list[EngineConfig]:
        """The engines still loaded from earlier calls (they need no start)."""
        ...

    def gpu_uuids(self) -> list[str]:
        """The physical GPUs (NVML UUIDs) its engines run on; empty where unknown."""
        ...

    def close(self) -> None:
        """Shut down every engine still loaded."""
        ...


class RayMeasurer:
    """Engine actors on the Ray cluster, up to ``resident_engines`` kept between rounds.

    Args:
        engine: The engine every point runs on.
        settings: The measurement protocol.
        workers: Actors at once for engines without GPUs (GPU engines: as many as GPUs allow).
        uses_gpus: Whether the engine needs GPUs.
        resident_engines: Engines kept loaded from one call to the next (0: none).
        num_cpus: CPUs each actor reserves.
        admit: Asked before each engine start and point (a time limit); None: all measured.
        actor_env: Environment variables of every engine actor (its engine's settings).
    """

    def __init__(
        self,
        engine: str,
        settings: ProtocolSettings,
        *,
        workers: int,
        uses_gpus: bool,
        resident_engines: int = 0,
        num_cpus: float = 0.5,
        admit: Admission | None = None,
        actor_env: dict[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.max_actors = None if uses_gpus else workers
        self.num_cpus = num_cpus
        self.resident = ResidentEngines(resident_engines) if resident_engines else None
        self.admit = admit
        self.actor_env = actor_env
        self.uses_gpus = uses_gpus

    def measure(
        self, tasks: Sequence[Task], timings: list[dict[str, float]]
    ) -> Iterator[WorkerResult]:
        """Results of ``tasks`` from Ray actors (see :func:`workers.pool.measure_tasks`).

        Tasks that ``admit`` refuses yield no result.
        """
        return measure_tasks(
            self.engine, tasks, self.settings, num_cpus=self.num_cpus,
            max_actors=self.max_actors, timings=timings, resident=self.resident,
            admit=self.admit, actor_env=self.actor_env,
        )  # fmt: skip

    def loaded(self) -> list[EngineConfig]:
        """The resident engines, oldest first."""
        return self.resident.configs() if self.resident is not None else []

    def gpu_uuids(self) -> list[str]:
        """Every GPU of the Ray cluster (:func:`workers.cluster.cluster_gpu_uuids`).

        None for an engine without GPUs, and none where the nodes do not answer (the
        campaign's reference point is then measured, as in every run).
        """
        if not self.uses_gpus:
            return []
        from ray.exceptions import RayError

        from workers.cluster import cluster_gpu_uuids

        try:
            return cluster_gpu_uuids()
        except RayError:
            return []

    def close(self) -> None:
        """Shut the resident engines down."""
        if self.resident is not None:
            self.resident.close()
