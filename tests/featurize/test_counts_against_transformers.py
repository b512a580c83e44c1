"""The featurizer's counts against an independent count: transformers' own models.

For each supported family a small shape of it is built by ``transformers`` from the config.json
the workers would hand to an engine. Its parameters are counted with ``sum(p.numel())``, and the
FLOPs of a prefill and of one decode step with ``torch.utils.flop_counter.FlopCounterMode``,
which counts every matrix product the model runs. Both are compared with the featurizer's totals
(TP 1, eager attention, so that the whole score matrix is computed as the featurizer's
non-flash kernels assume):

* parameters: exact;
* linear FLOPs (projections, router, experts, LM head): within 1 %, the featurizer also counting
  the bias additions (``T·d_out`` against ``2·T·d_in·d_out``) that the counter leaves out;
* attention FLOPs (``QKᵀ`` and ``SV`` products): exact.

Multi-head latent attention (DeepSeek V2/V3) differs in decode, each way by a stated amount:
transformers caches the latent and projects the whole context's keys and values up from it at
every step (``2·B·(L+1)·r·n_h·(d_nope + d_v)`` per layer), where vLLM (and the featurizer)
absorbs that projection into the new token's query and output (the same weights, ``2·B·r·n_h·
(d_nope + d_v)``); and it attends per head with ``d_qk + d_v`` wide products, where the absorbed
form attends over the latent, ``(r + d_rope) + r`` wide.

Llama 4's experts in transformers multiply every token by every expert (batched products whose
routing weights are zero for the unrouted), where an engine runs each token's top-k: the
counter sees ``E`` experts' ``2·T·3·h·i`` as batched products, the featurizer ``k`` of them as
linear ones.

The same architectures at full size are built on the meta device (no memory) for the parameter
count of the catalog models.
"""

from __future__ import annotations

from typing import Any

import pytest

from featurize import Architecture, kernel_counts, resolve_architecture, to_hf_config
from featurize.architecture import SUPPORTED_FAMILIES
from featurize.kernels import KERNEL_INDEX, QUANTITIES, KernelType, Phase
from tests.conftest import PointFactory

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
flop_counter = pytest.importorskip("torch.utils.flop_counter")

LINEAR_KERNELS = (
    KernelType.Q_PROJ, KernelType.K_PROJ, KernelType.V_PROJ, KernelType.OUT_PROJ,
    KernelType.ROUTER, KernelType.GATE_PROJ, KernelType.UP_PROJ, KernelType.DOWN_PROJ,
    KernelType.LM_HEAD,
)  # fmt: skip
ATTENTION_KERNELS = (KernelType.MATMUL_QK, KernelType.MATMUL_SV)
LINEAR_TOLERANCE = 0.01

