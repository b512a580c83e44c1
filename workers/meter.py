"""Energy measurement windows over a :class:`~workers.devices.CounterSource`.

``begin_window`` / ``end_window`` return a :class:`Measurement` (duration, energy per GPU, total,
average power), as in Zeus. NVML's energy counter is not continuous: it jumps at updates
(~every 100 ms on an H200, see :meth:`EnergyMeter.counter_period`). A window is therefore
**aligned to counter updates**: it opens the moment the counter ticks, and closes at the first
tick after the work ended, so both ends read fresh values; the idle tail between the end of the
work and the closing tick is charged at the measured idle power and subtracted. A window shorter
than ``min_periods`` updates is flagged ``too_short`` and never reported as is; a counter that
went backwards (reset) fails the window.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

from llmco2.errors import MeasurementError
from workers.devices import Clock, CounterSource, RealClock

#: Fewest counter updates a window must span before its energy is trusted.
DEFAULT_MIN_PERIODS = 20
_POLL_S = 0.0005


@dataclass(frozen=True)
class Measurement:
    """One measurement window.

    Attributes:
        name: The window's label.
        duration_s: Time from the opening tick to the end of the work.
        energy_per_gpu_j: Energy of each metered GPU over the work (idle tail removed).
        too_short: The window spans fewer counter updates than required.
    """

    name: str
    duration_s: float
    energy_per_gpu_j: list[float]
    too_short: bool = False

    @property
    def energy_j(self) -> float:
        """Energy of all metered GPUs together."""
        return sum(self.energy_per_gpu_j)

    @property
    def avg_power_w(self) -> float:
        """Average power of all metered GPUs together."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0


@dataclass
class _OpenWindow:
    start_time: float
    start_energy_mj: list[int]


class EnergyMeter:
    """Measurement windows over the devices of one counter source.

    Args:
        source: The devices' counters.
        clock: Time source (the simulated engine passes its virtual clock).
        min_periods: Counter updates a window must span.
        align: Align windows to counter updates (off only for sources without discrete ticks).
    """

    def __init__(
        self,
        source: CounterSource,
        clock: Clock | None = None,
        *,
        min_periods: int = DEFAULT_MIN_PERIODS,
        align: bool = True,
    ) -> None:
        self.source = source
        self.clock = clock if clock is not None else RealClock()
        self.min_periods = min_periods
        self.align = align
        self.idle_power_per_gpu_w: list[float] | None = None
        self._period_s: float | None = None
        self._open: dict[str, _OpenWindow] = {}

    # Counter behaviour ---------------------------------------------------------------------
    def _wait_for_tick(self, timeout_s: float) -> tuple[float, list[int]]:
        """Poll until any counter changes; returns (time of the change, counters)."""
        before = self.source.energy_mj()
        deadline = self.clock.now() + timeout_s
        while True:
            self.clock.sleep(_POLL_S)
            now = self.clock.now()
            current = self.source.energy_mj()
            if current != before:
                return now, current
            if now > deadline:
                raise MeasurementError(f"energy counters did not change within {timeout_s:.1f} s")

    def counter_period(self, samples: int = 10, timeout_s: float = 5.0) -> float:
        """The counter update period in seconds (median interval between changes; cached)."""
        if self._period_s is None:
            ticks = [self._wait_for_tick(timeout_s)[0] for _ in range(samples + 1)]
            intervals = [b - a for a, b in itertools.pairwise(ticks)]
            self._period_s = statistics.median(intervals)
        return self._period_s

    @property
    def min_window_s(self) -> float:
        """Shortest window whose energy is trusted: ``min_periods`` counter updates."""
        return self.min_periods * self.counter_period()

    def measure_idle_power(self, seconds: float = 2.0) -> list[float]:
        """Average power per GPU over ``seconds`` of doing nothing (kept for tail corrections)."""
        self.begin_window("idle")
        self.clock.sleep(seconds)
        window = self._close("idle", subtract_tail=False)
        self.idle_power_per_gpu_w = [e / window.duration_s for e in window.energy_per_gpu_j]
        return self.idle_power_per_gpu_w

    # Windows -------------------------------------------------------------------------------
    def begin_window(self, name: str) -> None:
        """Open a window (at the next counter update when aligned).

        Raises:
            MeasurementError: When a window of that name is already open.
        """
        if name in self._open:
            raise MeasurementError(f"measurement window {name!r} is already open")
        if self.align:
            start, energy = self._wait_for_tick(timeout_s=max(1.0, 4 * self.counter_period()))
        else:
            start, energy = self.clock.now(), self.source.energy_mj()
        self._open[name] = _OpenWindow(start, energy)

    def end_window(self, name: str) -> Measurement:
        """Close a window and return what it measured.

        Raises:
            MeasurementError: Unknown window, or a counter went backwards (reset).
        """
        return self._close(name, subtract_tail=True)

    def cancel_window(self, name: str) -> None:
        """Forget an open window (the work inside it failed)."""
        self._open.pop(name, None)

    def _close(self, name: str, subtract_tail: bool) -> Measurement:
        window = self._open.pop(name, None)
        if window is None:
            raise MeasurementError(f"measurement window {name!r} was never opened")
        work_end = self.clock.now()
        if self.align:
            tick, energy = self._wait_for_tick(timeout_s=max(1.0, 4 * self.counter_period()))
        else:
            tick, energy = work_end, self.source.energy_mj()
        deltas = [(b - a) / 1000 for a, b in zip(window.start_energy_mj, energy, strict=True)]
        if any(d < 0 for d in deltas):
            raise MeasurementError(
                f"energy counter went backwards in window {name!r} (counter reset): discarded"
            )
        tail = max(0.0, tick - work_end)
        # Without tail subtraction (idle power) the whole tick-to-tick interval counts.
        duration = work_end - window.start_time + (0.0 if subtract_tail else tail)
        if subtract_tail and self.idle_power_per_gpu_w is not None:
            deltas = [
                max(0.0, d - p * tail)
                for d, p in zip(deltas, self.idle_power_per_gpu_w, strict=True)
            ]
        elif subtract_tail and duration + tail > 0:
            # Without an idle reading, scale to the work's share of the counted interval.
            deltas = [d * duration / (duration + tail) for d in deltas]
        too_short = self.align and duration < self.min_window_s
        return Measurement(name, duration, deltas, too_short)
