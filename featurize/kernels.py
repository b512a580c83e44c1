"""Per-kernel operation counts, memory traffic and network traffic, for prefill and decode.

This module implements the kernel model of the LLMCO2 paper (Section 4.1, Appendix A, Figure 12,
Tables 6 and 7), vectorised with NumPy over any number of inference points, and corrected where
the paper's equations are physically wrong. Every quantity is **per GPU** of the tensor-parallel
group (the GPUs run the same kernels in lock-step) and **for the whole request** in that phase:
a layer kernel's numbers are summed over all layers, so the sum over kernels is the request total.

Notation (the paper's): ``B`` batch size, ``L`` prompt length, ``G`` generated tokens (``N_gT``),
``l`` TP degree (``N_GPU``), ``h`` hidden size, ``i`` intermediate size, ``n_h``/``n_kv`` query/KV
heads, ``d_h`` head width, ``V`` vocabulary, ``D_W``/``D_A``/``D_KV`` bytes per weight, activation
and KV element. The prefill processes ``T_pre = B·L`` tokens in one forward pass and yields the
first token; the decode runs ``G - 1`` passes of ``B`` tokens, so ``T_dec = B·(G - 1)``.

Deviations from the paper, each also noted where it is computed:

* Linear kernels: weights are read once per forward pass — once in the prefill (Eq. 16) and
  ``G - 1`` times in the decode (Eq. 10). Under TP a column-parallel kernel (Q, K, V, gate, up)
  reads the whole input and writes ``1/l`` of the output, a row-parallel one (out, down) reads
  ``1/l`` of the input and writes a whole partial sum; the paper divides everything by ``l``.
* KV-cache stores belong to the K and V projections (Eq. 13/19 give them to every *other* linear
  kernel and none to K/V, which is backwards).
* Prefill attention grows with ``L²``: ``QKᵀ`` and ``SV`` take ``2·d_h`` operations per
  (query, key) pair, softmax about 5 per score. With flash attention only the causal half is
  computed (``L(L+1)/2`` pairs, or fewer inside a sliding window); without it the whole ``L×L``
  score matrix is materialised. Eq. 32/33 have no quadratic term at all.
* Decode attention reads the KV cache of the context so far at every step: step ``t`` attends to
  ``L + t`` keys, summed exactly over ``t = 1..G-1`` (Eq. 21-24 use ``(2L + G)·G/2``, which also
  counts the prefill token). Eq. 31/42 add the KV load twice and drop the activation store; here
  each byte is counted once.
* Norms, residual adds and activations are replicated on every GPU under TP (Eq. 43-58 divide them
  by ``l``); the residual add reads two operands (Eq. 49 counts one); the MLP activation works on
  the intermediate width, not the hidden width (Eq. 45/47).
* All-reduce (ring): each GPU sends ``2·(l-1)/l·S`` bytes of an ``S``-byte tensor (reduce-scatter
  plus all-gather; Eq. 6/7 count the reduce-scatter half), adds ``(l-1)/l`` of its elements
  (Eq. 2/3 give ``1/l``, right only for ``l = 2``), and reads what it sends and writes what it
  receives in device memory.
* Added beyond the paper: token embedding (vocab-parallel, with its own all-reduce under TP),
  final norm, LM head (prefill computes logits for the last position only) and the gather of the
  logits; MoE router and the top-k experts (weights read only for experts some token is routed
  to); GQA/MQA (KV heads replicated when ``l > n_kv``); Gemma 2's sliding-window layers and
  post-norms (and Gemma 3's and gpt-oss's listed windowed layers); biases, the MoE router's
  (gpt-oss) included; the Q and K RMSNorms of Qwen3, Qwen3-MoE and Gemma 3 (per head) and OLMo 2
  (over the whole projection, after an all-gather under TP), counted with the attention block's
  norm kernel; DeepSeek's multi-head latent attention (a compressed KV latent cached whole on
  every GPU, the heads' keys and values projected up from it, absorbed into the query and the
  output in decode), shared experts and dense layers among the expert ones (DeepSeek's first,
  Llama 4's interleaved); Falcon's parallel attention and MLP (one all-reduce per layer, one
  LayerNorm or two). gpt-oss's attention sinks (one logit per
  head joining each softmax) are left out:
  one score per query and head against the ``L`` of the context, and ``n_h`` weights a layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from featurize.point import InferencePoint
from featurize.precision import Precision
from llmco2.errors import InvalidRequestError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Query rows per FlashAttention tile: K/V are streamed from memory once per tile (the paper's
#: ``s_block``). 128 is the tile height of FlashAttention-2/3 kernels for head dims ≤ 128.
FLASH_QUERY_TILE = 128
#: Operations per softmax score: max, subtract, exp, sum, divide (the paper's constant in Eq. 22).
SOFTMAX_OPS = 5.0
#: Operations per element of an RMSNorm/LayerNorm (the paper's constant in Eq. 43).
NORM_OPS = 7.0
#: Operations per element of the MLP activation; a gated MLP multiplies by the up branch (+1).
ACTIVATION_OPS = {"silu": 4.0, "gelu_tanh": 8.0, "gelu": 8.0}


class Phase(StrEnum):
    """The two phases of an autoregressive inference."""

    PREFILL = "prefill"
    DECODE = "decode"


class KernelType(StrEnum):
    """Kernels of a decoder-only transformer (Figure 12, plus what the paper leaves out)."""

    EMBEDDING = "embedding"
    EMBED_ALLREDUCE = "embed_allreduce"
    NORM_ATTN = "norm_attn"
    Q_PROJ = "q_proj"
    K_PROJ = "k_proj"
    V_PROJ = "v_proj"
    FUSED_ATTN = "fuse_attn"
    MATMUL_QK = "matmul_qk"
    SOFTMAX = "softmax"
    MATMUL_SV = "matmul_sv"
    OUT_PROJ = "out_proj"
    ALLREDUCE_ATTN = "allreduce_attn"
    ADD_ATTN = "add_attn"
    NORM_MLP = "norm_mlp"
    ROUTER = "router"
    GATE_PROJ = "gate_proj"
    UP_PROJ = "up_proj"
    ACT_MLP = "act_mlp"
    DOWN_PROJ = "down_proj"
    ALLREDUCE_MLP = "allreduce_mlp"
    ADD_MLP = "add_mlp"
    FINAL_NORM = "final_norm"
    LM_HEAD = "lm_head"
    LOGITS_GATHER = "logits_gather"


KERNEL_TYPES: tuple[KernelType, ...] = tuple(KernelType)
KERNEL_INDEX: dict[KernelType, int] = {k: n for n, k in enumerate(KERNEL_TYPES)}
PHASES: tuple[Phase, ...] = (Phase.PREFILL, Phase.DECODE)

#: Kernels that run once per model rather than once per layer.
MODEL_LEVEL_KERNELS = frozenset(
    {
        KernelType.EMBEDDING,
        KernelType.EMBED_ALLREDUCE,
        KernelType.FINAL_NORM,
        KernelType.LM_HEAD,
        KernelType.LOGITS_GATHER,
    }
)
#: Kernels that run on tensor cores (matrix multiplications).
TENSOR_CORE_KERNELS = frozenset(
    {
        KernelType.Q_PROJ,
        KernelType.K_PROJ,
        KernelType.V_PROJ,
        KernelType.FUSED_ATTN,
        KernelType.MATMUL_QK,
        KernelType.MATMUL_SV,
        KernelType.OUT_PROJ,
        KernelType.ROUTER,
        KernelType.GATE_PROJ,
        KernelType.UP_PROJ,
        KernelType.DOWN_PROJ,
        KernelType.LM_HEAD,
    }
)
#: Collective-communication kernels (bound by the GPU-to-GPU link).
NETWORK_KERNELS = frozenset(
    {
        KernelType.EMBED_ALLREDUCE,
        KernelType.ALLREDUCE_ATTN,
        KernelType.ALLREDUCE_MLP,
        KernelType.LOGITS_GATHER,
    }
)

#: Names of the per-kernel quantities, in the order of the last axis of :attr:`KernelCounts.values`.
QUANTITIES: tuple[str, ...] = (
    "flops",
    "weight_bytes",
    "act_read_bytes",
    "act_write_bytes",
    "kv_read_bytes",
    "kv_write_bytes",
    "network_bytes",
)
Q = {name: n for n, name in enumerate(QUANTITIES)}


@dataclass(frozen=True)
class PointArrays:
    """The inputs of the kernel model as float arrays of shape ``(N,)``, one entry per point."""

    hidden: FloatArray
    intermediate: FloatArray
    layers: FloatArray
    heads: FloatArray
    kv_heads: FloatArray
    head_dim: FloatArray
    vocab: FloatArray
    gated: BoolArray
    experts: FloatArray
    top_k: FloatArray
    window: FloatArray  # inf where there is no sliding window
    window_fraction: FloatArray
    norms_per_sublayer: FloatArray
    qkv_bias: BoolArray
    dense_bias: BoolArray
    qk_norm: FloatArray  # 0 none, 1 per head, 2 whole projection (see _QK_NORM_CODE)
    router_bias: BoolArray
    activation_ops: FloatArray
    weight_bytes: FloatArray
    act_bytes: FloatArray
    kv_bytes: FloatArray
    batch: FloatArray
    prompt: FloatArray
    generated: FloatArray
    tp: FloatArray
    flash: BoolArray
    tensor_flops: FloatArray
    tensor_flops_16: FloatArray  # the 16-bit tensor peak, whatever the point's precision
    vector_flops: FloatArray
    memory_bandwidth: FloatArray
    link_bandwidth: FloatArray
    memory_capacity: FloatArray
    tdp: FloatArray
    die_area: FloatArray
    process_nm: FloatArray
    q_lora: FloatArray  # MLA's query latent width, 0 without one
    kv_lora: FloatArray  # MLA's KV latent width, 0 without MLA
    rope_dim: FloatArray  # MLA's shared RoPE key width (part of head_dim), 0 without MLA
    v_dim: FloatArray  # width of one head's value: head_dim but under MLA
    shared_experts: FloatArray
    dense_layers: FloatArray
    dense_intermediate: FloatArray
    parallel_block: FloatArray  # 0 none, 1 one shared norm, 2 own norms (see _PARALLEL_CODE)
    expert_weight_bytes: FloatArray  # bytes per routed-expert weight (MXFP4: 4.25 bits)

    @property
    def size(self) -> int:
        """Number of points."""
        return int(self.batch.shape[0])

    @classmethod
    def from_points(cls, points: Sequence[InferencePoint]) -> PointArrays:
        """Gather the arrays from point objects (each engine configuration is read once)."""
        configs: dict[tuple[int, int, int, Precision, bool], int] = {}
        representatives: list[InferencePoint] = []
        index = np.empty(len(points), dtype=np.int64)
        requests = np.empty((len(points), 3), dtype=np.float64)
        for n, point in enumerate(points):
            key = (
                id(point.architecture),
                id(point.setup.gpu),
                point.setup.count,
                point.precision,
                point.flash_attention,
            )
            row = configs.get(key)
            if row is None:
                row = configs[key] = len(representatives)
                representatives.append(point)
            index[n] = row
            r = point.request
            requests[n] = (r.batch_size, r.prompt_tokens, r.generated_tokens)
        return cls.from_configs(
            representatives, index, requests[:, 0], requests[:, 1], requests[:, 2]
        )

    @classmethod
    def from_configs(
        cls,
        configs: Sequence[InferencePoint],
        config_index: npt.NDArray[np.int64],
        batch: npt.ArrayLike,
        prompt: npt.ArrayLike,
        generated: npt.ArrayLike,
    ) -> PointArrays:
        """Arrays of many requests on a few engine configurations, without a point per request.

        Args:
            configs: One point per engine configuration (architecture, precision, attention,
                GPU setup); their requests are ignored.
            config_index: For each request, the index of its configuration in ``configs``.
            batch: Batch size of each request.
            prompt: Prompt tokens of each request.
            generated: Generated tokens of each request.

        Raises:
            InvalidRequestError: When a size is not a positive integer.
        """
        sizes = np.column_stack([batch, prompt, generated]).astype(np.float64).reshape(-1, 3)
        if sizes.size and (np.any(sizes < 1) or np.any(sizes != np.floor(sizes))):
            raise InvalidRequestError(
                "batch, prompt and generated tokens must be positive integers"
            )
        table = np.asarray([_config_row(c) for c in configs], dtype=np.float64)
        rows = table.reshape(-1, _CONFIG_COLUMNS)[np.asarray(config_index, dtype=np.int64)]
        return cls(
            hidden=rows[:, 0],
            intermediate=rows[:, 1],
            layers=rows[:, 2],
            heads=rows[:, 3],
            kv_heads=rows[:, 4],
            head_dim=rows[:, 5],
            vocab=rows[:, 6],
            gated=rows[:, 7] > 0,
            experts=rows[:, 8],
            top_k=rows[:, 9],
            window=rows[:, 10],
            window_fraction=rows[:, 11],
            norms_per_sublayer=rows[:, 12],
            qkv_bias=rows[:, 13] > 0,
            dense_bias=rows[:, 14] > 0,
            activation_ops=rows[:, 15],
            weight_bytes=rows[:, 16],
            act_bytes=rows[:, 17],
            kv_bytes=rows[:, 18],
            tp=rows[:, 19],
            flash=rows[:, 20] > 0,
            tensor_flops=rows[:, 21],
            vector_flops=rows[:, 22],
            memory_bandwidth=rows[:, 23],
            link_bandwidth=rows[:, 24],
            memory_capacity=rows[:, 25],
            tdp=rows[:, 26],
            die_area=rows[:, 27],
            process_nm=rows[:, 28],
            qk_norm=rows[:, 29],
            router_bias=rows[:, 30] > 0,
            tensor_flops_16=rows[:, 31],
            q_lora=rows[:, 32],
            kv_lora=rows[:, 33],
            rope_dim=rows[:, 34],
            v_dim=rows[:, 35],
            shared_experts=rows[:, 36],
            dense_layers=rows[:, 37],
            dense_intermediate=rows[:, 38],
            parallel_block=rows[:, 39],
            expert_weight_bytes=rows[:, 40],
            batch=sizes[:, 0],
            prompt=sizes[:, 1],
            generated=sizes[:, 2],
        )


_CONFIG_COLUMNS = 41
_SIXTEEN_BITS = Precision()
_QK_NORM_CODE = {"none": 0.0, "head": 1.0, "full": 2.0}
_PARALLEL_CODE = {"none": 0.0, "shared_norm": 1.0, "own_norms": 2.0}


def _config_row(point: InferencePoint) -> list[float]:
    """The per-configuration columns of :class:`PointArrays`, in ``from_configs`` order."""
    a, p, gpu = point.architecture, point.precision, point.setup.gpu
    return [
        a.hidden_size,
        a.intermediate_size,
        a.num_layers,
        a.num_heads,
        a.num_kv_heads,
        a.head_dim,
        a.vocab_size,
        a.mlp == "gated",
        a.num_experts,
        a.experts_per_token,
        np.inf if a.sliding_window is None else a.sliding_window,
        a.sliding_window_layer_fraction,
        a.norms_per_sublayer,
        a.qkv_bias,
        a.dense_bias,
        ACTIVATION_OPS[a.activation],
        p.weight_bytes,
        p.activation_bytes,
        p.kv_bytes,
        point.setup.count,
        point.flash_attention,
        gpu.tensor_flops(p),
        gpu.vector_flops,
        gpu.memory_bandwidth,
        gpu.link_bandwidth,
        gpu.memory_bytes,
        gpu.entry.tdp_w,
        gpu.entry.die_area_mm2,
        gpu.entry.process_nm,
        _QK_NORM_CODE[a.qk_norm],
        a.router_bias,
        gpu.tensor_flops(_SIXTEEN_BITS),
        a.q_lora_rank,
        a.kv_lora_rank,
        a.rope_head_dim,
        a.value_head_dim,
        a.shared_experts,
        a.dense_layers,
        a.dense_intermediate_size,
        _PARALLEL_CODE[a.parallel_block],
        p.expert_weight_bytes if a.is_moe else p.weight_bytes,
    ]


@dataclass(frozen=True)
class KernelCounts:
    """Per-kernel quantities of ``N`` points.

    Attributes:
        values: Array ``(N, 2, K, len(QUANTITIES))``: point, phase (prefill, decode), kernel type
            (:data:`KERNEL_TYPES`), quantity (:data:`QUANTITIES`), per GPU, whole request.
        present: ``(N, K)`` whether the kernel exists for the point (e.g. no gate for BLOOM).
        calls: ``(N, K)`` how many times the kernel runs per forward pass (layers or 1).
        shapes: ``(N, K, 2)`` input and output width of the kernel on one GPU (``S``).
        inputs: The arrays the counts were computed from.
    """

    values: FloatArray
    present: BoolArray
    calls: FloatArray
    shapes: FloatArray
    inputs: PointArrays

    def quantity(self, name: str) -> FloatArray:
        """One quantity for every point, phase and kernel, shape ``(N, 2, K)``."""
        return self.values[..., Q[name]]

    @property
    def memory_bytes(self) -> FloatArray:
        """Device-memory traffic ``M`` (weights + activations + KV cache), shape ``(N, 2, K)``."""
        traffic = self.values[..., Q["weight_bytes"] : Q["kv_write_bytes"] + 1]
        return np.asarray(traffic.sum(axis=-1), dtype=np.float64)

    def peak_flops(self) -> FloatArray:
        """The compute ceiling of each kernel, shape ``(N, K)``: tensor cores or vector units."""
        tensor = np.array([k in TENSOR_CORE_KERNELS for k in KERNEL_TYPES])
        return np.where(
            tensor[None, :], self.inputs.tensor_flops[:, None], self.inputs.vector_flops[:, None]
        )

    def roofline(self) -> Roofline:
        """Roofline performance and time of every kernel (Eq. 8, generalised)."""
        return Roofline.of(self)

    def totals(self) -> FloatArray:
        """Per-phase totals of every quantity, shape ``(N, 2, len(QUANTITIES))``."""
        # Absent kernels are zero already (kernel_counts masks them).
        return np.asarray(self.values.sum(axis=2))


@dataclass(frozen=True)
class Roofline:
    """Roofline analysis of every kernel (all arrays ``(N, 2, K)``).

    The paper's Eq. 8 takes the memory roofline for ordinary kernels and the network roofline for
    all-reduce kernels. Here every kernel is bounded by all three ceilings at once:
    ``time = max(O / Th, M / BW, I / NET)`` and ``P = O / time``, which reduces to Eq. 8 when a
    kernel has no network traffic (``P = min(Th, BW · O/M)``) and additionally charges a
    collective for the device-memory traffic it causes. Kernels without operations (embedding
    lookups, gathers) get ``P = 0`` and a time set by their traffic alone.

    Attributes:
        memory_intensity: ``O / M`` (MAI), operations per byte of device memory.
        network_intensity: ``O / I`` (NAI), operations per network byte (inf without traffic).
        performance: Attainable operations per second ``P``.
        time: Roofline time in seconds.
        compute_time: ``O / Th``.
        memory_time: ``M / BW``.
        network_time: ``I / NET``.
    """

    memory_intensity: FloatArray
    network_intensity: FloatArray
    performance: FloatArray
    time: FloatArray
    compute_time: FloatArray
    memory_time: FloatArray
    network_time: FloatArray

    @classmethod
    def of(cls, counts: KernelCounts) -> Roofline:
        """Compute the roofline of ``counts``."""
        flops = counts.quantity("flops")
        memory = counts.memory_bytes
        network = counts.quantity("network_bytes")
        peak = counts.peak_flops()[:, None, :]
        bw = counts.inputs.memory_bandwidth[:, None, None]
        link = counts.inputs.link_bandwidth[:, None, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            compute_time = flops / peak
            memory_time = memory / bw
            network_time = np.where(network > 0, network / link, 0.0)
            time = np.maximum(np.maximum(compute_time, memory_time), network_time)
            time = time * counts.present[:, None, :]
            performance = np.where(time > 0, flops / time, 0.0)
            mai = np.where(memory > 0, flops / memory, 0.0)
            nai = np.where(network > 0, flops / network, np.inf)
        return cls(mai, nai, performance, time, compute_time, memory_time, network_time)

    def bound(self) -> npt.NDArray[np.str_]:
        """Which ceiling sets each kernel's time: ``compute``, ``memory`` or ``network``."""
        stacked = np.stack([self.compute_time, self.memory_time, self.network_time], axis=-1)
        labels = np.array(["compute", "memory", "network"])
        return np.asarray(labels[np.argmax(stacked, axis=-1)])


