"""The shape of a decoder-only LLM, as far as compute, memory and network traffic depend on it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from llmco2.errors import InfeasibleConfigError, UnsupportedArchitectureError

MlpKind = Literal["gated", "plain"]
Activation = Literal["silu", "gelu_tanh", "gelu"]
Position = Literal["rope", "alibi"]
QkNorm = Literal["none", "head", "full"]
ParallelBlock = Literal["none", "shared_norm", "own_norms"]

#: Families whose kernels the featurizer models (Hugging Face ``model_type`` values).
SUPPORTED_FAMILIES: tuple[str, ...] = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "qwen3_moe",
    "phi3",
    "olmo2",
    "granite",
    "gemma",
    "gemma2",
    "gemma3_text",
    "bloom",
    "starcoder2",
    "mixtral",
    "gpt_oss",
    "deepseek_v2",
    "deepseek_v3",
    "falcon",
    "llama4_text",
)

#: Families whose MLP width the engine derives from the hidden size (``BloomMLP``: 4 × hidden), so
#: a shape of theirs cannot have any other intermediate size.
FIXED_MLP_RATIO: dict[str, int] = {"bloom": 4}

#: Families whose norms are LayerNorms with a bias as well as a weight (the rest: RMSNorm).
LAYERNORM_FAMILIES = frozenset({"bloom", "starcoder2", "falcon"})

#: Families whose layers may run attention and MLP in parallel on the same input (Falcon):
#: ``shared_norm``, one LayerNorm feeds both (Falcon-7B, Falcon2-11B); ``own_norms``, each has
#: its own (Falcon-40B and -180B). The engine sums both outputs before one all-reduce.
PARALLEL_BLOCK_FAMILIES = frozenset({"falcon"})

#: How each family normalises queries and keys before attention (``none`` where absent):
#: ``head``, an RMSNorm of each head's ``d_h`` values with one ``d_h``-wide weight shared by the
#: heads (Qwen3, Qwen3-MoE, Gemma 3); ``full``, an RMSNorm of the whole Q and the whole K
#: projection output with a weight as wide as each (OLMo 2).
QK_NORM_OF_FAMILY: dict[str, QkNorm] = {
    "qwen3": "head",
    "qwen3_moe": "head",
    "gemma3_text": "head",
    "olmo2": "full",
}

#: Families whose configs list each layer's attention kind (``layer_types``: Gemma 3, gpt-oss):
#: their windowed share is a whole number of layers.
WINDOWED_LAYERS_LISTED = frozenset({"gemma3_text", "gpt_oss", "llama4_text"})

#: Families whose dense MLP layers sit between the expert layers (Llama 4 Maverick: every other
#: layer) rather than before them (DeepSeek): a shallower copy keeps their share of the layers.
INTERLEAVED_DENSE_LAYERS = frozenset({"llama4_text"})

#: Families with attention sinks (a learnt logit per head that joins every softmax) and a bias on
#: the MoE router: gpt-oss.
SINK_AND_ROUTER_BIAS_FAMILIES = frozenset({"gpt_oss"})

#: Families with multi-head latent attention (MLA): keys and values are cached as one compressed
#: latent per token, which the heads' own keys and values are projected up from (DeepSeek V2, V3).
LATENT_ATTENTION_FAMILIES = frozenset({"deepseek_v2", "deepseek_v3"})

#: Fields added to :class:`Architecture` after campaigns had stored shapes, with the value every
#: shape stored before them has. A shape's identity leaves them out at that value, so the points
#: measured before keep their keys (see :meth:`Architecture.identity`).
LATER_FIELD_DEFAULTS: dict[str, Any] = {
    "qk_norm": "none",
    "attention_sinks": False,
    "router_bias": False,
    "q_lora_rank": 0,
    "kv_lora_rank": 0,
    "rope_head_dim": 0,
    "v_head_dim": 0,
    "shared_experts": 0,
    "dense_layers": 0,
    "dense_intermediate_size": 0,
    "parallel_block": "none",
}


@dataclass(frozen=True, slots=True)
class Architecture:
    """A decoder-only transformer, described by what drives its kernels' cost.

    Attributes:
        name: Catalog id, path or a label for a perturbed architecture.
        family: Hugging Face ``model_type`` (one of :data:`SUPPORTED_FAMILIES`).
        hidden_size: Model width ``size_h``.
        intermediate_size: MLP width (per expert for MoE).
        num_layers: Transformer layers.
        num_heads: Query heads ``n_h``.
        num_kv_heads: Key/value heads ``n_kv`` (< ``num_heads`` under GQA/MQA).
        head_dim: Width of one head ``d_h`` (not always ``hidden_size / num_heads``: Gemma).
        vocab_size: Rows of the embedding and of the LM head.
        mlp: ``gated`` (gate and up projections, SiLU/GELU-GLU) or ``plain`` (up, GELU, down).
        activation: The MLP activation function.
        tied_embeddings: Whether the LM head reuses the embedding matrix (no extra weights).
        num_experts: MoE experts per layer (1 for dense models).
        experts_per_token: Experts each token is routed to (top-k).
        sliding_window: Attention window of the windowed layers, None for global attention only.
        sliding_window_layer_fraction: Share of layers that use the window (Gemma 2: half;
            Gemma 3: five in six).
        norms_per_sublayer: Normalisations around each attention/MLP block (Gemma 2 and 3: pre
            and post).
        qkv_bias: Whether the Q/K/V projections have biases (Qwen2, BLOOM, StarCoder2, gpt-oss).
        dense_bias: Whether the output and MLP projections have biases (BLOOM, StarCoder2,
            gpt-oss's experts).
        position: ``rope`` or ``alibi`` (no extra weights either way).
        qk_norm: How queries and keys are RMS-normalised before attention: ``none``, ``head``
            (each head's: Qwen3, Gemma 3) or ``full`` (the whole projection output, OLMo 2); see
            :data:`QK_NORM_OF_FAMILY`.
        attention_sinks: Whether each head has a learnt sink logit that joins its softmax
            (gpt-oss).
        router_bias: Whether the MoE router has a bias (gpt-oss).
        q_lora_rank: Width of the compressed query of multi-head latent attention (0: the
            queries are projected from the hidden state directly, as in DeepSeek-V2-Lite).
        kv_lora_rank: Width of the compressed key/value latent that MLA caches (0: no MLA).
        rope_head_dim: The part of ``head_dim`` that carries the rotary position, projected
            once per token and shared by the heads (MLA's decoupled RoPE key).
        v_head_dim: Width of one head's value under MLA (0: ``head_dim``).
        shared_experts: Experts every token visits besides its routed ones (DeepSeek's shared
            experts, each as wide as a routed one).
        dense_layers: How many layers have a dense MLP instead of experts: DeepSeek's first
            ``first_k_dense_replace``, or Llama 4's layers between its expert layers.
        dense_intermediate_size: MLP width of those dense layers.
        parallel_block: ``none`` (attention, then the MLP on its result), or attention and MLP
            side by side on the layer's input, behind one shared LayerNorm (``shared_norm``) or
            one each (``own_norms``); see :data:`PARALLEL_BLOCK_FAMILIES`.
    """

    name: str
    family: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    mlp: MlpKind = "gated"
    activation: Activation = "silu"
    tied_embeddings: bool = False
    num_experts: int = 1
    experts_per_token: int = 1
    sliding_window: int | None = None
    sliding_window_layer_fraction: float = 0.0
    norms_per_sublayer: int = 1
    qkv_bias: bool = False
    dense_bias: bool = False
    position: Position = "rope"
    qk_norm: QkNorm = "none"
    attention_sinks: bool = False
    router_bias: bool = False
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    rope_head_dim: int = 0
    v_head_dim: int = 0
    shared_experts: int = 0
    dense_layers: int = 0
    dense_intermediate_size: int = 0
    parallel_block: ParallelBlock = "none"

    def __post_init__(self) -> None:
        if self.family not in SUPPORTED_FAMILIES:
            raise UnsupportedArchitectureError(
                f"model family {self.family!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_FAMILIES)})"
            )
        positive = {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "num_experts": self.num_experts,
            "experts_per_token": self.experts_per_token,
            "norms_per_sublayer": self.norms_per_sublayer,
        }
        self._check_integers(positive, minimum=1)
        expected_qk_norm = QK_NORM_OF_FAMILY.get(self.family, "none")
        if self.qk_norm != expected_qk_norm:
            raise UnsupportedArchitectureError(
                f"{self.name}: a {self.family} model's Q/K norm is {expected_qk_norm!r}, "
                f"got qk_norm {self.qk_norm!r}"
            )
        sinks = self.family in SINK_AND_ROUTER_BIAS_FAMILIES
        if (self.attention_sinks, self.router_bias) != (sinks, sinks):
            has = {True: "attention sinks and a router bias", False: "no sinks or router bias"}
            raise UnsupportedArchitectureError(
                f"{self.name}: a {self.family} model has {has[sinks]}"
            )
        ratio = FIXED_MLP_RATIO.get(self.family)
        if ratio is not None and self.intermediate_size != ratio * self.hidden_size:
            raise UnsupportedArchitectureError(
                f"{self.name}: a {self.family} MLP is {ratio} x hidden_size wide "
                f"({ratio * self.hidden_size}), got intermediate_size {self.intermediate_size}"
            )
        if self.num_heads % self.num_kv_heads:
            raise UnsupportedArchitectureError(
                f"{self.name}: {self.num_heads} attention heads are not a multiple of "
                f"{self.num_kv_heads} KV heads"
            )
        if self.experts_per_token > self.num_experts:
            raise UnsupportedArchitectureError(
                f"{self.name}: top-{self.experts_per_token} routing needs at least that many "
                f"experts, got {self.num_experts}"
            )
        if self.sliding_window is not None and self.sliding_window < 1:
            raise UnsupportedArchitectureError(f"{self.name}: sliding_window must be positive")
        if not 0.0 <= self.sliding_window_layer_fraction <= 1.0:
            raise UnsupportedArchitectureError(
                f"{self.name}: sliding_window_layer_fraction must lie in [0, 1]"
            )
        self._check_latent_attention()
        self._check_expert_layout()
        if self.parallel_block not in ("none", "shared_norm", "own_norms"):
            raise UnsupportedArchitectureError(
                f"{self.name}: parallel_block must be none, shared_norm or own_norms, "
                f"got {self.parallel_block!r}"
            )
        if self.parallel_block != "none" and self.family not in PARALLEL_BLOCK_FAMILIES:
            raise UnsupportedArchitectureError(
                f"{self.name}: a {self.family} model runs attention and MLP one after the other"
            )
        windowed = self.sliding_window_layer_fraction * self.num_layers
        if self.family in WINDOWED_LAYERS_LISTED and abs(windowed - round(windowed)) > 1e-6:
            raise UnsupportedArchitectureError(
                f"{self.name}: a {self.family} model windows whole layers, but "
                f"sliding_window_layer_fraction {self.sliding_window_layer_fraction} of "
                f"{self.num_layers} layers is {windowed:.2f}"
            )

    def _check_integers(self, values: dict[str, Any], minimum: int) -> None:
        kind = "a positive" if minimum == 1 else "a non-negative"
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise UnsupportedArchitectureError(
                    f"{self.name}: {key} must be {kind} integer, got {value!r}"
                )

    def _check_latent_attention(self) -> None:
        latent = {
            "q_lora_rank": self.q_lora_rank,
            "kv_lora_rank": self.kv_lora_rank,
            "rope_head_dim": self.rope_head_dim,
            "v_head_dim": self.v_head_dim,
        }
        self._check_integers(latent, minimum=0)
        if self.family not in LATENT_ATTENTION_FAMILIES:
            if any(latent.values()):
                raise UnsupportedArchitectureError(
                    f"{self.name}: a {self.family} model has no latent attention "
                    "(q_lora_rank, kv_lora_rank, rope_head_dim and v_head_dim must be 0)"
                )
            return
        if not self.kv_lora_rank or not self.v_head_dim:
            raise UnsupportedArchitectureError(
                f"{self.name}: a {self.family} model needs a positive kv_lora_rank and v_head_dim"
            )
        if not 0 < self.rope_head_dim < self.head_dim:
            raise UnsupportedArchitectureError(
                f"{self.name}: rope_head_dim must lie strictly between 0 and head_dim "
                f"{self.head_dim} (the rest of each query/key head is not rotated), "
                f"got {self.rope_head_dim}"
            )
        if self.num_kv_heads != self.num_heads:
            raise UnsupportedArchitectureError(
                f"{self.name}: latent attention projects a key and a value for every head: "
                f"num_kv_heads must equal num_heads ({self.num_heads}), got {self.num_kv_heads}"
            )
        if self.qkv_bias or self.dense_bias or self.sliding_window is not None:
            raise UnsupportedArchitectureError(
                f"{self.name}: a {self.family} model has no biases and no sliding window"
            )

    def _check_expert_layout(self) -> None:
        layout = ("shared_experts", "dense_layers", "dense_intermediate_size")
        self._check_integers({key: getattr(self, key) for key in layout}, minimum=0)
        if (self.shared_experts or self.dense_layers) and not self.is_moe:
            raise UnsupportedArchitectureError(
                f"{self.name}: shared experts and dense layers need a mixture of experts "
                f"(num_experts > 1)"
            )
        if self.dense_layers >= self.num_layers:
            raise UnsupportedArchitectureError(
                f"{self.name}: {self.dense_layers} dense layers leave none of its "
                f"{self.num_layers} layers to the experts"
            )
        if bool(self.dense_layers) != bool(self.dense_intermediate_size):
            raise UnsupportedArchitectureError(
                f"{self.name}: dense_layers and dense_intermediate_size are both set or both 0"
            )

    # Derived sizes ---------------------------------------------------------------------------
    @property
    def q_size(self) -> int:
        """Output width of the Q projection (``n_h · d_h``)."""
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Output width of the K (and of the V) projection (``n_kv · d_h``)."""
        return self.num_kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        """Whether the MLP is a mixture of experts."""
        return self.num_experts > 1

    @property
    def is_latent_attention(self) -> bool:
        """Whether attention is multi-head latent attention (MLA)."""
        return self.kv_lora_rank > 0

    @property
    def value_head_dim(self) -> int:
        """Width of one head's value (``head_dim`` but under MLA)."""
        return self.v_head_dim or self.head_dim

    @property
    def latent_width(self) -> int:
        """What MLA caches per token and layer: the KV latent and the shared RoPE key."""
        return self.kv_lora_rank + self.rope_head_dim

    @property
    def replicated_attention_params_per_layer(self) -> int:
        """Attention weights every GPU holds whole under TP: MLA's down-projections."""
        if not self.is_latent_attention:
            return 0
        return self.hidden_size * (self.q_lora_rank + self.latent_width)

    @property
    def attention_params_per_layer(self) -> int:
        """Q, K, V and output projection weights (and biases) of one layer, and its sinks.

        Under MLA: the query projection (through the ``q_lora_rank`` latent where there is one),
        the down-projection of the KV latent and of the shared RoPE key, the up-projection of each
        head's key (its unrotated part) and value from the latent, and the output projection.
        """
        h = self.hidden_size
        if self.is_latent_attention:
            query = self.q_lora_rank * (h + self.q_size) if self.q_lora_rank else h * self.q_size
            up = (
                self.kv_lora_rank
                * self.num_heads
                * (self.head_dim - self.rope_head_dim + self.v_head_dim)
            )
            return query + h * self.latent_width + up + self.num_heads * self.v_head_dim * h
        params = h * self.q_size + 2 * h * self.kv_size + self.q_size * h
        if self.qkv_bias:
            params += self.q_size + 2 * self.kv_size
        if self.dense_bias:
            params += h
        if self.attention_sinks:
            params += self.num_heads
        return params

    @property
    def mlp_params_per_expert(self) -> int:
        """Weights of one expert's MLP (the whole MLP for dense models)."""
        h, i = self.hidden_size, self.intermediate_size
        matrices = 3 if self.mlp == "gated" else 2
        params = matrices * h * i
        if self.dense_bias:
            params += (matrices - 1) * i + h
        return params

    @property
    def shared_expert_params(self) -> int:
        """Weights of a layer's shared experts (0 without them)."""
        return self.shared_experts * self.mlp_params_per_expert

    @property
    def dense_mlp_params(self) -> int:
        """Weights of the MLP of one of the dense first layers (0 without them)."""
        return 3 * self.hidden_size * self.dense_intermediate_size if self.dense_layers else 0

    @property
    def expert_layers(self) -> int:
        """Layers whose MLP is the mixture of experts (all of a dense model's: its one MLP)."""
        return self.num_layers - self.dense_layers

    @property
    def router_params_per_layer(self) -> int:
        """MoE router weights (and bias) of one layer (0 for dense models)."""
        if not self.is_moe:
            return 0
        return (self.hidden_size + self.router_bias) * self.num_experts

    @property
    def norm_params_per_layer(self) -> int:
        """Normalisation weights of one layer (a LayerNorm has a bias too: BLOOM, StarCoder2)."""
        per_norm = 2 * self.hidden_size if self.family in LAYERNORM_FAMILIES else self.hidden_size
        qk_norm = {"none": 0, "head": 2 * self.head_dim, "full": self.q_size + self.kv_size}
        latent_norms = self.q_lora_rank + self.kv_lora_rank  # MLA's RMSNorms of its latents
        block_norms = 1 if self.parallel_block == "shared_norm" else 2
        return (
            block_norms * self.norms_per_sublayer * per_norm + qk_norm[self.qk_norm] + latent_norms
        )

    @property
    def params_per_layer(self) -> int:
        """All weights of one transformer layer whose MLP is the mixture of experts."""
        return (
            self.attention_params_per_layer
            + self.num_experts * self.mlp_params_per_expert
            + self.shared_expert_params
            + self.router_params_per_layer
            + self.norm_params_per_layer
        )

    @property
    def active_params_per_layer(self) -> int:
        """Weights one token multiplies with in such a layer (top-k and shared experts only)."""
        return (
            self.attention_params_per_layer
            + self.experts_per_token * self.mlp_params_per_expert
            + self.shared_expert_params
            + self.router_params_per_layer
            + self.norm_params_per_layer
        )

    @property
    def layer_params(self) -> int:
        """Weights of all transformer layers, the dense first ones included."""
        dense_layer = self.attention_params_per_layer + self.norm_params_per_layer
        return self.expert_layers * self.params_per_layer + self.dense_layers * (
            dense_layer + self.dense_mlp_params
        )

    @property
    def embedding_params(self) -> int:
        """Token embedding (plus the untied LM head)."""
        per_matrix = self.vocab_size * self.hidden_size
        return per_matrix if self.tied_embeddings else 2 * per_matrix

    @property
    def non_embedding_params(self) -> int:
        """Transformer-layer weights plus the norms outside them: the usual 'non-embedding' count.

        BLOOM has a LayerNorm (weight and bias) right after its embedding as well as the final
        one; a LayerNorm family's final norm has a bias.
        """
        final_norm = 2 * self.hidden_size if self.family in LAYERNORM_FAMILIES else self.hidden_size
        if self.family == "bloom":
            final_norm *= 2
        return self.layer_params + final_norm

    @property
    def total_params(self) -> int:
        """All weights the engine loads."""
        return self.non_embedding_params + self.embedding_params

    # Parallelism -----------------------------------------------------------------------------
    def check_tensor_parallel(self, tp: int) -> None:
        """Raise unless tensor parallelism of degree ``tp`` can shard this model.

        Query heads must split evenly; KV heads must split evenly or be replicated whole (vLLM's
        rule: ``n_kv % tp == 0`` or ``tp % n_kv == 0``).

        Raises:
            InfeasibleConfigError: When ``tp`` does not fit the head counts.
        """
        if tp < 1:
            raise InfeasibleConfigError(f"tensor parallelism must be ≥ 1, got {tp}")
        if self.num_heads % tp:
            raise InfeasibleConfigError(
                f"{self.name}: TP {tp} does not divide its {self.num_heads} attention heads"
            )
        if self.num_kv_heads % tp and tp % self.num_kv_heads:
            raise InfeasibleConfigError(
                f"{self.name}: TP {tp} neither divides nor is a multiple of its "
                f"{self.num_kv_heads} KV heads"
            )

    def with_depth(self, num_layers: int) -> Architecture:
        """A copy with ``num_layers`` layers, windowed in the same share where layers are listed.

        Raises:
            UnsupportedArchitectureError: When ``num_layers`` is not positive.
        """
        changes: dict[str, Any] = {"num_layers": num_layers}
        if self.dense_layers and num_layers > 0:
            dense = self.dense_layers
            if self.family in INTERLEAVED_DENSE_LAYERS:
                dense = round(dense * num_layers / self.num_layers)
            # Keep at least one layer of experts; a single layer keeps no dense one.
            dense = min(dense, num_layers - 1)
            changes["dense_layers"] = dense
            if not dense:
                changes["dense_intermediate_size"] = 0
        if self.family in WINDOWED_LAYERS_LISTED and num_layers > 0:
            windowed = round(self.sliding_window_layer_fraction * num_layers)
            changes["sliding_window_layer_fraction"] = windowed / num_layers
            if not windowed:
                changes["sliding_window"] = None
        return self.replace(**changes)

    def kv_heads_per_gpu(self, tp: int) -> int:
        """KV heads each GPU holds under TP (replicated when ``tp > num_kv_heads``)."""
        return max(1, self.num_kv_heads // tp)

    def kv_cache_elements_per_token(self, tp: int) -> int:
        """KV-cache elements one GPU stores per token and layer under TP of degree ``tp``.

        A key and a value per KV head on the GPU; under MLA the latent and the RoPE key, which
        every GPU of the group caches whole.
        """
        if self.is_latent_attention:
            return self.latent_width
        return 2 * self.kv_heads_per_gpu(tp) * self.head_dim

    def replace(self, **changes: Any) -> Architecture:
        """A copy with some fields changed (validated like a new instance)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields that make the shape, for hashing into point keys.

        Every field but the name (a perturbed copy of a catalog model with the same shape is the
        same measurement); a field of :data:`LATER_FIELD_DEFAULTS` only where it differs from
        the value the shapes stored before it have.
        """
        identity = self.to_dict()
        identity.pop("name")
        for key, before in LATER_FIELD_DEFAULTS.items():
            if identity[key] == before:
                del identity[key]
        return identity
