"""PyTorch Geometric graphs of inference requests (the LLMCO2 graph embedding, Section 4.1).

One graph per request: a node per kernel (Figure 12, plus the model-level kernels), an edge per
data dependency (source kernel feeds destination kernel; the residual stream feeds the adds), node
features for the prefill and for the decode phase side by side, and global features for the
architecture, request, per-phase totals and hardware. Every node is reachable from the embedding:
the public LLMCO2 code left half of its nodes isolated, which a GNN cannot learn from.

Deviation from the paper: a node describes its kernel summed over all layers (with the number of
calls as a feature), not one layer, so that node features add up to the request's totals, model
level kernels (embedding, LM head) sit in the same graph, and one graph represents the request.

Deviation from the paper: the "bound" of a kernel (compute, memory or network) is not a one-hot
of the longest of its three roofline times but each time's share of their sum after raising them
to the power :data:`BOUND_SHARPNESS`: 1 for a kernel far on one side, 0.5 each where two times are
equal. A one-hot flips at the ridge point, and a predictor reading it stepped by 4-5 % between two
neighbouring request sizes (Llama-3.1-8B on an H200: 10.72 J at 295 prompt tokens, 10.27 J at
296, where two projections crossed from memory- to compute-bound in the prefill); the shares move
smoothly through the ridge.

Everything up to the per-point ``Data`` objects is vectorised: :func:`graph_arrays` computes the
feature tensors of all points at once, :func:`build_graphs` only slices them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featurize.kernels import (
    KERNEL_INDEX,
    KERNEL_TYPES,
    PHASES,
    QUANTITIES,
    FloatArray,
    KernelCounts,
    KernelType,
    PointArrays,
    kernel_counts,
)
from featurize.point import InferencePoint

if TYPE_CHECKING:
    from torch_geometric.data import Data

#: Bumped whenever the meaning or order of a feature changes; checkpoints record it.
FEATURE_SCHEMA_VERSION = 1

_PHASE_QUANTITIES: tuple[str, ...] = (
    "tokens",
    "flops",
    "weight_bytes",
    "act_bytes",
    "kv_bytes",
    "network_bytes",
    "memory_bytes",
    "memory_intensity",
    "performance",
    "roofline_time_us",
)
#: Power the three roofline times are raised to before their shares make a kernel's bound (the
#: larger, the closer to a one-hot: a time twice another takes 94 % of the share at 4).
BOUND_SHARPNESS = 4.0
#: Names of the columns of ``Data.x``.
NODE_FEATURE_NAMES: tuple[str, ...] = (
    *(f"type_{k.value}" for k in KERNEL_TYPES),
    "log2_d_in",
    "log2_d_out",
    "log2_calls",
    *(f"{phase.value}_log10_{q}" for phase in PHASES for q in _PHASE_QUANTITIES),
    *(f"{phase.value}_bound_{b}" for phase in PHASES for b in ("compute", "memory", "network")),
)
#: Names of the columns of ``Data.u`` (one row per graph).
GLOBAL_FEATURE_NAMES: tuple[str, ...] = (
    "log2_hidden_size",
    "log2_intermediate_size",
    "num_layers",
    "log2_num_heads",
    "log2_num_kv_heads",
    "log2_head_dim",
    "log2_vocab_size",
    "gated_mlp",
    "log2_num_experts",
    "log2_experts_per_token",
    "sliding_window_layer_fraction",
    "weight_bits",
    "activation_bits",
    "kv_bits",
    "flash_attention",
    "log2_batch_size",
    "log2_prompt_tokens",
    "log2_generated_tokens",
    *(
        f"{phase.value}_log10_total_{q}"
        for phase in PHASES
        for q in ("flops", "memory_bytes", "network_bytes", "roofline_time_us")
    ),
    "log10_tensor_peak_flops",
    "log10_vector_peak_flops",
    "log10_memory_bandwidth",
    "log10_link_bandwidth",
    "log10_memory_capacity",
    "tdp_kw",
    "die_area_cm2",
    "process_nm",
    "gpu_count",
)


def _edges(flash: bool, gated: bool, moe: bool, multi_gpu: bool) -> list[tuple[KernelType, ...]]:
    """Data dependencies (source, destination) of the kernels present in one structure."""
    k = KernelType
    layer_in = k.EMBED_ALLREDUCE if multi_gpu else k.EMBEDDING
    attn_out = k.ALLREDUCE_ATTN if multi_gpu else k.OUT_PROJ
    mlp_out = k.ALLREDUCE_MLP if multi_gpu else k.DOWN_PROJ
    edges: list[tuple[KernelType, ...]] = [
        (layer_in, k.NORM_ATTN),
        (k.NORM_ATTN, k.Q_PROJ),
        (k.NORM_ATTN, k.K_PROJ),
        (k.NORM_ATTN, k.V_PROJ),
        (layer_in, k.ADD_ATTN),  # residual stream
        (attn_out, k.ADD_ATTN),
        (k.ADD_ATTN, k.NORM_MLP),
        (k.ADD_ATTN, k.ADD_MLP),  # residual stream
        (k.UP_PROJ, k.ACT_MLP),
        (k.ACT_MLP, k.DOWN_PROJ),
        (mlp_out, k.ADD_MLP),
        (k.ADD_MLP, k.FINAL_NORM),
        (k.FINAL_NORM, k.LM_HEAD),
    ]
    if multi_gpu:
        edges += [
            (k.EMBEDDING, k.EMBED_ALLREDUCE),
            (k.OUT_PROJ, k.ALLREDUCE_ATTN),
            (k.DOWN_PROJ, k.ALLREDUCE_MLP),
            (k.LM_HEAD, k.LOGITS_GATHER),
        ]
    if flash:
        edges += [
            (k.Q_PROJ, k.FUSED_ATTN),
            (k.K_PROJ, k.FUSED_ATTN),
            (k.V_PROJ, k.FUSED_ATTN),
            (k.FUSED_ATTN, k.OUT_PROJ),
        ]
    else:
        edges += [
            (k.Q_PROJ, k.MATMUL_QK),
            (k.K_PROJ, k.MATMUL_QK),
            (k.MATMUL_QK, k.SOFTMAX),
            (k.SOFTMAX, k.MATMUL_SV),
            (k.V_PROJ, k.MATMUL_SV),
            (k.MATMUL_SV, k.OUT_PROJ),
        ]
    mlp_inputs = [k.GATE_PROJ, k.UP_PROJ] if gated else [k.UP_PROJ]
    edges += [(k.NORM_MLP, dst) for dst in mlp_inputs]
    if gated:
        edges.append((k.GATE_PROJ, k.ACT_MLP))
    if moe:
        edges.append((k.NORM_MLP, k.ROUTER))
        edges += [(k.ROUTER, dst) for dst in mlp_inputs]
        edges.append((k.ROUTER, k.DOWN_PROJ))  # routing weights scale the expert outputs
    return edges


@dataclass(frozen=True)
class GraphTemplate:
    """Nodes and edges shared by every point of one structure (flash, gated, MoE, multi-GPU)."""

    kernel_index: np.ndarray[Any, np.dtype[np.int64]]  # global kernel index of each node
    edge_index: np.ndarray[Any, np.dtype[np.int64]]  # (2, E) local node indices


_TEMPLATES: dict[tuple[bool, bool, bool, bool], GraphTemplate] = {}


def graph_template(flash: bool, gated: bool, moe: bool, multi_gpu: bool) -> GraphTemplate:
    """The node list and edge index of one structure (cached)."""
    key = (flash, gated, moe, multi_gpu)
    template = _TEMPLATES.get(key)
    if template is None:
        edges = _edges(*key)
        nodes = sorted({kind for edge in edges for kind in edge}, key=KERNEL_INDEX.__getitem__)
        local = {kind: n for n, kind in enumerate(nodes)}
        template = GraphTemplate(
            kernel_index=np.array([KERNEL_INDEX[kind] for kind in nodes], dtype=np.int64),
            edge_index=np.array(
                [[local[s] for s, _ in edges], [local[d] for _, d in edges]], dtype=np.int64
            ),
        )
        _TEMPLATES[key] = template
    return template


def _log10(x: FloatArray) -> FloatArray:
    return np.asarray(np.log10(1.0 + np.maximum(x, 0.0)), dtype=np.float64)


def _log2(x: FloatArray) -> FloatArray:
    return np.asarray(np.log2(np.maximum(x, 1.0)), dtype=np.float64)


@dataclass(frozen=True)
class GraphArrays:
    """Features of ``N`` graphs before they are split into ``Data`` objects.

    Attributes:
        node_features: ``(N, K, len(NODE_FEATURE_NAMES))`` for every kernel type (absent
            kernels included; the templates pick the present ones).
        global_features: ``(N, len(GLOBAL_FEATURE_NAMES))``.
        structure: ``(N, 4)`` booleans (flash, gated, MoE, multi-GPU) selecting the template.
        counts: The kernel counts the features were derived from.
    """

    node_features: FloatArray
    global_features: FloatArray
    structure: np.ndarray[Any, np.dtype[np.bool_]]
    counts: KernelCounts


def graph_arrays(points: Sequence[InferencePoint] | PointArrays | KernelCounts) -> GraphArrays:
    """Node and global features of many points, computed in bulk with NumPy."""
    counts = points if isinstance(points, KernelCounts) else kernel_counts(points)
    p = counts.inputs
    n, k = counts.present.shape
    roof = counts.roofline()
    bound = np.stack([roof.compute_time, roof.memory_time, roof.network_time], axis=-1)
    # Relative to the longest time before the power, so that tiny kernels do not underflow.
    scaled = (bound / np.maximum(bound.max(axis=-1, keepdims=True), 1e-300)) ** BOUND_SHARPNESS
    bound_share = np.where(
        roof.time[..., None] > 0,
        scaled / np.maximum(scaled.sum(axis=-1, keepdims=True), 1e-300),
        0.0,
    )

    tokens = np.stack([p.batch * p.prompt, p.batch * (p.generated - 1)], axis=1)  # (N, 2)
    per_phase = np.stack(
        [
            np.broadcast_to(tokens[:, :, None], (n, 2, k)),
            counts.quantity("flops"),
            counts.quantity("weight_bytes"),
            counts.quantity("act_read_bytes") + counts.quantity("act_write_bytes"),
            counts.quantity("kv_read_bytes") + counts.quantity("kv_write_bytes"),
            counts.quantity("network_bytes"),
            counts.memory_bytes,
            roof.memory_intensity,
            roof.performance,
            roof.time * 1e6,
        ],
        axis=-1,
    )  # (N, 2, K, Q)
    per_phase = _log10(per_phase) * counts.present[:, None, :, None]
    node = np.concatenate(
        [
            np.broadcast_to(np.eye(k), (n, k, k)),
            _log2(counts.shapes),
            _log2(counts.calls)[..., None],
            per_phase.transpose(0, 2, 1, 3).reshape(n, k, -1),
            bound_share.transpose(0, 2, 1, 3).reshape(n, k, -1),
        ],
        axis=-1,
    )

    totals = counts.totals()
    time_total = roof.time.sum(axis=2)
    phase_totals = np.stack(
        [
            totals[..., QUANTITIES.index("flops")],
            (counts.memory_bytes * counts.present[:, None, :]).sum(axis=2),
            totals[..., QUANTITIES.index("network_bytes")],
            time_total * 1e6,
        ],
        axis=-1,
    )  # (N, 2, 4)
    glob = np.column_stack(
        [
            _log2(p.hidden),
            _log2(p.intermediate),
            p.layers,
            _log2(p.heads),
            _log2(p.kv_heads),
            _log2(p.head_dim),
            _log2(p.vocab),
            p.gated.astype(np.float64),
            _log2(p.experts),
            _log2(p.top_k),
            p.window_fraction,
            p.weight_bytes * 8,
            p.act_bytes * 8,
            p.kv_bytes * 8,
            p.flash.astype(np.float64),
            _log2(p.batch),
            _log2(p.prompt),
            _log2(p.generated),
            _log10(phase_totals).reshape(n, -1),
            _log10(p.tensor_flops),
            _log10(p.vector_flops),
            _log10(p.memory_bandwidth),
            _log10(p.link_bandwidth),
            _log10(p.memory_capacity),
            p.tdp / 1000,
            p.die_area / 100,
            p.process_nm,
            p.tp,
        ]
    )
    structure = np.column_stack([p.flash, p.gated, p.experts > 1, p.tp > 1])
    return GraphArrays(node, glob, structure, counts)


def build_graphs(
    points: Sequence[InferencePoint] | PointArrays | KernelCounts | GraphArrays,
) -> list[Data]:
    """One ``torch_geometric.data.Data`` per point.

    Each graph has ``x`` (nodes × :data:`NODE_FEATURE_NAMES`), ``edge_index``, ``u`` (1 ×
    :data:`GLOBAL_FEATURE_NAMES`) and ``kernel_type`` (index into ``KERNEL_TYPES`` per node).
    Graphs of the same structure share their ``edge_index`` tensor.
    """
    import torch
    from torch_geometric.data import Data

    arrays = points if isinstance(points, GraphArrays) else graph_arrays(points)
    node = torch.from_numpy(arrays.node_features.astype(np.float32))
    glob = torch.from_numpy(arrays.global_features.astype(np.float32))
    graphs: list[Data] = []
    tensors: dict[tuple[bool, ...], tuple[Any, Any]] = {}
    for n, key in enumerate(map(tuple, arrays.structure.tolist())):
        cached = tensors.get(key)
        if cached is None:
            template = graph_template(*key)
            cached = tensors[key] = (
                torch.from_numpy(template.kernel_index),
                torch.from_numpy(template.edge_index),
            )
        kernel_index, edge_index = cached
        graphs.append(
            Data(
                x=node[n].index_select(0, kernel_index),
                edge_index=edge_index,
                u=glob[n : n + 1],
                kernel_type=kernel_index,
            )
        )
    return graphs


def build_graph(point: InferencePoint) -> Data:
    """The graph of one point."""
    return build_graphs([point])[0]