def _sum_capped(start: FloatArray, count: FloatArray, cap: FloatArray) -> FloatArray:
    """``Σ_{t=1..count} min(start + t, cap)`` for arrays (cap may be inf)."""
    uncapped = count * start + count * (count + 1) / 2
    # Terms reach the cap from t* = cap - start on; t* ≤ 0 means every term is capped.
    ramp = np.clip(cap - start, 0.0, count)
    ramp = np.where(np.isfinite(ramp), ramp, count)
    capped = (
        ramp * start + ramp * (ramp + 1) / 2 + (count - ramp) * np.where(np.isfinite(cap), cap, 0.0)
    )
    return np.where(np.isfinite(cap), capped, uncapped)


def kernel_counts(points: Sequence[InferencePoint] | PointArrays) -> KernelCounts:
    """Per-kernel quantities of many points at once.

    Args:
        points: Inference points, or their :class:`PointArrays`.

    Returns:
        The counts (the caller validates TP and memory fit; see :mod:`featurize.memory`).
    """
    p = points if isinstance(points, PointArrays) else PointArrays.from_points(points)
    n = p.size
    values = np.zeros((n, 2, len(KERNEL_TYPES), len(QUANTITIES)), dtype=np.float64)
    shapes = np.zeros((n, len(KERNEL_TYPES), 2), dtype=np.float64)
    tp = p.tp
    dw, da, dkv = p.weight_bytes, p.act_bytes, p.kv_bytes
    h = p.hidden

    # Per-GPU shard widths.
    heads_g = p.heads / tp
    kv_heads_g = np.maximum(1.0, np.floor(p.kv_heads / tp))  # replicated when tp > n_kv
    q_g = heads_g * p.head_dim
    kv_g = kv_heads_g * p.head_dim
    inter_g = p.intermediate / tp
    vocab_g = p.vocab / tp
    ring = (tp - 1) / tp  # share of a tensor a GPU exchanges in each half of a ring all-reduce

    # Tokens and forward passes per phase; logits only for the last prompt position in prefill.
    steps = p.generated - 1
    tokens = {Phase.PREFILL: p.batch * p.prompt, Phase.DECODE: p.batch * steps}
    passes = {Phase.PREFILL: np.ones(n), Phase.DECODE: steps}
    logit_tokens = {Phase.PREFILL: p.batch, Phase.DECODE: p.batch * steps}

    # Keys attended, summed over the queries of one sequence, averaged over layers (a share
    # `window_fraction` of the layers is windowed). Prefill with flash attention skips the masked
    # half; decode step t sees L + t keys.
    zeros = np.zeros(n)
    full_pre = _sum_capped(zeros, p.prompt, np.full(n, np.inf))
    win_pre = _sum_capped(zeros, p.prompt, p.window)
    full_dec = _sum_capped(p.prompt, steps, np.full(n, np.inf))
    win_dec = _sum_capped(p.prompt, steps, p.window)
    f = p.window_fraction
    pairs_flash = {
        Phase.PREFILL: f * win_pre + (1 - f) * full_pre,
        Phase.DECODE: f * win_dec + (1 - f) * full_dec,
    }
    # Without flash attention the whole L×L score matrix is computed and stored in prefill.
    pairs_naive = {Phase.PREFILL: p.prompt * p.prompt, Phase.DECODE: pairs_flash[Phase.DECODE]}
    # Keys loaded per sequence and KV head: decode reads the context at every step; flash
    # prefill streams K/V once per query tile (causal: tile j reads keys up to its last row).
    key_loads_flash = {
        Phase.PREFILL: p.prompt + pairs_flash[Phase.PREFILL] / FLASH_QUERY_TILE,
        Phase.DECODE: pairs_flash[Phase.DECODE],
    }
    key_loads_naive = {Phase.PREFILL: p.prompt, Phase.DECODE: pairs_flash[Phase.DECODE]}

    def shape(kind: KernelType, d_in: FloatArray | float, d_out: FloatArray | float) -> None:
        shapes[:, KERNEL_INDEX[kind], 0] = d_in
        shapes[:, KERNEL_INDEX[kind], 1] = d_out

    def put(
        kind: KernelType, phase: Phase, share: FloatArray | None = None, **quantities: FloatArray
    ) -> None:
        # With a share, add the quantities scaled by it (a share of the layers, or 0 where that
        # part of the kernel does not exist) instead of setting them.
        row = values[:, 0 if phase is Phase.PREFILL else 1, KERNEL_INDEX[kind]]
        for name, value in quantities.items():
            if share is None:
                row[:, Q[name]] = value
            else:
                row[:, Q[name]] += share * value

    def linear(
        kind: KernelType,
        phase: Phase,
        d_in: FloatArray,
        d_out: FloatArray,
        bias: BoolArray | None = None,
        rows: FloatArray | None = None,
        weight_copies: FloatArray | None = None,
        kv_store: FloatArray | BoolArray | bool = False,
        share: FloatArray | None = None,
        bytes_per_weight: FloatArray | None = None,
    ) -> None:
        if share is None:
            shape(kind, d_in, d_out)
        t = tokens[phase] if rows is None else rows
        copies = np.ones(n) if weight_copies is None else weight_copies
        bias_elems = d_out if bias is None else d_out * bias
        flops = 2 * t * d_in * d_out + t * bias_elems
        put(
            kind,
            phase,
            share,
            flops=flops,
            weight_bytes=copies
            * (d_in * d_out + bias_elems)
            * (dw if bytes_per_weight is None else bytes_per_weight)
            * passes[phase],
            act_read_bytes=t * d_in * da,
            act_write_bytes=t * d_out * da,
            # K and V are stored into the KV cache (paper Eq. 13/19: the other kernels).
            kv_write_bytes=t * d_out * dkv * kv_store,
        )

    def elementwise(
        kind: KernelType,
        phase: Phase,
        width: FloatArray,
        ops: FloatArray,
        reads: float,
        weights: FloatArray | None = None,
    ) -> None:
        shape(kind, width, width)
        t = tokens[phase]
        put(
            kind,
            phase,
            flops=ops * t * width,
            weight_bytes=zeros if weights is None else weights * dw * passes[phase],
            act_read_bytes=reads * t * width * da,
            act_write_bytes=t * width * da,
        )

    def allreduce(kind: KernelType, phase: Phase, elements: FloatArray) -> None:
        shape(kind, h, h)
        size = elements * da
        sent = 2 * ring * size  # reduce-scatter + all-gather (Eq. 6/7 count only the first)
        put(
            kind,
            phase,
            flops=ring * elements,  # Eq. 2/3 give 1/l of the elements: right only for l = 2
            act_read_bytes=sent + ring * size,  # bytes sent + local operand of each reduction
            act_write_bytes=sent,  # bytes received
            network_bytes=sent,
        )

    norm_weight = np.where(p.norms_per_sublayer > 0, h, 0.0)
    experts_per_token = p.top_k
    mla = p.kv_lora > 0
    no_bias = np.zeros(n, dtype=bool)
    latent = p.kv_lora + p.rope_dim  # MLA's cached width per token and layer
    # Share of the layers whose MLP is the mixture of experts (the rest: dense layers).
    expert_share = (p.layers - p.dense_layers) / p.layers
    layered = (p.shared_experts > 0) | (p.dense_layers > 0)
    for phase in PHASES:
        t = tokens[phase]
        # Distinct experts whose weights a forward pass reads: each of the pass's tokens picks
        # top_k of E experts; dense models (E = k = 1) read their one MLP whenever t > 0.
        tokens_per_pass = np.where(passes[phase] > 0, t / np.maximum(passes[phase], 1), 0.0)
        touched = p.experts * (1 - (1 - experts_per_token / p.experts) ** tokens_per_pass)

        shape(KernelType.EMBEDDING, 1.0, h)
        for kind in (KernelType.FUSED_ATTN, KernelType.MATMUL_QK, KernelType.MATMUL_SV):
            shape(kind, q_g, q_g)
        shape(KernelType.SOFTMAX, heads_g, heads_g)
        shape(KernelType.ACT_MLP, inter_g, inter_g)
        shape(KernelType.LOGITS_GATHER, vocab_g, p.vocab)
        # Embedding: vocab-parallel lookup, each GPU reads the rows of its shard.
        put(
            KernelType.EMBEDDING,
            phase,
            weight_bytes=t * h * dw / tp,
            act_read_bytes=t * 4.0,  # token ids (int32)
            act_write_bytes=t * h * da,
        )
        allreduce(KernelType.EMBED_ALLREDUCE, phase, t * h)

        npl = p.norms_per_sublayer
        # The attention block's norms: the input norm(s) on the hidden state, and where the
        # model has them the RMSNorms of Q and K. Per head (Qwen3): on this GPU's heads, with one
        # d_h-wide weight each. Over the whole projection (OLMo 2): the engine gathers Q and K
        # from the GPUs first (counted with the attention all-reduce below) and normalises the
        # whole width on each, with weights as wide.
        per_head, whole = p.qk_norm == 1.0, p.qk_norm == 2.0
        q_all, kv_all = p.heads * p.head_dim, p.kv_heads * p.head_dim
        qk_width = np.where(per_head, q_g + kv_g, 0.0) + np.where(whole, q_all + kv_all, 0.0)
        qk_weights = np.where(per_head, 2 * p.head_dim, 0.0) + np.where(whole, q_all + kv_all, 0.0)
        # MLA's RMSNorms of its query and KV latents, replicated on every GPU.
        latent_norms = p.q_lora + p.kv_lora
        elementwise(
            KernelType.NORM_ATTN, phase, h * npl + qk_width + latent_norms, np.full(n, NORM_OPS),
            1.0, h * npl + qk_weights + latent_norms,
        )  # fmt: skip
        # Q: from the hidden state, or under MLA with a query latent through it (the down-
        # projection replicated on every GPU, the up-projection sharded by heads).
        q_latent = p.q_lora > 0
        linear(KernelType.Q_PROJ, phase, np.where(q_latent, p.q_lora, h), q_g, p.qkv_bias)
        linear(KernelType.Q_PROJ, phase, h, p.q_lora, no_bias, share=q_latent.astype(np.float64))
        # K and V. Under MLA the K kernel is the down-projection to the KV latent and the shared
        # RoPE key (replicated; what the cache stores), the V kernel the up-projection of each
        # head's unrotated key and value from the latent. In decode vLLM absorbs that
        # up-projection into the query and the attention output instead (the same weights and
        # operations per token: 2·r·n_h·(d_nope + d_v)), and attends over the latent.
        up_width = heads_g * (p.head_dim - p.rope_dim + p.v_dim)
        linear(KernelType.K_PROJ, phase, h, np.where(mla, latent, kv_g), p.qkv_bias, kv_store=True)
        linear(
            KernelType.V_PROJ, phase, np.where(mla, p.kv_lora, h), np.where(mla, up_width, kv_g),
            p.qkv_bias, kv_store=~mla,
        )  # fmt: skip

        # Attention. Per sequence and query head: 2·d_qk ops per (query, key) pair for QKᵀ,
        # 2·d_v for SV, SOFTMAX_OPS per score. MLA prefill attends with the up-projected keys
        # and values (d_qk = head_dim, d_v = v_head_dim), read as activations; MLA decode
        # attends over the cached latent as one KV head shared by all query heads
        # (d_qk = r + d_rope, d_v = r), each key's latent read once per sequence.
        decoding = phase is Phase.DECODE
        d_qk = np.where(mla & decoding, latent, p.head_dim)
        d_v = np.where(mla & decoding, p.kv_lora, p.v_dim)
        flash_pairs = p.batch * heads_g * pairs_flash[phase]
        naive_pairs = p.batch * heads_g * pairs_naive[phase]
        q_read = t * heads_g * d_qk * da
        out_write = t * heads_g * d_v * da
        if decoding:
            key_bytes = np.where(mla, latent * dkv, kv_g * dkv)
            value_bytes = np.where(mla, 0.0, kv_g * dkv)  # MLA's values are the cached latent
        else:
            key_bytes = np.where(mla, heads_g * p.head_dim * da, kv_g * dkv)
            value_bytes = np.where(mla, heads_g * p.v_dim * da, kv_g * dkv)
        put(
            KernelType.FUSED_ATTN,
            phase,
            flops=flash_pairs * (2 * d_qk + 2 * d_v + SOFTMAX_OPS),
            act_read_bytes=q_read,
            act_write_bytes=out_write,
            # K and V, each byte once per load (Eq. 31/42 add the KV load twice).
            kv_read_bytes=p.batch * (key_bytes + value_bytes) * key_loads_flash[phase],
        )
        loads_naive = p.batch * key_loads_naive[phase]
        put(
            KernelType.MATMUL_QK,
            phase,
            flops=2 * d_qk * naive_pairs,
            act_read_bytes=q_read,
            act_write_bytes=naive_pairs * da,
            kv_read_bytes=key_bytes * loads_naive,
        )
        put(
            KernelType.SOFTMAX,
            phase,
            flops=SOFTMAX_OPS * naive_pairs,
            act_read_bytes=naive_pairs * da,
            act_write_bytes=naive_pairs * da,
        )
        put(
            KernelType.MATMUL_SV,
            phase,
            flops=2 * d_v * naive_pairs,
            act_read_bytes=naive_pairs * da,
            act_write_bytes=out_write,
            kv_read_bytes=np.where(mla & decoding, key_bytes, value_bytes) * loads_naive,
        )

        linear(KernelType.OUT_PROJ, phase, heads_g * p.v_dim, h, p.dense_bias)
        allreduce(KernelType.ALLREDUCE_ATTN, phase, t * h)
        # The all-gather of Q and K ahead of whole-projection norms: each GPU receives the
        # (l-1)/l of them it lacks.
        gathered_qk = np.where(whole, t * (q_all + kv_all) * ring * da, 0.0)
        ph = 0 if phase is Phase.PREFILL else 1
        qk_row = values[:, ph, KERNEL_INDEX[KernelType.ALLREDUCE_ATTN]]
        for quantity in ("act_read_bytes", "act_write_bytes", "network_bytes"):
            qk_row[:, Q[quantity]] += gathered_qk
        elementwise(KernelType.ADD_ATTN, phase, h, np.ones(n), 2.0)
        elementwise(KernelType.NORM_MLP, phase, h * npl, np.full(n, NORM_OPS), 1.0, h * npl)

        # Router: replicated on every GPU, one score per expert and token (plus its bias).
        linear(KernelType.ROUTER, phase, h, p.experts, p.router_bias)
        # Experts (or the dense MLP): each token visits top_k experts; weights are read for the
        # experts touched; under TP each expert's intermediate width is sharded. Layers of
        # experts may also run shared experts for every token, and a model may have dense layers
        # among them (DeepSeek, Llama 4): each part is counted in its share of the layers.
        # Routed experts may be stored narrower than the rest (gpt-oss's MXFP4 experts).
        routed = t * experts_per_token
        for kind, d_in, d_out in (
            (KernelType.GATE_PROJ, h, inter_g),
            (KernelType.UP_PROJ, h, inter_g),
            (KernelType.DOWN_PROJ, inter_g, h),
        ):
            linear(kind, phase, d_in, d_out, p.dense_bias, routed, touched,
                   bytes_per_weight=p.expert_weight_bytes)  # fmt: skip
        gate_reads = np.where(p.gated, 2.0, 1.0)
        act_ops = p.activation_ops + p.gated
        put(
            KernelType.ACT_MLP,
            phase,
            flops=act_ops * routed * inter_g,
            act_read_bytes=gate_reads * routed * inter_g * da,
            act_write_bytes=routed * inter_g * da,
        )
        if np.any(layered):
            for kind in (KernelType.ROUTER, KernelType.GATE_PROJ, KernelType.UP_PROJ,
                         KernelType.DOWN_PROJ, KernelType.ACT_MLP):  # fmt: skip
                values[:, 0 if phase is Phase.PREFILL else 1, KERNEL_INDEX[kind]] *= expert_share[
                    :, None
                ]
            for width, part_share in (
                (p.shared_experts * inter_g, expert_share * (p.shared_experts > 0)),
                (p.dense_intermediate / tp, 1.0 - expert_share),
            ):
                linear(KernelType.GATE_PROJ, phase, h, width, no_bias, share=part_share)
                linear(KernelType.UP_PROJ, phase, h, width, no_bias, share=part_share)
                linear(KernelType.DOWN_PROJ, phase, width, h, no_bias, share=part_share)
                put(
                    KernelType.ACT_MLP,
                    phase,
                    part_share,
                    flops=act_ops * t * width,
                    act_read_bytes=gate_reads * t * width * da,
                    act_write_bytes=t * width * da,
                )
        allreduce(KernelType.ALLREDUCE_MLP, phase, t * h)
        elementwise(KernelType.ADD_MLP, phase, h, np.ones(n), 2.0)

        elementwise(KernelType.FINAL_NORM, phase, h, np.full(n, NORM_OPS), 1.0, norm_weight)
        linear(KernelType.LM_HEAD, phase, h, vocab_g, no_bias, logit_tokens[phase])
        # Logits of the vocabulary shards are gathered on the first GPU.
        gathered = logit_tokens[phase] * p.vocab * ring * da
        put(
            KernelType.LOGITS_GATHER,
            phase,
            act_read_bytes=gathered,
            act_write_bytes=gathered,
            network_bytes=gathered,
        )

    present = _present_kernels(p)
    calls = np.where(
        np.array([k in MODEL_LEVEL_KERNELS for k in KERNEL_TYPES])[None, :],
        1.0,
        p.layers[:, None],
    )
    values *= calls[:, None, :, None]
    values *= present[:, None, :, None]
    return KernelCounts(values=values, present=present, calls=calls, shapes=shapes, inputs=p)


def _present_kernels(p: PointArrays) -> BoolArray:
    n = p.size
    present = np.ones((n, len(KERNEL_TYPES)), dtype=bool)
    multi_gpu = p.tp > 1
    moe = p.experts > 1

    def mark(kind: KernelType, mask: BoolArray) -> None:
        present[:, KERNEL_INDEX[kind]] = mask

    mark(KernelType.FUSED_ATTN, p.flash)
    for kind in (KernelType.MATMUL_QK, KernelType.SOFTMAX, KernelType.MATMUL_SV):
        mark(kind, ~p.flash)
    for kind in NETWORK_KERNELS:
        mark(kind, multi_gpu)
    # Attention beside the MLP (Falcon): the engine adds both partial sums before one all-reduce,
    # and one LayerNorm may feed both.
    parallel = p.parallel_block > 0
    mark(KernelType.ALLREDUCE_ATTN, multi_gpu & ~parallel)
    mark(KernelType.NORM_MLP, p.parallel_block != 1.0)
    mark(KernelType.GATE_PROJ, p.gated)
    mark(KernelType.ROUTER, moe)
    return present
