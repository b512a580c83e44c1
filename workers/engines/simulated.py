"""The simulated engine: a digital twin of a GPU inference server that runs anywhere in ms.

It turns the featurizer's per-kernel counts into time and energy:

* **Time.** Each kernel call takes ``max((O/Th + τ_c) / η_c, (M/BW + τ_m) / η_m,
  I / (NET · η_n) + λ)`` plus a launch overhead: ``τ`` is the time a kernel needs to fill the GPU
  (small kernels cannot reach the roofline), ``η`` the best fraction of peak reached, ``λ`` the
  all-reduce latency. Every forward pass adds a per-step engine overhead (scheduling, sampling,
  Python), which dominates the decode of small models.
* **Power.** Each GPU draws its idle power (engine loaded) plus shares of a compute and a memory
  power budget proportional to how busy the tensor cores and the memory are during each kernel.
* **Noise.** A multiplicative factor per engine instance (the spread between instances that real
  GPUs show) and one per request; deterministic per seed and engine configuration.
* **Engine start.** Loading holds the GPUs ``a + b · weight GB per GPU + c · layers`` seconds of
  virtual time, so that a campaign on the twin spends GPU time on engine starts as a real one
  does (fitted on the 94 engine starts of the real H200 campaigns in ``experiments/data``: vLLM
  0.24 inside Ray actors with cold compile caches, 92-181 s, median 135 s; residual spread 19 s).

The hidden parameters live in ``workers/data/twin_params.json`` per GPU type (defaults are derived
from the datasheet for GPUs without a calibration) and are fitted to real measurements by
``experiments/calibration/calibrate_twin.py``.

The engine has a virtual clock and a virtual NVML-like energy counter that updates every
``counter_period_s``, so the real measurement protocol (windows, tick alignment, repeats) runs
against it unchanged, in microseconds instead of seconds. Every measurement it produces is
flagged ``simulated``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from featurize.gpus import Gpu
from featurize.kernels import (
    KERNEL_TYPES,
    NETWORK_KERNELS,
    KernelCounts,
    PointArrays,
    Roofline,
    kernel_counts,
)
from featurize.memory import check_fits, estimate_memory
from featurize.point import GpuSetup, InferencePoint
from featurize.request import InferenceRequest
from llmco2 import __version__
from llmco2.errors import InvalidRequestError
from storage.records import config_key
from workers.devices import DeviceState
from workers.engines.base import EngineConfig, InferenceEngine, RunResult
from workers.serving import DEFAULT_MAX_CONTEXT, ServingSession
from workers.serving_twin import DEFAULT_MAX_NUM_SEQS, ServingTwin, StepCosts

_NETWORK = np.array([k in NETWORK_KERNELS for k in KERNEL_TYPES])


@dataclass(frozen=True)
class TwinParameters:
    """Hidden parameters of one GPU type's twin (see the module docstring)."""

    compute_efficiency_max: float = 0.72
    compute_fill_s: float = 4e-6
    memory_efficiency_max: float = 0.85
    memory_fill_s: float = 3e-6
    network_efficiency: float = 0.65
    allreduce_latency_s: float = 12e-6
    kernel_launch_s: float = 0.5e-6
    step_overhead_s: float = 0.6e-3
    idle_power_w: float = 120.0
    compute_power_w: float = 480.0
    memory_power_w: float = 300.0
    instance_noise: float = 0.03
    request_noise: float = 0.008
    counter_period_s: float = 0.1
    engine_load_s: float = 108.5
    engine_load_s_per_gb: float = 0.16
    engine_load_s_per_layer: float = 0.82

    def load_seconds(self, weight_gb_per_gpu: float, layers: int) -> float:
        """Modelled engine start: seconds the GPUs are held before the first request."""
        return (
            self.engine_load_s
            + self.engine_load_s_per_gb * weight_gb_per_gpu
            + self.engine_load_s_per_layer * layers
        )

    @classmethod
    def for_gpu(cls, gpu: Gpu) -> TwinParameters:
        """Calibrated parameters of ``gpu`` if any, else datasheet-derived defaults."""
        calibrated = _calibrated().get(gpu.id)
        if calibrated is not None:
            return cls(**calibrated)
        return cls.datasheet_defaults(gpu)

    @classmethod
    def datasheet_defaults(cls, gpu: Gpu) -> TwinParameters:
        """Uncalibrated parameters from the datasheet (TDP, NVLink or PCIe)."""
        tdp = gpu.entry.tdp_w
        return cls(
            idle_power_w=0.17 * tdp,
            compute_power_w=0.70 * tdp,
            memory_power_w=0.45 * tdp,
            allreduce_latency_s=12e-6 if gpu.has_gpu_link else 30e-6,
        )


