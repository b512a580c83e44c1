"""Energy measurement windows over a :class:`~workers.devices.CounterSource`.

``begin_window`` / ``end_window`` return a :class:`Measurement` (duration, energy per GPU, total,
average power), as in Zeus. NVML's energy counter is not continuous: it jumps at updates
(~every 100 ms on an H200, see :meth:`EnergyMeter.counter_period`), and the GPUs of one host
update out of phase. A window is therefore **aligned to every GPU's counter updates**: it opens
once each GPU's counter has ticked and closes once each has ticked again after the work ended, so
every reading is fresh; for each GPU the idle stretches between its ticks and the work (before
the work starts and after it ends) are charged at that GPU's measured idle power and subtracted.
A window shorter than ``min_periods`` updates is flagged ``too_short`` and never reported as is;
a counter that went backwards (reset) fails the window.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

from llmco2.errors import MeasurementError
from workers.devices import Clock, CounterSource, RealClock
from workers.protocol_settings import DEFAULT_MIN_PERIODS

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
    start_time: float  # when the work may begin (every GPU has ticked)
    tick_times: list[float]  # per GPU, when its opening reading was taken
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
    def _wait_for_ticks(
        self, timeout_s: float, first: int | None = None
    ) -> tuple[list[float], list[int]]:
        """Poll until every GPU's counter (or only GPU ``first``) changed; per-GPU times, values."""
        before = self.source.energy_mj()
        watched = range(len(before)) if first is None else [first]
        times: dict[int, float] = {}
        values = list(before)
        deadline = self.clock.now() + timeout_s
        while len(times) < len(watched):
            self.clock.sleep(_POLL_S)
            now = self.clock.now()
            current = self.source.energy_mj()
            for gpu in watched:
                if gpu not in times and current[gpu] != before[gpu]:
                    times[gpu] = now
                    values[gpu] = current[gpu]
            if now > deadline:
                raise MeasurementError(f"energy counters did not change within {timeout_s:.1f} s")
        if first is not None:
            return [times[first]] * len(before), values
        return [times[gpu] for gpu in range(len(before))], values

    def counter_period(self, samples: int = 10, timeout_s: float = 5.0) -> float:
        """The counter update period in seconds (median interval between changes; cached)."""
        if self._period_s is None:
            # One GPU's updates: the GPUs of a host tick out of phase with each other.
            ticks = [self._wait_for_ticks(timeout_s, first=0)[0][0] for _ in range(samples + 1)]
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
            ticks, energy = self._wait_for_ticks(timeout_s=max(1.0, 4 * self.counter_period()))
            start = self.clock.now()
        else:
            start, energy = self.clock.now(), self.source.energy_mj()
            ticks = [start] * len(energy)
        self._open[name] = _OpenWindow(start, ticks, energy)

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
            ticks, energy = self._wait_for_ticks(timeout_s=max(1.0, 4 * self.counter_period()))
        else:
            energy = self.source.energy_mj()
            ticks = [work_end] * len(energy)
        deltas = [(b - a) / 1000 for a, b in zip(window.start_energy_mj, energy, strict=True)]
        if any(d < 0 for d in deltas):
            raise MeasurementError(
                f"energy counter went backwards in window {name!r} (counter reset): discarded"
            )
        duration = work_end - window.start_time
        # Per GPU: idle before the work (opening tick → start) and after it (end → closing tick).
        idle = [
            max(0.0, window.start_time - opened) + max(0.0, closed - work_end)
            for opened, closed in zip(window.tick_times, ticks, strict=True)
        ]
        if not subtract_tail:
            # Idle-power readings count each GPU's whole tick-to-tick interval.
            spans = [c - o for o, c in zip(window.tick_times, ticks, strict=True)]
            duration = max(spans) if spans else duration
            deltas = [
                d * duration / span if span > 0 else d
                for d, span in zip(deltas, spans, strict=True)
            ]
        elif self.idle_power_per_gpu_w is not None:
            deltas = [
                max(0.0, d - p * extra)
                for d, p, extra in zip(deltas, self.idle_power_per_gpu_w, idle, strict=True)
            ]
        elif duration > 0:
            # Without an idle reading, keep the work's share of each GPU's counted interval.
            deltas = [
                d * duration / (duration + extra) for d, extra in zip(deltas, idle, strict=True)
            ]
        too_short = self.align and duration < self.min_window_s
        return Measurement(name, duration, deltas, too_short)
