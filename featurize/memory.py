"""Does a configuration fit in its GPUs' memory? Weights + KV cache + working memory per GPU.

The model follows how vLLM budgets memory: it may use ``gpu_memory_utilization`` (0.9 by default)
of each GPU; within that it holds its shard of the weights, the KV cache of every sequence of the
batch for prompt + generated tokens, the activations of the largest forward pass (the prefill),
and a fixed runtime reserve (CUDA context, cuBLAS/NCCL workspaces, CUDA graphs).
"""

from __future__ import annotations

from dataclasses import dataclass

from featurize.point import InferencePoint
from llmco2.errors import InfeasibleConfigError

#: Share of each GPU's memory the engine may use (vLLM's default ``gpu_memory_utilization``).
DEFAULT_MEMORY_UTILIZATION = 0.9
#: Memory the runtime keeps outside weights, KV cache and activations, in bytes (measured with
#: vLLM on Hopper: CUDA context ~0.5 GB, NCCL/cuBLAS workspaces and CUDA graphs ~0.5 GB).
RUNTIME_RESERVE_BYTES = 1.0e9
_GB = 1e9


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Bytes one GPU of the tensor-parallel group needs.

    Attributes:
        weight_bytes: The GPU's shard of the weights (replicated parts counted whole).
        kv_cache_bytes: KV cache for ``batch × (prompt + generated)`` tokens.
        activation_bytes: Peak activations of the prefill, logits included.
        reserve_bytes: Runtime reserve.
        usable_bytes: What the engine may use on one GPU.
    """

    weight_bytes: float
    kv_cache_bytes: float
    activation_bytes: float
    reserve_bytes: float
    usable_bytes: float

    @property
    def required_bytes(self) -> float:
        """Everything one GPU has to hold."""
        return self.weight_bytes + self.kv_cache_bytes + self.activation_bytes + self.reserve_bytes

    @property
    def fits(self) -> bool:
        """Whether the requirement stays within the usable memory."""
        return self.required_bytes <= self.usable_bytes


def estimate_memory(
    point: InferencePoint, utilization: float = DEFAULT_MEMORY_UTILIZATION
) -> MemoryEstimate:
    """Per-GPU memory need of ``point`` (see the module docstring for the model)."""
    arch, request, precision = point.architecture, point.request, point.precision
    tp = point.setup.count
    replicated_attention = arch.replicated_attention_params_per_layer
    sharded_attention = arch.attention_params_per_layer - replicated_attention
    # Routed experts may be stored narrower than the rest (gpt-oss's MXFP4 experts); a dense
    # model's MLP, its one "expert", is stored like the other weights.
    experts = arch.expert_layers * arch.num_experts * arch.mlp_params_per_expert / tp
    expert_bytes = precision.expert_weight_bytes if arch.is_moe else precision.weight_bytes
    sharded = (
        arch.num_layers * sharded_attention
        + arch.expert_layers * arch.shared_expert_params
        + arch.dense_layers * arch.dense_mlp_params
    ) / tp
    replicated = (
        arch.num_layers * (replicated_attention + arch.norm_params_per_layer)
        + arch.expert_layers * arch.router_params_per_layer
    )
    weights = (
        sharded + replicated + arch.embedding_params / tp + arch.hidden_size
    ) * precision.weight_bytes + experts * expert_bytes
    kv = (
        arch.num_layers
        * arch.kv_cache_elements_per_token(tp)
        * request.batch_size
        * request.context_tokens
        * precision.kv_bytes
    )
    tokens = request.batch_size * request.prompt_tokens
    widest = max(
        arch.hidden_size * 2 + (arch.q_size + 2 * arch.kv_size) / tp,
        2 * arch.experts_per_token * arch.intermediate_size / tp,
        2 * (arch.shared_experts * arch.intermediate_size + arch.dense_intermediate_size) / tp,
    )
    logits = request.batch_size * arch.vocab_size * 4.0  # float32 logits of the last position
    activations = tokens * widest * precision.activation_bytes + logits
    return MemoryEstimate(
        weight_bytes=weights,
        kv_cache_bytes=kv,
        activation_bytes=activations,
        reserve_bytes=RUNTIME_RESERVE_BYTES,
        usable_bytes=point.setup.gpu.memory_bytes * utilization,
    )


def check_fits(point: InferencePoint, utilization: float = DEFAULT_MEMORY_UTILIZATION) -> None:
    """Raise unless ``point`` fits its GPUs (TP is checked first).

    Raises:
        InfeasibleConfigError: TP does not divide the heads, or the memory need is too large.
    """
    point.validate()
    estimate = estimate_memory(point, utilization)
    if not estimate.fits:
        setup = point.setup
        raise InfeasibleConfigError(
            f"{point.architecture.name} ({point.precision.label}) needs "
            f"{estimate.required_bytes / _GB:.1f} GB per GPU "
            f"(weights {estimate.weight_bytes / _GB:.1f}, KV cache "
            f"{estimate.kv_cache_bytes / _GB:.1f}, activations "
            f"{estimate.activation_bytes / _GB:.1f}, runtime {estimate.reserve_bytes / _GB:.1f}) "
            f"but {setup.label} offers {estimate.usable_bytes / _GB:.1f} GB usable per GPU "
            f"({utilization:.0%} of {setup.gpu.entry.memory_gb:g} GB); use more GPUs (--tp), "
            "fewer weight bits, or a smaller batch or context"
        )
