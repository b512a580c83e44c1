"""Reading Hugging Face config.json files of every supported family."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from featurize import catalog_models, load_hf_config, resolve_architecture, to_hf_config
from llmco2.errors import ConfigFileError, UnsupportedArchitectureError

# Abridged copies of public config.json files (the keys the featurizer reads, plus noise).
CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "hidden_act": "silu",
        "rope_theta": 500000.0,
        "torch_dtype": "bfloat16",
    },
    "mistral": {
        "model_type": "mistral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
        "hidden_act": "silu",
    },
    "qwen2": {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "sliding_window": 131072,
        "use_sliding_window": False,
        "hidden_act": "silu",
    },
    "qwen3": {
        "model_type": "qwen3",
        "hidden_size": 2560,
        "intermediate_size": 9728,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "sliding_window": None,
        "use_sliding_window": False,
        "max_window_layers": 36,
        "hidden_act": "silu",
    },
    # Phi-3-mini-4k-instruct: one window for every layer.
    "phi3": {
        "model_type": "phi3",
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32064,
        "sliding_window": 2047,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
    },
    "olmo2": {
        "model_type": "olmo2",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 100352,
        "attention_bias": False,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
    },
    "granite": {
        "model_type": "granite",
        "hidden_size": 4096,
        "intermediate_size": 12800,
        "num_hidden_layers": 40,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 49155,
        "attention_bias": False,
        "mlp_bias": False,
        "embedding_multiplier": 12.0,
        "residual_multiplier": 0.22,
        "attention_multiplier": 0.0078125,
        "logits_scaling": 16.0,
        "tie_word_embeddings": True,
    },
    "gemma": {
        "model_type": "gemma",
        "hidden_size": 2048,
        "intermediate_size": 16384,
        "num_hidden_layers": 18,
        "num_attention_heads": 8,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "vocab_size": 256000,
        "hidden_act": "gelu",
    },
    "gemma2": {
        "model_type": "gemma2",
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "vocab_size": 256000,
        "hidden_activation": "gelu_pytorch_tanh",
        "sliding_window": 4096,
    },
    "bloom": {
        "model_type": "bloom",
        "hidden_size": 2560,
        "n_layer": 30,
        "n_head": 32,
        "vocab_size": 250880,
        "layer_norm_epsilon": 1e-5,
    },
    # Qwen/Qwen3-30B-A3B: every layer a mixture of experts, the dense intermediate_size unused.
    "qwen3_moe": {
        "model_type": "qwen3_moe",
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "moe_intermediate_size": 768,
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "vocab_size": 151936,
        "sliding_window": None,
        "use_sliding_window": False,
    },
    # google/gemma-3-1b-it: no layer_types, so every sixth layer is global.
    "gemma3_text": {
        "model_type": "gemma3_text",
        "hidden_size": 1152,
        "intermediate_size": 6912,
        "num_hidden_layers": 26,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "sliding_window": 512,
        "sliding_window_pattern": 6,
        "query_pre_attn_scalar": 256,
        "final_logit_softcapping": None,
        "vocab_size": 262144,
    },
    # bigcode/starcoder2-7b: no tie_word_embeddings key (tied by default).
    "starcoder2": {
        "model_type": "starcoder2",
        "hidden_size": 4608,
        "intermediate_size": 18432,
        "num_hidden_layers": 32,
        "num_attention_heads": 36,
        "num_key_value_heads": 4,
        "hidden_act": "gelu_pytorch_tanh",
        "norm_type": "layer_norm",
        "sliding_window": 4096,
        "use_bias": True,
        "vocab_size": 49152,
    },
    # openai/gpt-oss-20b: layer_types alternate, starting windowed.
    "gpt_oss": {
        "model_type": "gpt_oss",
        "hidden_size": 2880,
        "intermediate_size": 2880,
        "num_hidden_layers": 24,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "num_local_experts": 32,
        "num_experts_per_tok": 4,
        "layer_types": ["sliding_attention", "full_attention"] * 12,
        "sliding_window": 128,
        "attention_bias": True,
        "vocab_size": 201088,
        "quantization_config": {"quant_method": "mxfp4"},
    },
    # deepseek-ai/DeepSeek-V2-Lite: queries straight from the hidden state, one dense layer.
    "deepseek_v2": {
        "model_type": "deepseek_v2",
        "hidden_size": 2048,
        "intermediate_size": 10944,
        "moe_intermediate_size": 1408,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "n_routed_experts": 64,
        "n_shared_experts": 2,
        "num_experts_per_tok": 6,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "kv_lora_rank": 512,
        "q_lora_rank": None,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "vocab_size": 102400,
        "topk_method": "greedy",
        "rope_scaling": {"type": "yarn", "factor": 40},
    },
    # DeepSeek-V3 as a config that leaves the MLA and expert widths to DeepseekV3Config.
    "deepseek_v3": {
        "model_type": "deepseek_v3",
        "hidden_size": 7168,
        "intermediate_size": 18432,
        "num_hidden_layers": 61,
        "num_attention_heads": 128,
        "vocab_size": 129280,
        "quantization_config": {"quant_method": "fp8"},
    },
    # tiiuae/falcon-7b: FalconConfig's defaults are its shape.
    "falcon": {
        "model_type": "falcon",
        "hidden_size": 4544,
        "n_head": 71,
        "n_layer": 32,
        "multi_query": True,
        "parallel_attn": True,
        "bias": False,
        "vocab_size": 65024,
    },
    # meta-llama/Llama-4-Scout-17B-16E's text model, as Llama4TextConfig's defaults make it.
    "llama4_text": {
        "model_type": "llama4_text",
        "hidden_size": 5120,
        "num_hidden_layers": 48,
        "num_local_experts": 16,
        "interleave_moe_layer_step": 1,
        "no_rope_layers": [1, 1, 1, 0] * 12,
    },
    "mixtral": {
        "model_type": "mixtral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "sliding_window": None,
    },
}


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_each_family_reads_with_its_defaults(tmp_path: Path, family: str) -> None:
    arch = load_hf_config(write(tmp_path, CONFIGS[family]))
    assert arch.family == family
    if family == "llama":
        assert (arch.head_dim, arch.num_kv_heads, arch.tied_embeddings) == (128, 8, False)
    if family == "mistral":
        assert arch.sliding_window == 4096  # MistralConfig's default window
    if family == "qwen2":
        assert arch.qkv_bias and arch.tied_embeddings and arch.sliding_window is None
    qk_norms = {"qwen3": "head", "qwen3_moe": "head", "gemma3_text": "head", "olmo2": "full"}
    assert arch.qk_norm == qk_norms.get(family, "none")
    if family == "qwen3":
        # Qwen3Config: head_dim 128 whatever the width, no Q/K/V biases.
        assert (arch.head_dim, arch.qkv_bias) == (128, False)
    if family == "olmo2":
        assert arch.sliding_window is None
    if family == "qwen3_moe":
        # One expert's width is moe_intermediate_size; the window is off without the flag.
        assert (arch.num_experts, arch.experts_per_token, arch.intermediate_size) == (128, 8, 768)
        assert arch.sliding_window is None and not arch.tied_embeddings
    if family == "gemma3_text":
        # 26 layers, the 6th, 12th, 18th and 24th global: 22 windowed; tied, pre and post norms.
        assert (arch.sliding_window, arch.sliding_window_layer_fraction) == (512, 22 / 26)
        assert arch.tied_embeddings and arch.norms_per_sublayer == 2
    if family == "phi3":
        assert (arch.sliding_window, arch.sliding_window_layer_fraction) == (2047, 1.0)
    if family == "granite":
        assert arch.tied_embeddings and not arch.qkv_bias and not arch.dense_bias
    if family == "gemma":
        assert arch.tied_embeddings and arch.activation == "gelu" and arch.head_dim == 256
    if family == "gemma2":
        assert arch.sliding_window_layer_fraction == 0.5 and arch.norms_per_sublayer == 2
    if family == "bloom":
        assert arch.intermediate_size == 4 * 2560 and arch.mlp == "plain" and arch.dense_bias
    if family == "mixtral":
        assert (arch.num_experts, arch.experts_per_token) == (8, 2)
    if family == "gpt_oss":
        assert (arch.num_experts, arch.experts_per_token, arch.sliding_window) == (32, 4, 128)
        assert arch.sliding_window_layer_fraction == 0.5 and arch.qkv_bias and arch.dense_bias
        assert arch.attention_sinks and arch.router_bias and not arch.tied_embeddings
    else:
        assert not (arch.attention_sinks or arch.router_bias)
    if family.startswith("deepseek"):
        assert arch.is_latent_attention and arch.num_kv_heads == arch.num_heads
        assert (arch.head_dim, arch.rope_head_dim, arch.v_head_dim) == (192, 64, 128)
        assert arch.kv_cache_elements_per_token(tp=8) == 512 + 64  # whole on every GPU
        catalog = {"deepseek_v2": "deepseek-v2-lite", "deepseek_v3": "deepseek-v3"}[family]
        assert arch.replace(name="x") == resolve_architecture(catalog).replace(name="x")
    if family == "deepseek_v2":
        assert (arch.q_lora_rank, arch.shared_experts, arch.dense_layers) == (0, 2, 1)
        assert (arch.num_experts, arch.experts_per_token) == (64, 6)
    if family == "deepseek_v3":
        assert (arch.q_lora_rank, arch.dense_layers, arch.dense_intermediate_size) == (
            1536, 3, 18432,
        )  # fmt: skip
    if family == "llama4_text":
        assert (arch.num_experts, arch.shared_experts, arch.dense_layers) == (16, 1, 0)
        assert (arch.sliding_window, arch.sliding_window_layer_fraction) == (8192, 0.75)
        assert arch.replace(name="x") == resolve_architecture("llama-4-scout").replace(name="x")
    if family == "falcon":
        assert (arch.num_kv_heads, arch.parallel_block, arch.intermediate_size) == (
            1, "shared_norm", 4 * 4544,
        )  # fmt: skip
        assert arch.mlp == "plain" and arch.tied_embeddings and not arch.qkv_bias
        assert arch.replace(name="x") == resolve_architecture("falcon-7b").replace(name="x")
    if family == "starcoder2":
        assert arch.mlp == "plain" and arch.qkv_bias and arch.dense_bias and arch.tied_embeddings
        assert (arch.sliding_window, arch.sliding_window_layer_fraction) == (4096, 1.0)


def test_a_multimodal_gemma3_reads_as_its_language_model_with_the_text_defaults(
    tmp_path: Path,
) -> None:
    # google/gemma-3-4b-it states only these in text_config; Gemma3TextConfig has the rest.
    config = {
        "model_type": "gemma3",
        "architectures": ["Gemma3ForConditionalGeneration"],
        "text_config": {"model_type": "gemma3_text", "hidden_size": 2560,
                        "intermediate_size": 10240, "num_hidden_layers": 34,
                        "sliding_window": 1024},
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152},
    }  # fmt: skip
    arch = load_hf_config(write(tmp_path, config))
    assert arch.family == "gemma3_text"
    heads = (arch.num_heads, arch.num_kv_heads, arch.head_dim)
    assert heads == (8, 4, 256) and arch.vocab_size == 262208
    assert arch.sliding_window_layer_fraction == (34 - 34 // 6) / 34
    assert arch.replace(name="x") == resolve_architecture("gemma-3-4b").replace(name="x")
    with pytest.raises(ConfigFileError, match="text_config"):
        load_hf_config(write(tmp_path, {"model_type": "gemma3"}))


def test_gemma3_layer_types_count_the_windowed_layers(tmp_path: Path) -> None:
    types = ["sliding_attention", "full_attention"] * 13
    arch = load_hf_config(write(tmp_path, dict(CONFIGS["gemma3_text"], layer_types=types)))
    assert arch.sliding_window_layer_fraction == 0.5
    everywhere = ["full_attention"] * 26
    arch = load_hf_config(write(tmp_path, dict(CONFIGS["gemma3_text"], layer_types=everywhere)))
    assert (arch.sliding_window, arch.sliding_window_layer_fraction) == (None, 0.0)
    for bad in (types[:-1], ["local"] * 26, "sliding_attention"):
        with pytest.raises(ConfigFileError, match="layer_types"):
            load_hf_config(write(tmp_path, dict(CONFIGS["gemma3_text"], layer_types=bad)))


def test_gemma3_depth_changes_keep_its_windowed_share_whole(tmp_path: Path) -> None:
    gemma = resolve_architecture("gemma-3-1b")
    deeper = gemma.with_depth(31)
    assert deeper.sliding_window_layer_fraction == 26 / 31  # round(22 / 26 · 31) layers
    assert load_hf_config(write(tmp_path, to_hf_config(deeper))).replace(name=gemma.name) == deeper
    with pytest.raises(UnsupportedArchitectureError, match="windows whole layers"):
        gemma.replace(num_layers=31)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"mlp_only_layers": [0, 1]}, "dense MLP layers"),
     ({"decoder_sparse_step": 2}, "dense MLP layers"),
     ({"attention_bias": True}, "attention_bias")],
)  # fmt: skip
def test_qwen3_moe_shapes_the_architecture_cannot_state_are_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnsupportedArchitectureError, match=message):
        load_hf_config(write(tmp_path, dict(CONFIGS["qwen3_moe"], **changes)))


def test_gpt_oss_without_attention_biases_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArchitectureError, match="attention_bias false"):
        load_hf_config(write(tmp_path, dict(CONFIGS["gpt_oss"], attention_bias=False)))


def test_sinks_and_a_router_bias_belong_to_gpt_oss_alone() -> None:
    gpt_oss = resolve_architecture("gpt-oss-20b")
    with pytest.raises(UnsupportedArchitectureError, match="attention sinks and a router bias"):
        gpt_oss.replace(attention_sinks=False)
    with pytest.raises(UnsupportedArchitectureError, match="no sinks or router bias"):
        resolve_architecture("mixtral-8x7b").replace(router_bias=True)
    # Fields added later: shapes stored before them keep their identity.
    assert "router_bias" not in resolve_architecture("mixtral-8x7b").identity()
    assert gpt_oss.identity()["attention_sinks"] is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"moe_layer_freq": 2}, "moe_layer_freq"),
        ({"attention_bias": True}, "attention_bias"),
        ({"qk_rope_head_dim": 0}, "rope_head_dim"),
        ({"first_k_dense_replace": 27}, "none of its"),
        ({"kv_lora_rank": "512"}, "kv_lora_rank must be an integer"),
    ],
)
def test_deepseek_shapes_the_architecture_cannot_state_are_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises((UnsupportedArchitectureError, ConfigFileError), match=message):
        load_hf_config(write(tmp_path, dict(CONFIGS["deepseek_v2"], **changes)))


def test_latent_attention_fields_belong_to_deepseek_alone() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="no latent attention"):
        resolve_architecture("llama3.1-8b").replace(kv_lora_rank=512)
    with pytest.raises(UnsupportedArchitectureError, match="need a mixture of experts"):
        resolve_architecture("llama3.1-8b").replace(shared_experts=1)
    lite = resolve_architecture("deepseek-v2-lite")
    with pytest.raises(UnsupportedArchitectureError, match="num_kv_heads must equal"):
        lite.replace(num_kv_heads=8)
    # Fewer layers than dense ones keep one layer of experts.
    assert lite.with_depth(1).dense_layers == 0 and lite.with_depth(1).dense_intermediate_size == 0
    assert lite.with_depth(2).dense_layers == 1
    # Shapes stored before the fields existed keep their identity.
    assert "kv_lora_rank" not in resolve_architecture("mixtral-8x7b").identity()
    assert lite.identity()["kv_lora_rank"] == 512


def test_directory_with_config_json_and_catalog_shapes_match(tmp_path: Path) -> None:
    write(tmp_path, CONFIGS["llama"])
    from_dir = resolve_architecture(str(tmp_path))
    assert from_dir.replace(name="x") == resolve_architecture("llama3.1-8b").replace(name="x")


@pytest.mark.parametrize("entry", catalog_models(), ids=lambda e: e.id)
def test_written_config_reads_back_to_the_same_architecture(tmp_path: Path, entry: Any) -> None:
    arch = entry.architecture
    back = load_hf_config(write(tmp_path, to_hf_config(arch)))
    assert back.replace(name=arch.name) == arch


def test_perturbed_architecture_round_trips(tmp_path: Path) -> None:
    arch = resolve_architecture("qwen2-7b").replace(
        name="perturbed", num_layers=29, hidden_size=3712
    )
    assert load_hf_config(write(tmp_path, to_hf_config(arch))).replace(name="perturbed") == arch


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read model config"):
        load_hf_config(tmp_path / "missing.json")


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama",')
    with pytest.raises(ConfigFileError, match="not valid JSON"):
        load_hf_config(path)


def test_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="JSON object"):
        load_hf_config(write(tmp_path, [1, 2]))  # type: ignore[arg-type]


def test_unsupported_family(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArchitectureError, match="gpt2"):
        load_hf_config(write(tmp_path, {"model_type": "gpt2"}))


def test_missing_key(tmp_path: Path) -> None:
    config = dict(CONFIGS["llama"])
    del config["num_hidden_layers"]
    with pytest.raises(ConfigFileError, match="missing num_hidden_layers"):
        load_hf_config(write(tmp_path, config))


def test_inconsistent_heads(tmp_path: Path) -> None:
    config = dict(CONFIGS["llama"], num_key_value_heads=5)
    with pytest.raises(UnsupportedArchitectureError, match="not a multiple"):
        load_hf_config(write(tmp_path, config))


def test_deepseek_v3_engines_route_without_the_correction_bias() -> None:
    # With dummy weights the bias of noaux_tc routing would outweigh every token's scores and
    # send all tokens to the same experts; a softmax top-k spreads them as trained routers do.
    config = to_hf_config(resolve_architecture("deepseek-v3"))
    assert (config["topk_method"], config["scoring_func"]) == ("greedy", "softmax")
    assert config["n_group"] == config["topk_group"] == 1


@pytest.mark.parametrize(
    ("changes", "kv_heads", "block"),
    [
        ({"new_decoder_architecture": True, "n_head": 64, "num_kv_heads": 8}, 8, "own_norms"),
        ({"new_decoder_architecture": True, "n_head": 64, "num_kv_heads": 8,
          "num_ln_in_parallel_attn": 1}, 8, "shared_norm"),
        ({"multi_query": False, "parallel_attn": False}, 71, "none"),
    ],
)  # fmt: skip
def test_falcon_layouts_read_and_write_back(
    tmp_path: Path, changes: dict[str, Any], kv_heads: int, block: str
) -> None:
    arch = load_hf_config(write(tmp_path, dict(CONFIGS["falcon"], **changes)))
    assert (arch.num_kv_heads, arch.parallel_block) == (kv_heads, block)
    back = load_hf_config(write(tmp_path, to_hf_config(arch)))
    assert back == arch.replace(name=back.name)
    with pytest.raises(UnsupportedArchitectureError, match="ALiBi"):
        load_hf_config(write(tmp_path, dict(CONFIGS["falcon"], alibi=True)))
    with pytest.raises(UnsupportedArchitectureError, match="one after the other"):
        resolve_architecture("llama3.1-8b").replace(parallel_block="shared_norm")


def test_llama4_layouts_read_from_their_configs(tmp_path: Path) -> None:
    # Maverick: experts on every other layer, the dense ones between them.
    maverick = dict(CONFIGS["llama4_text"], num_local_experts=128, interleave_moe_layer_step=2)
    arch = load_hf_config(write(tmp_path, maverick))
    assert (arch.num_experts, arch.dense_layers, arch.dense_intermediate_size) == (128, 24, 16384)
    assert arch.replace(name="x") == resolve_architecture("llama-4-maverick").replace(name="x")
    assert arch.with_depth(12).dense_layers == 6  # a shallower copy keeps the share
    # A multimodal release is read as its language model.
    multimodal = {"model_type": "llama4", "text_config": CONFIGS["llama4_text"],
                  "vision_config": {"hidden_size": 1408}}  # fmt: skip
    assert load_hf_config(write(tmp_path, multimodal)).num_experts == 16
    # A step of 0 makes a dense model (MobileLLM-R1 is one), its MLP intermediate_size_mlp wide.
    dense = dict(CONFIGS["llama4_text"], interleave_moe_layer_step=0, intermediate_size_mlp=6144)
    arch = load_hf_config(write(tmp_path, dense))
    assert (arch.num_experts, arch.intermediate_size, arch.shared_experts) == (1, 6144, 0)
    assert load_hf_config(write(tmp_path, to_hf_config(arch))) == arch.replace(
        name=str(tmp_path / "config.json")
    )
    with pytest.raises(ConfigFileError, match="moe_layers"):
        load_hf_config(write(tmp_path, dict(CONFIGS["llama4_text"], moe_layers=[48])))
    with pytest.raises(UnsupportedArchitectureError, match="attention_bias"):
        load_hf_config(write(tmp_path, dict(CONFIGS["llama4_text"], attention_bias=True)))
