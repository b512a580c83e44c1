"""The analytical energy model: roofline time with fitted efficiencies, times power, plus work.

Per GPU type, for each phase (prefill, decode) of a request on a tensor-parallel group of ``l``
GPUs, from the featurizer's per-GPU kernel counts:

**Time** (seconds, the group runs in lock-step)::

    W     = a_c·T_c + a_m·T_m + a_n·T_n + a_k·K + a_e·T_e            # kernel work of the phase
            (+ a_c8·T_c + a_m8·T_m in place of the first two for 8-bit compute)
    T_pre = smax(W_pre, τ) + c_0 + c_s·b             # one forward pass and the set-ups
    T_dec = S · smax(W_dec / S, τ)                   # S = G - 1 forward passes

``T_c``, ``T_m``, ``T_n`` are the roofline's compute, memory and network times summed over kernels
(``O/Th``, ``M/BW``, ``I/NET``), ``a_c``, ``a_m``, ``a_n`` the reciprocals of the efficiency each
reaches (≥ 1 on real GPUs), ``a_k`` the fill and launch time of one kernel call and ``K`` the kernel
calls of the phase (the graph's kernels, plus the query and key norms of models that have them: two
launches per layer the graph folds into the projections). A request whose matmuls run in 8 bits
(``w8a8``: FP8 or INT8 tensor cores) has its compute and memory time at their own efficiencies
``a_c8`` and ``a_m8``: the roofline takes FP8 matmuls at twice the 16-bit peak and halves the weight
bytes, and vLLM's online W8A8 gets neither in full (activations are quantised before every
projection and the FP8 GEMMs of a few tokens are less efficient): on an H200 its prefill took
16-55 % longer than the 16-bit efficiencies said and its decode steps about 10 % longer. ``T_e`` is
the roofline time (compute plus memory) of the MoE expert kernels (0 for dense models) and ``a_e``
the extra time they take per roofline second: a fused-MoE kernel gathers tokens per expert and runs
many small GEMMs, and reaches a lower efficiency than the dense projections (on vLLM's Triton kernel
and an H200 Mixtral-shaped decode takes ~15 % longer than the dense roofline says). A model of many
small experts (Qwen3-MoE: 128, 8 per token) might lose more time per roofline second than one of
a few large ones (Mixtral: 8, 2 per token); a fixed overhead per routed expert's GEMM (layers ×
experts a pass reaches × passes) or per MoE layer and pass (vLLM's fused-MoE kernels: routing,
block alignment, two grouped GEMMs, activation, weighted sum) was tried on top of ``a_e`` and left
out. On the real H200 data (470 points, 6 MoE families) the analytical model without either was
7.02 % off on held-out shapes (7.14 and 7.08 % with them), 8.89 % on an unseen TP (9.00, 8.98) and
8.1 % in size extrapolation (10.1, 8.5), and 8.30 % on unseen families (8.87, 8.26).
A forward pass never takes less than ``τ``, the engine's per-step floor (scheduling, sampling,
the host's share under CUDA graphs: on vLLM and an H200 it is what small models' decode steps
cost, about 2 ms whatever their size). ``smax`` is a smooth maximum (``(x^p + y^p)^(1/p)``,
``p = 16``) so that the fit has gradients on both sides.
``c_0`` is the set-up of a request's prefill and ``c_s`` that of each of its ``b`` sequences (the
engine schedules, prepares inputs for and samples each sequence: without it the prefill of one
sequence came out 12 % slow and that of four 17 % fast). Set-ups that overlap the kernels
instead, ``T_pre = smax(W_pre, τ + c_0 + c_s·b)``, were tried on the 470 real H200 points: the
analytical model alone did better on held-out shapes (7.0 → 6.8 % MAPE), families (8.3 → 7.0)
and TP degrees (8.9 → 8.3) but worse in size extrapolation (10.0 → 11.9 % upwards), and llmco2
with it (unseen shape 5.9 % / EBA10 83 %, family 7.0, TP 8.1, size 10.8 up / 7.3 down) traded
shapes and size for families and TP against llmco2 without (5.8 / 86, 7.1, 8.8, 9.6 / 6.7):
left out.

**Energy** (joules, all GPUs of the group)::

    E = l · (P_s·T + P_e·a_e·T_e + e_f·F + e_f8·F_8 + e_m·M + e_n·I + E_0·[prefill] + P_l·T·[l > 1])

``P_s`` is the power each GPU draws whatever it does while the request runs (idle power with the
engine loaded plus the clock's static share), ``P_e`` what it draws beyond that in the time the
expert kernels take over their roofline (the SMs are busy then: without this term Mixtral-shaped
requests come out ~14 % low with their time right), ``e_f`` the energy per operation ``F`` of 16-bit
compute and ``e_f8`` that of an operation ``F_8`` of 8-bit compute (an FP8 operation on an H200
costs less than a bf16 one but not the half its doubled peak suggests), ``e_m`` per byte of
device-memory traffic ``M`` (weights, activations, KV cache), ``e_n`` per byte sent to the other
GPUs ``I``, ``E_0`` a fixed energy per request, and ``P_l`` the power each GPU of a group of
several draws beyond a lone GPU's while the request runs (the links and the collectives' waits,
whatever the bytes sent). Without ``P_l``, fitted on single-GPU rows, TP 2 and TP 4 requests came
out 6-7 % low with their time right. ``P_l`` is not fitted: it stays at its datasheet share (5 %
of TDP, 35 W on an H100 or H200), which a fit on all 1,077 real points matches (34-36 W), while a
fit on part of them trades it against ``P_s`` along model size (the multi-GPU rows are mostly the
larger models: 32 W from the shapes up to 9B, 59 W from the larger ones on the H200). On those
1,077 points the analytical model alone, without ``P_l`` → fitted → at its datasheet share, MAPE
%: held-out TP degree 13.7 → 9.8 → 9.7, GPU type 12.3 → 11.5 → 11.5, shape 6.3 → 6.2 → 6.1,
family 6.5 → 6.4 → 6.2, random split 5.8 → 5.7 → 5.7, size extrapolation 8.3 → 8.7 → 8.4
(the one split it costs). (An energy per kernel call was tried and left
out: fitted on real H200 data it made held-out shapes worse, 7.0 % against 6.8 %, trading one small
model's bias for another's.)

**Fitting.** The time coefficients are fitted to measured latencies (total and prefill), by least
squares on relative error over their logarithms (so they stay positive); the energy coefficients,
given the fitted time, by non-negative least squares on relative error of total and prefill
energy. Both take milliseconds.

**Priors from the datasheet.** Each coefficient is expressed relative to a datasheet figure of its
GPU type: ``P_s = p_s·TDP``, ``P_e = p_e·TDP``, ``e_f = p_f·TDP / peak 16-bit tensor FLOP/s``
(``e_f8`` likewise with ``p_f8``, over the same 16-bit peak: a prior ``p_f8 = p_f`` says an 8-bit
operation costs what a 16-bit one does, which is what the model assumed before it had 8-bit
data), ``e_m =
p_m·TDP / memory bandwidth``, ``e_n = p_n·TDP / link bandwidth``, ``E_0 = p_0·TDP`` (so ``p_f =
0.5`` says that running the tensor cores flat out costs half the board's TDP beyond static power),
while the time coefficients are dimensionless efficiencies and host-side seconds that carry over as
they are. The prior is the normalised fit over all measured GPU types of the training data (each
type weighted equally), or, with no measurements at all, :data:`DATASHEET_PRIOR`. A GPU type
without measurements gets the prior scaled by its own datasheet: physically sensible coefficients,
never the H200's joules. A measured GPU type is fitted on its own rows with a ridge pull towards
the prior in relative terms (``prior_strength``), so a type with a handful of rows stays close to
the prior and one with hundreds follows its data.

How the memory term carries over from one GPU type to another is the weakest of these
assumptions. Fitted on all 1,077 real points, the H100 and the H200 (same TDP, same tensor peak,
3.35 and 4.8 TB/s) spend 133 and 119 pJ per byte: the H200 11 % less, where ``TDP / bandwidth``
says 30 % less and a fixed energy per byte says the same. Fitted on one type alone, the analytical
model is 9.8 % off on the H100 (median +7.6 %) and 12.6 % on the H200 (−11.1 %) as it stands;
with ``e_m`` carried over in joules per byte instead, 9.0 % (−7.4 %) and 9.6 % (+4.5 %): the
biases change sign, so the truth lies between, and two GPU types cannot say where. That variant
made the held-out GPU type better (11.5 → 9.4 % MAPE over all points) and the held-out TP degree
worse (9.7 → 9.9 %, its H100 rows then having no H100 data either), and left held-out shapes,
families and sizes as they were: left out until a third GPU type is measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from featurize.kernels import (
    KERNEL_TYPES,
    NETWORK_KERNELS,
    KernelCounts,
    KernelType,
    kernel_counts,
)
from featurize.point import InferencePoint
from llmco2.errors import ConfigFileError, InvalidRequestError

#: The kernels that are the experts of a mixture-of-experts MLP (the dense MLP otherwise).
_EXPERT_KERNELS = frozenset(
    {KernelType.GATE_PROJ, KernelType.UP_PROJ, KernelType.ACT_MLP, KernelType.DOWN_PROJ}
)

#: Exponent of the smooth maximum of kernel work and the per-step floor.
SMOOTH_MAX_POWER = 16.0

_NETWORK = np.array([k in NETWORK_KERNELS for k in KERNEL_TYPES])
_EXPERT = np.array([k in _EXPERT_KERNELS for k in KERNEL_TYPES])


@dataclass(frozen=True)
class TimeCoefficients:
    """Time model of one GPU type (see the module docstring).

    Attributes:
        compute: ``a_c``, reciprocal compute efficiency (roofline compute time → time).
        memory: ``a_m``, reciprocal memory-bandwidth efficiency.
        network: ``a_n``, reciprocal link efficiency (all-reduce bytes, latency included).
        per_kernel_s: ``a_k``, seconds of fill, tail and launch per kernel call.
        step_floor_s: ``τ``, the shortest forward pass the engine runs.
        request_s: ``c_0``, seconds of per-request set-up in the prefill.
        expert: ``a_e``, extra seconds per roofline second of MoE expert kernels.
        sequence_s: ``c_s``, seconds of set-up per sequence of the batch in the prefill.
        compute_8bit: ``a_c8``, reciprocal compute efficiency of 8-bit compute (``w8a8``).
        memory_8bit: ``a_m8``, reciprocal memory-bandwidth efficiency of 8-bit compute.
    """

    compute: float = 1.0 / 0.7
    memory: float = 1.0 / 0.8
    network: float = 1.0 / 0.65
    per_kernel_s: float = 3e-6
    step_floor_s: float = 2e-3
    request_s: float = 5e-3
    expert: float = 0.2
    sequence_s: float = 2e-3
    compute_8bit: float = 1.0 / 0.7
    memory_8bit: float = 1.0 / 0.8

    def as_array(self) -> np.ndarray:
        """The coefficients in field order."""
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=np.float64)


@dataclass(frozen=True)
class EnergyCoefficients:
    """Energy model of one GPU type in SI units (see the module docstring).

    Attributes:
        static_w: ``P_s``, watts per GPU while the request runs.
        expert_w: ``P_e``, watts more per GPU during the expert kernels' extra time ``a_e·T_e``.
        per_flop_j: ``e_f``, joules per operation.
        per_byte_j: ``e_m``, joules per byte of device-memory traffic.
        per_network_byte_j: ``e_n``, joules per byte sent over the GPU link.
        per_request_j: ``E_0``, joules per GPU per request.
        per_flop_8bit_j: ``e_f8``, joules per operation of 8-bit compute (``w8a8``).
        linked_w: ``P_l``, watts more per GPU of a group of several while the request runs.
    """

    static_w: float
    expert_w: float
    per_flop_j: float
    per_byte_j: float
    per_network_byte_j: float
    per_request_j: float
    per_flop_8bit_j: float = 0.0
    linked_w: float = 0.0

    def as_array(self) -> np.ndarray:
        """The coefficients in field order."""
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=np.float64)


#: The energy coefficients a fit moves: all but the linked power ``P_l``, which stays at its prior
#: (a fit trades it against the static power along model size: the module's docstring).
_FITTED = np.array([f.name != "linked_w" for f in fields(EnergyCoefficients)])


@dataclass(frozen=True)
class NormalisedEnergy:
    """Energy coefficients relative to the datasheet (the transferable prior).

    Attributes:
        static: ``p_s``: static power as a share of TDP.
        expert: ``p_e``: power during the expert kernels' extra time, as a share of TDP.
        flop: ``p_f``: TDP shares drawn by the tensor cores at their peak rate.
        byte: ``p_m``: TDP shares drawn by device memory at its peak bandwidth.
        network_byte: ``p_n``: TDP shares drawn by the link at its peak bandwidth.
        request: ``p_0``: seconds at TDP per request.
        flop_8bit: ``p_f8``: ``p_f`` of 8-bit compute, over the same 16-bit peak.
        linked: ``p_l``: power of a GPU in a group of several, beyond a lone one's, as a share
            of TDP.
    """

    static: float = 0.25
    expert: float = 0.5
    flop: float = 0.5
    byte: float = 0.3
    network_byte: float = 0.1
    request: float = 1e-3
    flop_8bit: float = 0.5
    linked: float = 0.05

    def as_array(self) -> np.ndarray:
        """The coefficients in field order."""
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=np.float64)


#: The prior when no GPU type has measurements: TDP shares of the order published GPU power
#: breakdowns give (idle with an engine loaded ≈ ¼ TDP; tensor cores and HBM at full rate take
#: about half and a third of it; a GPU of a TP group ≈ 5 % of TDP more, what the real H100 and
#: H200 rows give) and the efficiencies the twin starts from.
DATASHEET_PRIOR = (TimeCoefficients(), NormalisedEnergy())


@dataclass(frozen=True)
class DatasheetScale:
    """The datasheet figures that turn normalised energy coefficients into SI ones."""

    tdp_w: float
    tensor_flops: float  # the 16-bit tensor peak
    memory_bandwidth: float
    link_bandwidth: float

    def divisors(self) -> np.ndarray:
        """SI coefficient = normalised × TDP ÷ this, per energy coefficient."""
        return np.array(
            [
                1.0,
                1.0,
                self.tensor_flops,
                self.memory_bandwidth,
                self.link_bandwidth,
                1.0,
                self.tensor_flops,
                1.0,
            ]
        )

    def to_si(self, normalised: NormalisedEnergy) -> EnergyCoefficients:
        """SI coefficients of this GPU from normalised ones."""
        return EnergyCoefficients(*(normalised.as_array() * self.tdp_w / self.divisors()))

    def to_normalised(self, energy: EnergyCoefficients) -> NormalisedEnergy:
        """Normalised coefficients of SI ones of this GPU."""
        return NormalisedEnergy(*(energy.as_array() * self.divisors() / self.tdp_w))


@dataclass(frozen=True)
class PhysicsInputs:
    """What the model needs of each point, per phase: arrays ``(N, 2)`` unless noted.

    Attributes:
        compute_s: Roofline compute time ``T_c`` per GPU (0 where the compute is 8-bit).
        memory_s: Roofline memory time ``T_m`` (0 where the compute is 8-bit).
        network_s: Roofline network time ``T_n``.
        expert_s: Roofline time ``T_e`` (compute + memory) of MoE expert kernels (0 if dense).
        kernel_calls: Kernel calls ``K`` (layers × kernels × forward passes, Q/K norms included).
        sequences: ``(N,)`` sequences ``b`` in the batch.
        passes: Forward passes ``S`` (1 and ``G - 1``).
        flops: Operations ``F`` per GPU.
        memory_bytes: Device-memory bytes ``M`` per GPU.
        network_bytes: Bytes sent ``I`` per GPU.
        gpus: ``(N,)`` GPUs in the group.
        gpu_type: ``(N,)`` GPU type ids.
        scale: ``(N, 4)`` TDP, 16-bit tensor FLOP/s, memory and link bandwidth.
        compute8_s: ``T_c`` of the rows whose matmuls run in 8 bits (``w8a8``), 0 elsewhere.
        memory8_s: ``T_m`` of those rows, 0 elsewhere.
        flops8: ``F_8``, operations of those rows, 0 elsewhere (``flops`` is 0 there).
    """

    compute_s: np.ndarray
    memory_s: np.ndarray
    network_s: np.ndarray
    expert_s: np.ndarray
    kernel_calls: np.ndarray
    sequences: np.ndarray
    passes: np.ndarray
    flops: np.ndarray
    memory_bytes: np.ndarray
    network_bytes: np.ndarray
    gpus: np.ndarray
    gpu_type: np.ndarray
    scale: np.ndarray
    compute8_s: np.ndarray
    memory8_s: np.ndarray
    flops8: np.ndarray

    def __len__(self) -> int:
        return len(self.gpus)

    @classmethod
    def of(cls, counts: KernelCounts, gpu_type: Sequence[str]) -> PhysicsInputs:
        """From kernel counts (and the GPU type id of every point)."""
        roof = counts.roofline()
        present = counts.present[:, None, :]
        p = counts.inputs
        passes = np.stack([np.ones_like(p.generated), p.generated - 1.0], axis=1)
        calls = (counts.calls * counts.present)[:, None, :] * passes[:, :, None]
        # Q/K norms (per head or over the whole projection) are two more launches per layer, an
        # RMSNorm over the queries and one over the keys, that the graph folds into the
        # projections: at the step floor of a small model each launch costs time.
        qk_launches = 2.0 * p.layers * (p.qk_norm > 0)
        compute = np.nan_to_num(roof.compute_time) * present
        memory = roof.memory_time * present
        experts = _EXPERT[None, None, :] & (p.experts > 1)[:, None, None]
        # 8-bit compute: weights and activations both of at most one byte (w8a8).
        eight = (np.maximum(p.weight_bytes, p.act_bytes) <= 1.0)[:, None]
        compute_s, memory_s = compute.sum(axis=2), memory.sum(axis=2)
        flops = counts.quantity("flops").sum(axis=2)
        return cls(
            compute_s=np.where(eight, 0.0, compute_s),
            memory_s=np.where(eight, 0.0, memory_s),
            network_s=(roof.network_time * present).sum(axis=2),
            expert_s=((compute + memory) * experts).sum(axis=2),
            kernel_calls=calls.sum(axis=2) + qk_launches[:, None] * passes,
            sequences=np.asarray(p.batch, dtype=np.float64),
            passes=passes,
            flops=np.where(eight, 0.0, flops),
            memory_bytes=(counts.memory_bytes * present).sum(axis=2),
            network_bytes=counts.quantity("network_bytes").sum(axis=2),
            gpus=np.asarray(p.tp, dtype=np.float64),
            gpu_type=np.asarray(gpu_type),
            scale=np.stack(
                [p.tdp, p.tensor_flops_16, p.memory_bandwidth, p.link_bandwidth], axis=1
            ),
            compute8_s=np.where(eight, compute_s, 0.0),
            memory8_s=np.where(eight, memory_s, 0.0),
            flops8=np.where(eight, flops, 0.0),
        )

    @classmethod
    def of_points(cls, points: Sequence[InferencePoint]) -> PhysicsInputs:
        """From inference points (counts computed here)."""
        return cls.of(kernel_counts(points), [p.setup.gpu.id for p in points])

    def subset(self, index: np.ndarray) -> PhysicsInputs:
        """The rows ``index``."""
        return PhysicsInputs(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def scale_of(self, gpu_type: str) -> DatasheetScale:
        """The datasheet figures of one GPU type present in these inputs."""
        row = self.scale[np.flatnonzero(self.gpu_type == gpu_type)[0]]
        return DatasheetScale(*(float(v) for v in row))


def _smooth_max(x: np.ndarray, floor: float) -> np.ndarray:
    scale = np.maximum(x, floor)  # scaled so the powers stay in range
    ratio_x = np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)
    ratio_f = np.divide(floor, scale, out=np.zeros_like(x), where=scale > 0)
    return np.asarray(
        scale * (ratio_x**SMOOTH_MAX_POWER + ratio_f**SMOOTH_MAX_POWER) ** (1 / SMOOTH_MAX_POWER)
    )


def kernel_seconds(inputs: PhysicsInputs, time: TimeCoefficients) -> np.ndarray:
    """Modelled seconds the phase's kernels run, floor and set-up left out: ``(N, 2)``."""
    return np.asarray(
        time.compute * inputs.compute_s
        + time.memory * inputs.memory_s
        + time.compute_8bit * inputs.compute8_s
        + time.memory_8bit * inputs.memory8_s
        + time.network * inputs.network_s
        + time.per_kernel_s * inputs.kernel_calls
        + expert_seconds(inputs, time)
    )