@cache
def _calibrated() -> dict[str, dict[str, Any]]:
    raw = json.loads(resources.files("workers").joinpath("data/twin_params.json").read_text())
    return {gpu: params for gpu, params in raw["gpus"].items()}


@dataclass(frozen=True)
class TwinCost:
    """Modelled time (s) and energy (J, all GPUs) of one request, per phase."""

    prefill_s: float
    decode_s: float
    prefill_j: float
    decode_j: float

    @property
    def latency_s(self) -> float:
        """Whole request."""
        return self.prefill_s + self.decode_s

    @property
    def energy_j(self) -> float:
        """Whole request."""
        return self.prefill_j + self.decode_j


@dataclass(frozen=True)
class TwinInputs:
    """What the twin needs from the featurizer, precomputed once for many points."""

    counts: KernelCounts
    roof: Roofline

    @classmethod
    def of(cls, points: Sequence[InferencePoint] | PointArrays) -> TwinInputs:
        """Kernel counts and roofline of ``points``."""
        counts = kernel_counts(points)
        return cls(counts, counts.roofline())


def twin_costs(inputs: TwinInputs, params: TwinParameters) -> np.ndarray:
    """Noise-free (prefill s, decode s, prefill J, decode J) of every point, shape ``(N, 4)``.

    Vectorised over points, so a calibration can evaluate thousands of parameter sets.
    """
    counts, roof = inputs.counts, inputs.roof
    p = counts.inputs
    passes = np.stack([np.ones_like(p.generated), p.generated - 1.0], axis=1)  # (N, 2)
    invocations = counts.calls[:, None, :] * passes[:, :, None]  # (N, 2, K)
    flops = counts.quantity("flops")
    memory = counts.memory_bytes
    network = counts.quantity("network_bytes")
    with np.errstate(divide="ignore", invalid="ignore"):
        t_compute = np.where(
            flops > 0,
            (roof.compute_time + params.compute_fill_s * invocations)
            / params.compute_efficiency_max,
            0.0,
        )
        t_memory = np.where(
            memory > 0,
            (roof.memory_time + params.memory_fill_s * invocations) / params.memory_efficiency_max,
            0.0,
        )
        t_network = np.where(
            network > 0,
            roof.network_time / params.network_efficiency
            + params.allreduce_latency_s * invocations,
            0.0,
        )
    t_kernel = np.maximum(np.maximum(t_compute, t_memory), t_network)
    t_kernel = (t_kernel + params.kernel_launch_s * invocations) * counts.present[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        busy_c = np.where(t_kernel > 0, roof.compute_time / t_kernel, 0.0)
        busy_m = np.where(t_kernel > 0, roof.memory_time / t_kernel, 0.0)
    busy_c = np.clip(busy_c * ~_NETWORK, 0.0, 1.0)
    busy_m = np.clip(busy_m, 0.0, 1.0)
    power = params.idle_power_w + params.compute_power_w * busy_c + params.memory_power_w * busy_m
    overhead = params.step_overhead_s * passes  # (N, 2)
    seconds = t_kernel.sum(axis=2) + overhead
    joules = ((t_kernel * power).sum(axis=2) + overhead * params.idle_power_w) * p.tp[:, None]
    return np.asarray(np.concatenate([seconds, joules], axis=1), dtype=np.float64)


def twin_costs_of(points: Sequence[InferencePoint]) -> np.ndarray:
    """:func:`twin_costs` of points of any GPU types, each by its own type's parameters.

    One vectorised evaluation per GPU type; rows in the order of ``points``.
    """
    costs = np.zeros((len(points), 4))
    by_gpu: dict[str, list[int]] = {}
    for index, point in enumerate(points):
        by_gpu.setdefault(point.setup.gpu.id, []).append(index)
    for rows in by_gpu.values():
        group = [points[i] for i in rows]
        costs[rows] = twin_costs(TwinInputs.of(group), TwinParameters.for_gpu(group[0].setup.gpu))
    return costs


def twin_cost(point: InferencePoint, params: TwinParameters) -> TwinCost:
    """Noise-free time and energy of one point under ``params``."""
    prefill_s, decode_s, prefill_j, decode_j = twin_costs(TwinInputs.of([point]), params)[0]
    return TwinCost(float(prefill_s), float(decode_s), float(prefill_j), float(decode_j))


def engine_start_seconds(point: InferencePoint, params: TwinParameters | None = None) -> float:
    """Seconds an engine serving ``point`` holds its GPUs while it starts, by the start model.

    Args:
        point: Any point of the engine configuration (its request does not matter).
        params: The twin's parameters (default: those of the point's GPU).
    """
    params = params if params is not None else TwinParameters.for_gpu(point.setup.gpu)
    weight_gb = estimate_memory(point).weight_bytes / 1e9
    return params.load_seconds(weight_gb, point.architecture.num_layers)


class VirtualClock:
    """The simulated engine's clock: time passes only when something happens."""

    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        """Virtual seconds."""
        return self.time

    def sleep(self, seconds: float) -> None:
        """Idle for ``seconds`` (charged at idle power by the counter)."""
        self.time += seconds


class VirtualCounter:
    """An NVML-like cumulative energy counter per GPU, updated every ``period`` virtual seconds.

    Energy accrues as piecewise-constant power segments; a reading returns the energy up to the
    last update, like the real counter.
    """

    def __init__(
        self, clock: VirtualClock, gpus: int, idle_power_w: float, period: float, name: str
    ) -> None:
        self.clock = clock
        self.gpus = gpus
        self.idle_power_w = idle_power_w
        self.period = period
        self._name = name
        self._base_time = 0.0
        self._base_energy_j = 0.0  # per GPU, up to _base_time
        self._busy: list[tuple[float, float, float]] = []  # (start, end, power per GPU)

    @property
    def names(self) -> list[str]:
        """Device names."""
        return [self._name] * self.gpus

    @property
    def uuids(self) -> list[str]:
        """Virtual UUIDs."""
        return [f"SIM-{self._name}-{n}" for n in range(self.gpus)]

    @property
    def driver_version(self) -> str | None:
        """No driver."""
        return None

    def busy(self, seconds: float, energy_j_per_gpu: float) -> None:
        """Record a request that takes ``seconds`` from now and uses this much energy per GPU."""
        start = self.clock.now()
        if seconds > 0:
            self._busy.append((start, start + seconds, energy_j_per_gpu / seconds))
        self.clock.sleep(seconds)

    def _energy_at(self, t: float) -> float:
        energy = self._base_energy_j + self.idle_power_w * (t - self._base_time)
        for start, end, power in self._busy:
            overlap = max(0.0, min(end, t) - max(start, self._base_time))
            energy += (power - self.idle_power_w) * overlap
        return energy

    def energy_mj(self) -> list[int]:
        """Energy per GPU up to the last counter update, in mJ."""
        tick = math.floor(self.clock.now() / self.period + 1e-9) * self.period
        energy = self._energy_at(tick)
        # Fold finished segments into the base so the list stays short.
        self._base_energy_j = energy
        self._base_time = tick
        self._busy = [seg for seg in self._busy if seg[1] > tick]
        return [int(energy * 1000)] * self.gpus

    def state(self) -> DeviceState:
        """Idle-looking device state."""
        return DeviceState(power_w=[self.idle_power_w] * self.gpus)


class SimulatedEngine(InferenceEngine):
    """The digital twin behind the engine interface (every result is flagged simulated)."""

    name = "simulated"
    uses_gpus = False

    def __init__(self, config: EngineConfig, params: TwinParameters | None = None) -> None:
        super().__init__(config)
        if config.gpu is None:
            raise InvalidRequestError(
                "the simulated engine models a GPU: EngineConfig.gpu is required"
            )
        self.params = params if params is not None else TwinParameters.for_gpu(config.gpu)
        # Each engine instance draws its own noise: seeded by the campaign's seed *and* its
        # configuration, so that two engines of one campaign do not share one instance factor.
        identity = config_key(self._point(InferenceRequest(1, 1, 1)), self.name)
        self._rng = np.random.default_rng([config.seed, int(identity[:15], 16)])
        self._clock = VirtualClock()
        self._counter: VirtualCounter | None = None
        self._costs: dict[InferenceRequest, TwinCost] = {}
        self._instance_factor = 1.0

    def load(self) -> None:
        """Check the configuration fits (as a real engine would fail); start; draw noise.

        The start holds the GPUs for the modelled engine-start time (virtual seconds).
        """
        assert self.config.gpu is not None
        probe = self._point(InferenceRequest(1, 1, 1))
        check_fits(probe)
        self._clock.sleep(engine_start_seconds(probe, self.params))
        self._instance_factor = float(np.exp(self._rng.normal(0.0, self.params.instance_noise)))
        self._counter = VirtualCounter(
            self._clock,
            self.config.tp,
            self.params.idle_power_w,
            self.params.counter_period_s,
            self.config.gpu.entry.nvml_names[0] if self.config.gpu.entry.nvml_names else "SIM",
        )

    def _point(self, request: InferenceRequest) -> InferencePoint:
        assert self.config.gpu is not None
        return InferencePoint(
            self.config.architecture,
            request,
            GpuSetup(self.config.gpu, self.config.tp),
            self.config.precision,
            self.config.flash_attention,
        )

    def cost(self, request: InferenceRequest) -> TwinCost:
        """Noise-free modelled cost of ``request`` (cached per shape)."""
        cost = self._costs.get(request)
        if cost is None:
            check_fits(self._point(request))
            cost = self._costs[request] = twin_cost(self._point(request), self.params)
        return cost

    def run(self, request: InferenceRequest) -> RunResult:
        """Advance the virtual clock and counter by one (noisy) request."""
        if self._counter is None:
            raise RuntimeError("load() the engine first")
        cost = self.cost(request)
        noise = float(np.exp(self._rng.normal(0.0, self.params.request_noise)))
        seconds = cost.latency_s * noise
        energy = cost.energy_j * self._instance_factor * noise
        self._counter.busy(seconds, energy / self.config.tp)
        return RunResult(seconds, request.batch_size * request.generated_tokens)

    def step_engine(
        self, max_num_seqs: int = DEFAULT_MAX_NUM_SEQS, max_context: int = DEFAULT_MAX_CONTEXT
    ) -> ServingTwin:
        """This engine serving continuously batched requests on its modelled costs.

        Drive it on its own clock and counter: ``twin.replay(load)``, or
        ``serve(twin, load, twin.clock, twin.energy_j)`` (:mod:`workers.serving`). Costs are the
        noise-free ones, scaled by this engine instance's factor.

        Raises:
            InvalidRequestError: ``max_num_seqs`` or ``max_context`` out of range.
        """
        if self._counter is None or self.config.gpu is None:
            raise RuntimeError("load() the engine first")
        params, factor = self.params, self._instance_factor

        def costs(points: Sequence[InferencePoint]) -> tuple[np.ndarray, np.ndarray]:
            modelled = twin_costs(TwinInputs.of(list(points)), params)
            return modelled[:, 2:4] * factor, modelled[:, 0:2]

        table = StepCosts.tabulate(
            costs,
            params.idle_power_w * self.config.tp,
            self.config.architecture,
            GpuSetup(self.config.gpu, self.config.tp),
            self.config.precision,
            max_num_seqs,
            max_context,
        )
        return ServingTwin(table, max_num_seqs)

    def serving_session(self, max_num_seqs: int, max_context: int) -> ServingSession:
        """:meth:`step_engine` on its own clock and counter, settled into this engine's.

        Once the run is over its seconds and joules are spent on this engine's virtual clock
        and counter, so that the worker's held time and GPU-seconds count them.
        """
        twin = self.step_engine(max_num_seqs, max_context)
        counter = self._counter
        assert counter is not None

        def settle() -> None:
            counter.busy(twin.clock.seconds, twin.joules / self.config.tp)

        return ServingSession(twin, twin.clock, twin.energy_j, settle)

    @property
    def version(self) -> str:
        """The twin's version is llmco2's."""
        return f"simulated-{__version__}"

    def counter_source(self) -> VirtualCounter | None:
        """The virtual energy counter."""
        return self._counter

    def clock(self) -> VirtualClock:
        """The virtual clock."""
        return self._clock

    def with_params(self, **changes: Any) -> TwinParameters:
        """This engine's parameters with some changed (for calibration)."""
        return replace(self.params, **changes)

    def describe(self) -> dict[str, Any]:
        """The parameters, for measurement records."""
        return asdict(self.params)