#: One small shape per family: the kernels of the full-size models, at a size a CPU runs in ms.
SMALL: dict[str, dict[str, Any]] = {
    "llama": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32},
    "mistral": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "sliding_window": 4096,
                "sliding_window_layer_fraction": 1.0},
    "qwen2": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "qkv_bias": True,
              "tied_embeddings": True},
    "qwen3": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 64, "qk_norm": "head",
              "tied_embeddings": True},
    # Phi3Config's pad and end tokens are 32000: the vocabulary must hold them.
    "phi3": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "sliding_window": 2047,
             "sliding_window_layer_fraction": 1.0, "vocab_size": 32064},
    "olmo2": {"num_heads": 4, "num_kv_heads": 4, "head_dim": 32, "qk_norm": "full"},
    "granite": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "tied_embeddings": True},
    "gemma": {"num_heads": 4, "num_kv_heads": 1, "head_dim": 64, "activation": "gelu_tanh",
              "tied_embeddings": True},
    "gemma2": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 64, "activation": "gelu_tanh",
               "tied_embeddings": True, "sliding_window": 4096,
               "sliding_window_layer_fraction": 0.5, "norms_per_sublayer": 2},
    "mixtral": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "num_experts": 4,
                "experts_per_token": 2},
    "qwen3_moe": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 64, "qk_norm": "head",
                  "num_experts": 8, "experts_per_token": 2, "intermediate_size": 96},
    # Three layers, two of them windowed (window 8 < the 24-token prompt: the mask matters only
    # under flash, and the counter's eager attention computes every score).
    "gemma3_text": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 64, "qk_norm": "head",
                    "activation": "gelu_tanh", "tied_embeddings": True, "num_layers": 3,
                    "sliding_window": 8, "sliding_window_layer_fraction": 2 / 3,
                    "norms_per_sublayer": 2},
    "starcoder2": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "mlp": "plain",
                   "activation": "gelu_tanh", "tied_embeddings": True, "qkv_bias": True,
                   "dense_bias": True, "sliding_window": 4096,
                   "sliding_window_layer_fraction": 1.0},
    # Four layers, two windowed at 8 tokens; biased experts and router, attention sinks.
    "gpt_oss": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "num_experts": 4,
                "experts_per_token": 2, "num_layers": 4, "sliding_window": 8,
                "sliding_window_layer_fraction": 0.5, "qkv_bias": True, "dense_bias": True,
                "attention_sinks": True, "router_bias": True},
    # Three layers, the first dense; 8 routed experts top-2 and 2 shared; queries straight from
    # the hidden state (V2-Lite) or through a latent (V3).
    "deepseek_v2": {"num_heads": 4, "num_kv_heads": 4, "head_dim": 48, "rope_head_dim": 16,
                    "v_head_dim": 32, "kv_lora_rank": 64, "num_layers": 3, "num_experts": 8,
                    "experts_per_token": 2, "intermediate_size": 96, "shared_experts": 2,
                    "dense_layers": 1, "dense_intermediate_size": 256},
    "deepseek_v3": {"num_heads": 4, "num_kv_heads": 4, "head_dim": 48, "rope_head_dim": 16,
                    "v_head_dim": 32, "kv_lora_rank": 64, "q_lora_rank": 80, "num_layers": 3,
                    "num_experts": 8, "experts_per_token": 2, "intermediate_size": 96,
                    "shared_experts": 1, "dense_layers": 1, "dense_intermediate_size": 256},
    # Falcon-7B's layout: one KV head, attention beside the MLP behind one LayerNorm.
    "falcon": {"num_heads": 4, "num_kv_heads": 1, "head_dim": 32, "intermediate_size": 512,
               "mlp": "plain", "activation": "gelu", "tied_embeddings": True,
               "parallel_block": "shared_norm"},
    # Four layers, one dense between expert layers; 4 experts top-1 and a shared one; chunked
    # attention (8 tokens) on three layers.
    "llama4_text": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "num_layers": 4,
                    "num_experts": 4, "experts_per_token": 1, "intermediate_size": 96,
                    "shared_experts": 1, "dense_layers": 1, "dense_intermediate_size": 256,
                    "sliding_window": 8, "sliding_window_layer_fraction": 0.75},
    "bloom": {"num_heads": 4, "num_kv_heads": 4, "head_dim": 32, "intermediate_size": 512,
              "mlp": "plain", "activation": "gelu_tanh", "tied_embeddings": True,
              "qkv_bias": True, "dense_bias": True, "position": "alibi"},
}  # fmt: skip


def small_architecture(family: str) -> Architecture:
    fields: dict[str, Any] = {
        "name": f"small-{family}", "family": family, "hidden_size": 128,
        "intermediate_size": 384, "num_layers": 2, "vocab_size": 1000,
    }  # fmt: skip
    return Architecture(**{**fields, **SMALL[family]})


def hf_model(arch: Architecture, device: str = "cpu") -> Any:
    config = to_hf_config(arch)
    model_type = config.pop("model_type")
    config.pop("architectures")
    hf_config = transformers.AutoConfig.for_model(model_type, **config)
    # Eager experts: a loop of one product per expert over its routed tokens, which the counter
    # sees (the grouped kernels have no FLOP formula in it).
    experts = {"experts_implementation": "eager"} if arch.is_moe else {}
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(
            hf_config, attn_implementation="eager", **experts
        )
    return model.eval()


def counted_flops(step: Any) -> tuple[float, float]:
    """(linear, attention) FLOPs of ``step()``: ``mm``/``addmm`` and ``bmm``/``matmul`` products."""
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False) as counter:
        step()
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    unknown = set(counts) - {"aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm"}
    assert not unknown, f"products the comparison does not sort: {unknown}"
    linear = counts.get("aten.mm", 0) + counts.get("aten.addmm", 0)
    return float(linear), float(counts.get("aten.bmm", 0) + counts.get("aten.baddbmm", 0))