def expert_seconds(inputs: PhysicsInputs, time: TimeCoefficients) -> np.ndarray:
    """Seconds the expert kernels take beyond their roofline (``a_e·T_e``), ``(N, 2)``."""
    return np.asarray(time.expert * inputs.expert_s)


def phase_seconds(inputs: PhysicsInputs, time: TimeCoefficients) -> np.ndarray:
    """Modelled seconds of each phase, shape ``(N, 2)``; 0 for a decode of no steps."""
    work = kernel_seconds(inputs, time)
    steps = inputs.passes
    per_step = np.divide(work, steps, out=np.zeros_like(work), where=steps > 0)
    seconds = _smooth_max(per_step, time.step_floor_s) * steps
    seconds[:, 0] += time.request_s + time.sequence_s * inputs.sequences
    return np.asarray(np.where(steps > 0, seconds, 0.0))


def _energy_design(inputs: PhysicsInputs, time: TimeCoefficients) -> np.ndarray:
    """Columns of the energy model per phase, all GPUs: ``(N, 2, 8)``."""
    seconds = phase_seconds(inputs, time)
    request = np.zeros_like(seconds)
    request[:, 0] = 1.0
    columns = np.stack(
        [
            seconds,
            time.expert * inputs.expert_s,
            inputs.flops,
            inputs.memory_bytes,
            inputs.network_bytes,
            request,
            inputs.flops8,
            seconds * (inputs.gpus > 1)[:, None],
        ],
        axis=-1,
    )
    return np.asarray(columns * inputs.gpus[:, None, None])


