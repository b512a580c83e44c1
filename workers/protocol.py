"""The measurement protocol: how one point becomes a trustworthy energy label.

For a request shape:

1. Warm up: ``warmups`` runs of the full request and of its prefill alone (the first run of a
   new shape compiles kernels and captures graphs: 2-3× slower on the GPU).
2. Full request: ``windows`` measurement windows, each of back-to-back identical requests until
   the window lasts at least ``min_window_s`` and ``min_periods`` updates of the energy counter
   and holds at least ``min_requests`` requests. Energy and latency per request are the window's
   totals divided by its count.
3. Prefill alone: the same with one output token (``max_tokens = 1``); decode = total − prefill.
4. Mean, standard deviation and coefficient of variation over the windows; when the CV exceeds
   ``cv_threshold`` the point is measured once more, and flagged ``noisy`` if it stays so.

Without an energy counter (vLLM on a CPU) the same runs happen and only timings are reported.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from featurize.request import InferenceRequest
from llmco2.errors import MeasurementError
from storage.records import MeasurementRecord
from workers.engines.base import InferenceEngine
from workers.meter import EnergyMeter
from workers.protocol_settings import ProtocolSettings

__all__ = ["MeasurementProtocol", "ProtocolSettings", "WindowStats"]


@dataclass
class WindowStats:
    """Per-request energy and latency of the windows of one request shape."""

    energy_j: list[float] = field(default_factory=list)
    energy_per_gpu_j: list[list[float]] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    window_s: float = 0.0
    requests: int = 0

    @property
    def mean_energy(self) -> float | None:
        """Mean energy per request."""
        return statistics.fmean(self.energy_j) if self.energy_j else None

    @property
    def std_energy(self) -> float | None:
        """Standard deviation of the windows' energy per request."""
        return statistics.stdev(self.energy_j) if len(self.energy_j) > 1 else None

    @property
    def cv(self) -> float | None:
        """Coefficient of variation of the windows' energy per request."""
        mean, std = self.mean_energy, self.std_energy
        return std / mean if mean and std is not None else None

    @property
    def mean_latency(self) -> float:
        """Mean latency per request."""
        return statistics.fmean(self.latency_s)


