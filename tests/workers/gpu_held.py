"""Plug-in engines that make Ray hold GPUs for the twin (for the pool's GPU-actor paths).

A Ray cluster started with ``num_gpus`` declares GPUs a CPU machine does not have; these engines
say they use GPUs, so their actors reserve them and the pool schedules them as vLLM's.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, ClassVar

from workers.devices import DeviceState
from workers.engines.simulated import SimulatedEngine, VirtualCounter
from workers.leftovers import referrer_chain

#: Engines loaded in this process so far (a reused actor has loaded one before).
_LOADS_HERE = [0]


class GpuHeldEngine(SimulatedEngine):
    """The simulated engine, held on (declared) GPUs like a real one."""

    uses_gpus = True


class _MemoryReadings:
    """The engine's counters, plus GPU memory in use read from ``readings`` (MiB), one per read
    (the last repeats); an exception in it is raised (as NVML failing)."""

    def __init__(self, counter: VirtualCounter, readings: tuple[float | Exception, ...]) -> None:
        self._counter = counter
        self._readings = list(readings)
        self.names, self.uuids, self.driver_version = counter.names, counter.uuids, None

    def energy_mj(self) -> list[int]:
        return self._counter.energy_mj()

    def state(self) -> DeviceState:
        return self._counter.state()

    def memory_used_mib(self) -> list[float]:
        reading = self._readings.pop(0) if len(self._readings) > 1 else self._readings[0]
        if isinstance(reading, Exception):
            raise reading
        return [reading] * self._counter.gpus


class _ScriptedMemoryEngine(GpuHeldEngine):
    readings: ClassVar[tuple[float | Exception, ...]] = (0.0,)

    def counter_source(self) -> _MemoryReadings | None:  # type: ignore[override]
        counter = super().counter_source()
        if counter is None:
            return None
        if getattr(self, "_memory", None) is None:
            self._memory = _MemoryReadings(counter, type(self).readings)
        return self._memory


class UnreadableMemoryEngine(_ScriptedMemoryEngine):
    """An engine whose GPUs cannot be shown free once it closes: its actor is never reused."""

    readings = (RuntimeError("NVML: GPU is lost"),)


class SlowToFreeEngine(_ScriptedMemoryEngine):
    """Its memory is back on the third reading after the close (processes still exiting)."""

    readings = (70_000.0, 30_000.0, 600.0)


class NeverFreeEngine(_ScriptedMemoryEngine):
    """Something of it keeps 70 GB of the GPU after the close."""

    readings = (70_000.0,)


#: What closed in-process engines left referenced in this process (their "model").
PARKED: list[Any] = []


class NeverFreeInProcessEngine(NeverFreeEngine):
    """As :class:`NeverFreeEngine`, its engine core in the actor's own process, where its close
    leaves its model referenced from :data:`PARKED`."""

    @property
    def settings(self) -> dict[str, Any]:
        return {**super().settings, "engine_core": "in-process"}

    def close(self) -> None:
        model = _Model()
        PARKED.append(model)
        self._model = weakref.ref(model)
        super().close()

    def leftovers(self) -> dict[str, Any]:
        model = self._model()
        return {"model_held_by": referrer_chain(model) if model is not None else []}


class _Model:
    """Stands for a model's weights (any object the collector tracks)."""


class FailsWhenReusedEngine(GpuHeldEngine):
    """Loads only in a fresh process: a second load in the same process fails."""

    def load(self) -> None:
        _LOADS_HERE[0] += 1
        if _LOADS_HERE[0] > 1:
            raise RuntimeError(f"left-over state of an earlier engine in process {os.getpid()}")
        super().load()