def featurizer_flops(counts: Any, phase: Phase, kernels: tuple[KernelType, ...]) -> float:
    row = counts.values[0, 0 if phase is Phase.PREFILL else 1]
    flops = QUANTITIES.index("flops")
    return float(sum(row[KERNEL_INDEX[k], flops] for k in kernels))


def test_every_supported_family_is_checked() -> None:
    assert set(SMALL) == set(SUPPORTED_FAMILIES)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_parameters_match_transformers(family: str) -> None:
    arch = small_architecture(family)
    model = hf_model(arch, "meta")
    assert sum(p.numel() for p in model.parameters()) == arch.total_params


@pytest.mark.parametrize("family", sorted(SMALL))
def test_prefill_and_decode_flops_match_transformers(family: str, make_point: PointFactory) -> None:
    arch = small_architecture(family)
    torch.manual_seed(0)
    model = hf_model(arch)
    batch, prompt = 2, 24
    ids = torch.randint(0, arch.vocab_size, (batch, prompt))
    state: dict[str, Any] = {}

    def prefill() -> None:
        state["out"] = model(input_ids=ids, use_cache=True, logits_to_keep=1)

    def decode() -> None:
        next_ids = torch.randint(0, arch.vocab_size, (batch, 1))
        model(input_ids=next_ids, past_key_values=state["out"].past_key_values, use_cache=True)

    linear_pre, attention_pre = counted_flops(prefill)
    linear_dec, attention_dec = counted_flops(decode)
    if arch.family == "llama4_text":
        # transformers runs every expert on every token, as batched products.
        expert = 2 * 3 * arch.hidden_size * arch.intermediate_size * arch.expert_layers
        for phase_tokens, name in ((batch * prompt, "pre"), (batch, "dec")):
            every = arch.num_experts * phase_tokens * expert
            routed = arch.experts_per_token * phase_tokens * expert
            if name == "pre":
                attention_pre -= every
                linear_pre += routed
            else:
                attention_dec -= every
                linear_dec += routed
    if arch.is_latent_attention:
        # transformers' decode projects the whole context up from the latent, vLLM absorbs the
        # projection into the new token; and it attends head by head, vLLM over the latent.
        up = (
            arch.kv_lora_rank
            * arch.num_heads
            * (arch.head_dim - arch.rope_head_dim + arch.v_head_dim)
        )
        linear_dec -= 2 * batch * prompt * up * arch.num_layers
        absorbed = 2 * arch.latent_width + 2 * arch.kv_lora_rank
        attention_dec *= absorbed / (2 * arch.head_dim + 2 * arch.v_head_dim)
    # One decode step: two generated tokens (the prefill yields the first).
    point = make_point(arch, tp=1, batch=batch, prompt=prompt, gen=2, flash=False)
    counts = kernel_counts([point])
    for phase, linear, attention in (
        (Phase.PREFILL, linear_pre, attention_pre),
        (Phase.DECODE, linear_dec, attention_dec),
    ):
        ours = featurizer_flops(counts, phase, LINEAR_KERNELS)
        assert ours == pytest.approx(linear, rel=LINEAR_TOLERANCE), (phase, ours, linear)
        assert ours >= linear  # the bias additions, never fewer products
        ours_attention = featurizer_flops(counts, phase, ATTENTION_KERNELS)
        assert ours_attention == pytest.approx(attention, rel=1e-9), (phase, ours_attention)


@pytest.mark.parametrize(
    "name",
    ["qwen3-8b", "qwen3-0.6b", "llama3.1-8b", "qwen2-7b", "phi-3-mini-4k", "phi-3-medium-4k",
     "phi-3.5-mini", "olmo-2-7b", "olmo-2-32b", "granite-3.1-8b", "gemma-2-9b", "mixtral-8x7b",
     "qwen3-30b-a3b", "gemma-3-1b", "gemma-3-4b", "gemma-3-12b", "gemma-3-27b", "starcoder2-7b",
     "gpt-oss-20b", "deepseek-v2-lite", "deepseek-v3", "falcon-7b", "falcon-40b", "falcon-180b",
     "falcon2-11b", "llama-4-scout", "llama-4-maverick"],
)  # fmt: skip
def test_catalog_models_have_transformers_parameter_counts(name: str) -> None:
    arch = resolve_architecture(name)
    model = hf_model(arch, "meta")
    assert sum(p.numel() for p in model.parameters()) == arch.total_params