class MeasurementProtocol:
    """Measures request shapes on one loaded engine.

    Args:
        engine: A loaded engine.
        settings: Protocol knobs.
        meter: Energy meter over the engine's devices (None: timings only).
    """

    def __init__(
        self,
        engine: InferenceEngine,
        settings: ProtocolSettings | None = None,
        meter: EnergyMeter | None = None,
    ) -> None:
        self.engine = engine
        self.meter = meter
        self.settings = settings if settings is not None else ProtocolSettings()
        self.clock = engine.clock()
        self.window_seconds = 0.0  # time inside measurement windows (for the duty cycle)
        self._warm: set[InferenceRequest] = set()

    @property
    def settings(self) -> ProtocolSettings:
        """The protocol's knobs; setting them also sets the counter updates the meter requires."""
        return self._settings

    @settings.setter
    def settings(self, settings: ProtocolSettings) -> None:
        self._settings = settings
        if self.meter is not None:
            self.meter.min_periods = settings.min_periods

    def _warm_up(self, request: InferenceRequest) -> float:
        """Run the warm-ups of a shape; returns the last run's latency."""
        latency = 0.0
        count = self.settings.warmups if request not in self._warm else 0
        for _ in range(max(count, 1)):
            start = self.clock.now()
            self._run(request)
            latency = self.clock.now() - start
        self._warm.add(request)
        return max(latency, 1e-6)

    def _run(self, request: InferenceRequest) -> None:
        result = self.engine.run(request)
        expected = request.batch_size * request.generated_tokens
        if result.output_tokens != expected:
            raise MeasurementError(
                f"engine produced {result.output_tokens} tokens, expected {expected}"
            )

    def _window(
        self, request: InferenceRequest, latency_estimate: float, stats: WindowStats
    ) -> None:
        min_s = self.settings.min_window_s
        if self.meter is not None and self.meter.align:
            min_s = max(min_s, self.meter.min_window_s)
        planned = max(self.settings.min_requests, math.ceil(min_s / latency_estimate))
        name = f"w{len(stats.latency_s)}"
        if self.meter is not None:
            self.meter.begin_window(name)
        start = self.clock.now()
        count = 0
        try:
            while count < planned or self.clock.now() - start < min_s:
                self._run(request)
                count += 1
        except BaseException:
            if self.meter is not None:
                self.meter.cancel_window(name)
            raise
        elapsed = self.clock.now() - start
        if self.meter is not None:
            window = self.meter.end_window(name)
            if window.too_short:
                raise MeasurementError(f"window {name} shorter than the counter allows")
            stats.energy_j.append(window.energy_j / count)
            stats.energy_per_gpu_j.append([e / count for e in window.energy_per_gpu_j])
        stats.latency_s.append(elapsed / count)
        stats.window_s += elapsed
        stats.requests += count
        self.window_seconds += elapsed

    def measure_shape(self, request: InferenceRequest) -> WindowStats:
        """Warm up and measure one request shape over the configured windows."""
        latency = self._warm_up(request)
        stats = WindowStats()
        for _ in range(self.settings.windows):
            self._window(request, latency, stats)
        cv = stats.cv
        if cv is not None and cv > self.settings.cv_threshold and self.settings.remeasure_noisy:
            again = WindowStats()
            for _ in range(self.settings.windows):
                self._window(request, latency, again)
            if again.cv is not None and again.cv < cv:
                stats = again
        return stats

    def measure(self, request: InferenceRequest) -> MeasurementRecord:
        """The full protocol for one point: total, prefill and decode.

        Raises:
            MeasurementError: When a window fails (counter reset, wrong token count).
        """
        started = datetime.now(UTC)
        source = self.engine.counter_source() if self.meter is not None else None
        before = source.state().to_dict() if source is not None else None
        total = self.measure_shape(request)
        prefill: WindowStats | None = None
        if self.settings.measure_prefill and request.generated_tokens > 1:
            prefill = self.measure_shape(
                InferenceRequest(request.batch_size, request.prompt_tokens, 1)
            )
        elif request.generated_tokens == 1:
            prefill = total
        after = source.state().to_dict() if source is not None else None

        energy = total.mean_energy
        prefill_energy = prefill.mean_energy if prefill is not None else None
        decode_energy = (
            energy - prefill_energy if energy is not None and prefill_energy is not None else None
        )
        prefill_latency = prefill.mean_latency if prefill is not None else None
        decode_per_token = None
        if prefill_latency is not None and request.generated_tokens > 1:
            decode_per_token = (total.mean_latency - prefill_latency) / (
                request.generated_tokens - 1
            )
        noisy = any(
            s is not None and s.cv is not None and s.cv > self.settings.cv_threshold
            for s in (total, prefill)
        )
        per_gpu = (
            [statistics.fmean(col) for col in zip(*total.energy_per_gpu_j, strict=True)]
            if total.energy_per_gpu_j
            else None
        )
        extra: dict[str, Any] = {
            "window_s": total.window_s
            + (prefill.window_s if prefill is not total and prefill else 0),
            "requests_measured": total.requests,
            "prefill_cv": prefill.cv if prefill is not None else None,
            "protocol": self.settings.__dict__,
        }
        if self.engine.settings:
            extra["engine_settings"] = self.engine.settings
        return MeasurementRecord(
            engine_name=self.engine.name,
            simulated=not self.engine.uses_gpus,
            energy_j=energy,
            prefill_energy_j=prefill_energy,
            decode_energy_j=decode_energy,
            gpu_energies_j=per_gpu,
            latency_s=total.mean_latency,
            prefill_latency_s=prefill_latency,
            decode_latency_per_token_s=decode_per_token,
            avg_power_w=energy / total.mean_latency if energy is not None else None,
            idle_power_w=sum(self.meter.idle_power_per_gpu_w)
            if self.meter is not None and self.meter.idle_power_per_gpu_w
            else None,
            repeats=len(total.latency_s),
            energy_std_j=total.std_energy,
            energy_cv=total.cv,
            counter_period_s=self.meter.counter_period() if self.meter is not None else None,
            noisy=noisy,
            gpu_names=source.names if source is not None else None,
            gpu_uuids=source.uuids if source is not None else None,
            driver_version=source.driver_version if source is not None else None,
            gpu_state_before=before,
            gpu_state_after=after,
            engine_version=self.engine.version,
            extra=extra,
            started_at=started.replace(tzinfo=None),
            finished_at=datetime.now(UTC).replace(tzinfo=None),
        )