@dataclass(frozen=True)
class GpuPhysics:
    """Fitted (or prior) coefficients of one GPU type."""

    time: TimeCoefficients
    energy: EnergyCoefficients
    measured_points: int = 0


@dataclass
class PhysicsModel:
    """The analytical model: coefficients per measured GPU type plus a datasheet prior.

    Attributes:
        gpus: Coefficients of every GPU type the model was fitted on.
        prior_time: The time prior (used for GPU types without measurements).
        prior_energy: The normalised energy prior.
        prior_strength: Weight of the pull towards the prior in each type's fit.
    """

    gpus: dict[str, GpuPhysics] = field(default_factory=dict)
    prior_time: TimeCoefficients = DATASHEET_PRIOR[0]
    prior_energy: NormalisedEnergy = DATASHEET_PRIOR[1]
    prior_strength: float = 1e-3

    def coefficients(self, gpu_type: str, scale: DatasheetScale) -> GpuPhysics:
        """The coefficients of ``gpu_type``: fitted, or the prior scaled by its datasheet."""
        fitted = self.gpus.get(gpu_type)
        if fitted is not None:
            return fitted
        return GpuPhysics(self.prior_time, scale.to_si(self.prior_energy))

    def measured(self, gpu_type: str) -> bool:
        """Whether ``gpu_type`` has fitted coefficients."""
        return gpu_type in self.gpus

    def predict(self, inputs: PhysicsInputs) -> tuple[np.ndarray, np.ndarray]:
        """Energy (J, all GPUs) and time (s) of each phase, two arrays ``(N, 2)``."""
        energy = np.zeros((len(inputs), 2))
        seconds = np.zeros((len(inputs), 2))
        for gpu_type in sorted(set(inputs.gpu_type.tolist())):
            rows = np.flatnonzero(inputs.gpu_type == gpu_type)
            part = inputs.subset(rows)
            coefficients = self.coefficients(gpu_type, part.scale_of(gpu_type))
            seconds[rows] = phase_seconds(part, coefficients.time)
            energy[rows] = _energy_design(part, coefficients.time) @ coefficients.energy.as_array()
        return energy, seconds

    def predict_points(self, points: Sequence[InferencePoint]) -> np.ndarray:
        """Energy (J) of inference points: columns prefill, decode, total."""
        energy, _ = self.predict(PhysicsInputs.of_points(points))
        return np.concatenate([energy, energy.sum(axis=1, keepdims=True)], axis=1)

    @classmethod
    def fit(
        cls,
        inputs: PhysicsInputs,
        energy_j: np.ndarray,
        latency_s: np.ndarray | None = None,
        prior_strength: float = 1e-3,
    ) -> PhysicsModel:
        """Fit every GPU type of ``inputs`` on its rows.

        Args:
            inputs: Per-phase quantities of the training rows.
            energy_j: Measured energy ``(N, 2)``: prefill and decode (J, all GPUs).
            latency_s: Measured latency ``(N, 2)``: prefill and decode (s); NaN where unknown.
                Without it the time prior is used.
            prior_strength: Weight of the pull towards the pooled prior.

        Raises:
            InvalidRequestError: Non-positive total or prefill energies, or too few rows.
        """
        energy_j = np.asarray(energy_j, dtype=np.float64)
        if len(inputs) < 3 or energy_j.shape != (len(inputs), 2):
            raise InvalidRequestError("the analytical model needs ≥ 3 rows with prefill and decode")
        if np.any(energy_j[:, 0] <= 0) or np.any(~np.isfinite(energy_j)):
            raise InvalidRequestError("prefill energies must be positive and decode ones finite")
        latency = (
            np.full((len(inputs), 2), np.nan)
            if latency_s is None
            else np.asarray(latency_s, dtype=np.float64)
        )
        types = sorted(set(inputs.gpu_type.tolist()))
        # The pooled prior: every measured type fitted against the datasheet prior, then their
        # coefficients averaged (time in logarithms, normalised energy plainly: a fitted energy
        # coefficient may be 0), each type weighted equally.
        first = {t: _fit_type(inputs, energy_j, latency, t, DATASHEET_PRIOR, 1e-6) for t in types}
        prior_time = TimeCoefficients(
            *np.exp(np.mean([np.log(g.time.as_array()) for g in first.values()], axis=0))
        )
        normalised = [inputs.scale_of(t).to_normalised(first[t].energy) for t in types]
        # A zero average would be a prior no fit can move off (the pull is relative to it): the
        # floor is a thousandth of the datasheet prior, each coefficient on its own scale.
        floor = 1e-3 * DATASHEET_PRIOR[1].as_array()
        prior_energy = NormalisedEnergy(
            *np.maximum(np.mean([n.as_array() for n in normalised], axis=0), floor)
        )
        model = cls({}, prior_time, prior_energy, prior_strength)
        for t in types:
            model.gpus[t] = _fit_type(
                inputs, energy_j, latency, t, (prior_time, prior_energy), prior_strength
            )
        return model

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready coefficients."""
        return {
            "format": "llmco2-physics",
            "prior_time": asdict(self.prior_time),
            "prior_energy": asdict(self.prior_energy),
            "prior_strength": self.prior_strength,
            "gpus": {
                gpu: {
                    "time": asdict(g.time),
                    "energy": asdict(g.energy),
                    "measured_points": g.measured_points,
                }
                for gpu, g in self.gpus.items()
            },
        }

    @classmethod
    def from_dict(cls, blob: Mapping[str, Any]) -> PhysicsModel:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigFileError: Not a physics model, or coefficients missing or unknown.
        """
        try:
            if blob.get("format") != "llmco2-physics":
                raise ConfigFileError("not an llmco2 analytical model")
            return cls(
                {
                    gpu: GpuPhysics(
                        TimeCoefficients(**_with_later(g["time"], _ABSENT_TIME, _SAME_TIME)),
                        EnergyCoefficients(**_with_later(g["energy"], _ABSENT_SI, _SAME_SI)),
                        int(g["measured_points"]),
                    )
                    for gpu, g in blob["gpus"].items()
                },
                TimeCoefficients(**_with_later(blob["prior_time"], _ABSENT_TIME, _SAME_TIME)),
                NormalisedEnergy(**_with_later(blob["prior_energy"], _ABSENT_ENERGY, _SAME_ENERGY)),
                float(blob["prior_strength"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigFileError(f"malformed analytical model coefficients: {exc}") from exc


#: Terms that coefficient files written before they existed lack: those models had no such term.
_ABSENT_TIME = {"expert": 0.0, "sequence_s": 0.0}
_ABSENT_ENERGY = {"expert": 0.0, "linked": 0.0}
_ABSENT_SI = {"expert_w": 0.0, "linked_w": 0.0}
#: Terms that coefficient files written before them lack and that copy another term: those
#: models ran 8-bit compute at the 16-bit efficiencies and energy per operation.
_SAME_TIME = {"compute_8bit": "compute", "memory_8bit": "memory"}
_SAME_SI = {"per_flop_8bit_j": "per_flop_j"}
_SAME_ENERGY = {"flop_8bit": "flop"}
#: Terms of files written when the model charged a fixed overhead per routed expert's GEMM, a
#: term since left out (see the module docstring): those models load without it.
_DROPPED = frozenset({"expert_gemm_s", "expert_gemm_w", "expert_gemm"})


def _with_later(
    stored: Mapping[str, Any], absent: Mapping[str, float], same: Mapping[str, str]
) -> dict[str, Any]:
    """Stored coefficients, later terms filled in and terms since dropped left out."""
    values = {**absent, **{name: v for name, v in stored.items() if name not in _DROPPED}}
    for later, earlier in same.items():
        if later not in values:
            values[later] = values[earlier]
    return values


def _fit_time(
    inputs: PhysicsInputs, latency: np.ndarray, prior: TimeCoefficients, strength: float
) -> TimeCoefficients:
    from scipy.optimize import least_squares

    total = latency.sum(axis=1)
    rows_total = np.isfinite(total) & (total > 0)
    rows_prefill = np.isfinite(latency[:, 0]) & (latency[:, 0] > 0)
    if rows_total.sum() < 3:
        return prior
    log_prior = np.log(prior.as_array())

    def residuals(log_theta: np.ndarray) -> np.ndarray:
        seconds = phase_seconds(inputs, TimeCoefficients(*np.exp(log_theta)))
        return np.concatenate(
            [
                seconds[rows_total].sum(axis=1) / total[rows_total] - 1.0,
                seconds[rows_prefill, 0] / latency[rows_prefill, 0] - 1.0,
                np.sqrt(strength) * (log_theta - log_prior),
            ]
        )

    solution = least_squares(residuals, log_prior, method="trf", x_scale=1.0, max_nfev=400)
    return TimeCoefficients(*np.exp(solution.x))


def _fit_energy(
    inputs: PhysicsInputs,
    energy_j: np.ndarray,
    time: TimeCoefficients,
    prior: EnergyCoefficients,
    strength: float,
) -> EnergyCoefficients:
    from scipy.optimize import lsq_linear

    design = _energy_design(inputs, time)
    total = energy_j.sum(axis=1)
    prior_values = prior.as_array()
    fixed = design[..., ~_FITTED] @ prior_values[~_FITTED]
    rows = [
        design.sum(axis=1)[:, _FITTED] / total[:, None],
        design[:, 0, _FITTED] / energy_j[:, [0]],
    ]
    targets = [1.0 - fixed.sum(axis=1) / total, 1.0 - fixed[:, 0] / energy_j[:, 0]]
    # The pull towards the prior is relative, (β_j − prior_j) / prior_j: priors are positive.
    weight = np.sqrt(strength * len(inputs))
    matrix = np.concatenate([*rows, weight * np.diag(1.0 / prior_values[_FITTED])])
    target = np.concatenate([*targets, np.full(int(_FITTED.sum()), weight)])
    norms = np.sqrt((matrix**2).sum(axis=0))
    norms = np.where(norms > 0, norms, 1.0)
    solution = lsq_linear(matrix / norms, target, bounds=(0.0, np.inf), method="bvls")
    values = prior_values.copy()
    values[_FITTED] = solution.x / norms
    return EnergyCoefficients(*values)


def _fit_type(
    inputs: PhysicsInputs,
    energy_j: np.ndarray,
    latency: np.ndarray,
    gpu_type: str,
    prior: tuple[TimeCoefficients, NormalisedEnergy],
    strength: float,
) -> GpuPhysics:
    rows = np.flatnonzero(inputs.gpu_type == gpu_type)
    part = inputs.subset(rows)
    time = _fit_time(part, latency[rows], prior[0], strength)
    energy = _fit_energy(
        part, energy_j[rows], time, part.scale_of(gpu_type).to_si(prior[1]), strength
    )
    return GpuPhysics(time, energy, len(rows))


def log_ratio(measured: np.ndarray, modelled: np.ndarray) -> np.ndarray:
    """``log(measured / modelled)``, 0 where either is not positive (a phase without work)."""
    ok = (measured > 0) & (modelled > 0)
    return np.asarray(
        np.where(ok, np.log(np.where(ok, measured, 1.0) / np.where(ok, modelled, 1.0)), 0.0)
    )
