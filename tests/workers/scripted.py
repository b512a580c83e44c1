"""A scripted counter source and clock: NVML-like ticks driven by a test-controlled power trace."""

from __future__ import annotations

import math
from collections.abc import Callable

from workers.devices import DeviceState
from workers.engines.simulated import VirtualClock

# The simulated engine's virtual clock is exactly the controllable clock these tests need.
FakeClock = VirtualClock


class ScriptedCounter:
    """Per-GPU energy counters with power ``power(t)`` (W per GPU), updated every ``period``."""

    def __init__(
        self,
        clock: FakeClock,
        power: Callable[[float], float],
        gpus: int = 1,
        period: float = 0.1,
        reset_at: float | None = None,
        phases: list[float] | None = None,
    ) -> None:
        self.clock = clock
        self.power = power
        self.gpus = gpus
        self.period = period
        self.reset_at = reset_at
        self.phases = phases if phases is not None else [0.0] * gpus  # update offsets per GPU
        self.names = ["NVIDIA H200"] * gpus
        self.uuids = [f"GPU-{n:08d}" for n in range(gpus)]
        self.driver_version = "580.00"

    def _energy(self, t: float) -> float:
        # Integrate with a fine step: power traces in tests are piecewise constant.
        steps = int(t / 0.001)
        return sum(self.power(i * 0.001) * 0.001 for i in range(steps))

    def energy_mj(self) -> list[int]:
        readings = []
        for phase in self.phases:
            tick = math.floor((self.clock.now() - phase) / self.period + 1e-9) * self.period + phase
            energy = self._energy(max(tick, 0.0))
            if self.reset_at is not None and tick >= self.reset_at:
                energy -= self._energy(self.reset_at) + 1.0  # the counter restarted from zero
            readings.append(int(energy * 1000))
        return readings

    def state(self) -> DeviceState:
        return DeviceState(power_w=[self.power(self.clock.now())] * self.gpus)
