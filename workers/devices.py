"""The device layer: which GPUs an engine uses, and their counters (energy, power, clocks).

Zeus-style split: this module only *reads* devices; :mod:`workers.meter` turns readings into
measurement windows. A :class:`CounterSource` is anything that reports a cumulative energy
counter per device; :class:`NvmlCounterSource` reads NVIDIA GPUs through NVML (``nvidia-ml-py``,
imported lazily), tests use a scripted source, and the simulated engine has a virtual one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmco2.errors import (
    EngineNotInstalledError,
    EngineUnavailableError,
    GpuLostError,
    GpuUnavailableError,
    NvmlError,
    NvmlNotSupportedError,
)


class Clock(Protocol):
    """Where a meter gets time from (real, or the simulated engine's virtual clock)."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        ...


class RealClock:
    """Wall time: ``time.perf_counter`` and ``time.sleep``."""

    def now(self) -> float:
        """Seconds on the performance counter."""
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        time.sleep(seconds)


@dataclass(frozen=True)
class DeviceState:
    """A snapshot of the metered devices (one entry per device)."""

    power_w: list[float] = field(default_factory=list)
    sm_clock_mhz: list[float] = field(default_factory=list)
    memory_clock_mhz: list[float] = field(default_factory=list)
    temperature_c: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the measurements table."""
        return {
            "power_w": self.power_w,
            "sm_clock_mhz": self.sm_clock_mhz,
            "memory_clock_mhz": self.memory_clock_mhz,
            "temperature_c": self.temperature_c,
        }


class CounterSource(Protocol):
    """Cumulative energy counters of a fixed set of devices."""

    @property
    def names(self) -> list[str]:
        """Device names (NVML names for GPUs)."""
        ...

    @property
    def uuids(self) -> list[str]:
        """Device UUIDs."""
        ...

    @property
    def driver_version(self) -> str | None:
        """Driver version, if any."""
        ...

    def energy_mj(self) -> list[int]:
        """Cumulative energy per device in millijoules."""
        ...

    def state(self) -> DeviceState:
        """Power, clocks and temperatures now."""
        ...


def visible_device_ids(environ: dict[str, str] | None = None) -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs), or None if it is unset."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def map_visible_to_nvml(visible: list[str] | None, nvml_uuids: list[str]) -> list[int]:
    """NVML indices of the devices a process sees.

    ``CUDA_VISIBLE_DEVICES`` may hold physical indices (``"2,3"``) or UUIDs (``"GPU-…"``, as Ray
    and Kubernetes set it, possibly abbreviated to a unique prefix). Unset means every device.

    Raises:
        EngineUnavailableError: When an entry matches no device.
    """
    if visible is None:
        return list(range(len(nvml_uuids)))
    indices = []
    for entry in visible:
        if entry.isdigit():
            index = int(entry)
            if index >= len(nvml_uuids):
                raise GpuUnavailableError(
                    f"CUDA_VISIBLE_DEVICES names GPU {index} but NVML sees {len(nvml_uuids)}"
                )
            indices.append(index)
            continue
        matches = [n for n, uuid in enumerate(nvml_uuids) if uuid.startswith(entry)]
        if len(matches) != 1:
            raise GpuUnavailableError(f"CUDA_VISIBLE_DEVICES entry {entry!r} matches no GPU")
        indices.append(matches[0])
    return indices


@contextmanager
def nvml_errors(what: str) -> Iterator[None]:
    """Turn an ``NVMLError`` raised inside into llmco2's typed errors, saying what was asked.

    ``NVML_ERROR_NOT_SUPPORTED`` → :class:`NvmlNotSupportedError`, ``NVML_ERROR_GPU_IS_LOST``
    → :class:`GpuLostError`, any other code → :class:`NvmlError` (as Zeus'
    ``_handle_nvml_errors`` does).
    """
    import pynvml

    try:
        yield
    except pynvml.NVMLError as exc:
        code = getattr(exc, "value", None)
        if code == pynvml.NVML_ERROR_NOT_SUPPORTED:
            raise NvmlNotSupportedError(f"{what}: not supported by this GPU (NVML)") from exc
        if code == pynvml.NVML_ERROR_GPU_IS_LOST:
            raise GpuLostError(f"{what}: the GPU has fallen off the bus (NVML)") from exc
        if code == pynvml.NVML_ERROR_NO_PERMISSION:
            raise NvmlError(f"{what}: NVML refused the query (no permission)") from exc
        raise NvmlError(f"{what}: {exc} (NVML error {code})") from exc


class NvmlCounterSource:
    """The GPUs this process sees, read through NVML.

    Args:
        count: Use only the first ``count`` visible GPUs (the engine's TP group); all if None.

    Raises:
        EngineUnavailableError: No NVML library, no GPU, or fewer GPUs than ``count``.
    """

    def __init__(self, count: int | None = None) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise EngineNotInstalledError.for_module("pynvml", "NVML metering") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise GpuUnavailableError(f"no NVIDIA driver or GPU found ({exc})") from exc
        self._nvml = pynvml
        with nvml_errors("listing the GPUs"):
            all_uuids = _nvml_uuids(pynvml)
        indices = map_visible_to_nvml(visible_device_ids(), all_uuids)
        if count is not None:
            if count > len(indices):
                raise GpuUnavailableError(
                    f"TP {count} needs {count} GPUs but {len(indices)} are visible"
                )
            indices = indices[:count]
        if not indices:
            raise GpuUnavailableError("no GPU is visible to this process")
        with nvml_errors("reading the GPUs' names and driver"):
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
            self._names = [_text(pynvml.nvmlDeviceGetName(h)) for h in self._handles]
            self._driver = _text(pynvml.nvmlSystemGetDriverVersion())
        self.nvml_indices = indices
        self._uuids = [all_uuids[i] for i in indices]

    @property
    def names(self) -> list[str]:
        """NVML names, e.g. ``NVIDIA H200``."""
        return list(self._names)

    @property
    def uuids(self) -> list[str]:
        """GPU UUIDs."""
        return list(self._uuids)

    @property
    def driver_version(self) -> str | None:
        """NVIDIA driver version."""
        return self._driver

    def energy_mj(self) -> list[int]:
        """``nvmlDeviceGetTotalEnergyConsumption`` of each GPU (mJ since driver load).

        Raises:
            NvmlNotSupportedError: A GPU without an energy counter (before Volta).
            GpuLostError: A GPU stopped answering.
            NvmlError: Any other NVML failure.
        """
        with nvml_errors("reading the GPU energy counter"):
            return [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles]

    def memory_used_mib(self) -> list[float]:
        """Memory in use on each GPU, by every process (MiB).

        Raises:
            NvmlError: An NVML failure (typed as for :meth:`energy_mj`).
        """
        with nvml_errors("reading the GPU memory in use"):
            return [self._nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20 for h in self._handles]

    def state(self) -> DeviceState:
        """Power draw, SM and memory clocks and temperature of each GPU.

        Raises:
            NvmlError: An NVML failure (typed as for :meth:`energy_mj`).
        """
        with nvml_errors("reading the GPU power, clocks and temperature"):
            return self._state()

    def _state(self) -> DeviceState:
        nvml = self._nvml
        return DeviceState(
            power_w=[nvml.nvmlDeviceGetPowerUsage(h) / 1000 for h in self._handles],
            sm_clock_mhz=[
                float(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)) for h in self._handles
            ],
            memory_clock_mhz=[
                float(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)) for h in self._handles
            ],
            temperature_c=[
                float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
                for h in self._handles
            ],
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_uuids(pynvml: Any) -> list[str]:
    """Every GPU's UUID in NVML's order (raises NVML's errors)."""
    count = pynvml.nvmlDeviceGetCount()
    return [
        _text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)
    ]


def detect_gpu_names() -> list[str]:
    """NVML names of the GPUs this process sees; empty when there are none or no driver."""
    try:
        return NvmlCounterSource().names
    except EngineUnavailableError:
        return []


def detect_gpu_uuids() -> list[str]:
    """NVML UUIDs of every GPU of this machine, whatever this process may use of them.

    ``CUDA_VISIBLE_DEVICES`` is not applied: Ray hides every GPU from a task that reserves
    none, and the question here is which physical GPUs the machine has. Empty when there are
    none or no driver.
    """
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        return _nvml_uuids(pynvml)
    except pynvml.NVMLError:
        return []
