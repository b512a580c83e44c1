"""Read a Hugging Face ``config.json`` into an :class:`Architecture`.

The parser is our own rather than ``transformers.AutoConfig``: it needs only the standard library,
answers in microseconds, and fills the defaults of each family's configuration class explicitly
(the ones that matter for cost: tied embeddings, head_dim, biases), so a missing key gives the same
shape transformers and vLLM would build.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featurize.architecture import (
    FIXED_MLP_RATIO,
    LATENT_ATTENTION_FAMILIES,
    QK_NORM_OF_FAMILY,
    SINK_AND_ROUTER_BIAS_FAMILIES,
    SUPPORTED_FAMILIES,
    WINDOWED_LAYERS_LISTED,
    Architecture,
)
from llmco2.errors import ConfigFileError, UnsupportedArchitectureError

# Defaults of the transformers configuration classes for keys a config.json may omit.
_TIED_DEFAULT: dict[str, bool] = {
    "llama": False,
    "mistral": False,
    "qwen2": False,
    "qwen3": False,
    "qwen3_moe": False,
    "phi3": False,
    "olmo2": False,
    "granite": False,
    "mixtral": False,
    "gpt_oss": False,
    "gemma": True,
    "gemma2": True,
    "gemma3_text": True,
    "bloom": True,
    "starcoder2": True,
    "deepseek_v2": False,
    "deepseek_v3": False,
    "falcon": True,
    "llama4_text": False,
}
# transformers' default sliding windows where the key is absent (MistralConfig, Gemma2Config,
# Gemma3TextConfig, GptOssConfig).
_WINDOW_DEFAULT: dict[str, int] = {
    "mistral": 4096,
    "gemma2": 4096,
    "gemma3_text": 4096,
    "gpt_oss": 128,
    "llama4_text": 8192,
}
# Head widths of the configuration classes that do not derive it from hidden_size / heads.
_HEAD_DIM_DEFAULT: dict[str, int] = {
    "gemma": 256,
    "gemma2": 256,
    "gemma3_text": 256,
    "qwen3": 128,
    "gpt_oss": 64,
}
# Gemma3TextConfig's defaults for the keys the text_config of a multimodal Gemma 3 release omits
# (google/gemma-3-4b-it states only its width, depth, MLP and window).
_GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "hidden_activation": "gelu_pytorch_tanh",
}
# Every sixth Gemma 3 layer attends globally, every second gpt-oss one, unless layer_types says
# otherwise.
_GLOBAL_LAYER_EVERY: dict[str, int] = {"gemma3_text": 6, "gpt_oss": 2, "llama4_text": 4}
# Defaults of the configuration classes for the keys that carry a shape, where the family's
# releases rely on them (MixtralConfig, Qwen3MoeConfig, Gemma3TextConfig, GptOssConfig).
_CONFIG_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "mixtral": {"num_local_experts": 8, "num_experts_per_tok": 2},
    "qwen3_moe": {"moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8},
    "gpt_oss": {"num_local_experts": 128, "num_experts_per_tok": 4, "intermediate_size": 2880},
    "gemma3_text": _GEMMA3_TEXT_DEFAULTS,
    # DeepseekV2Config / DeepseekV3Config (V2's num_experts_per_tok defaults to None: required).
    "deepseek_v2": {
        "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64,
        "n_shared_experts": 2, "moe_intermediate_size": 1407, "first_k_dense_replace": 0,
    },
    "deepseek_v3": {
        "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
        "n_shared_experts": 1, "moe_intermediate_size": 2048, "first_k_dense_replace": 3,
        "num_experts_per_tok": 8,
    },
}  # fmt: skip
# The keys of the expert count and of one expert's MLP width, for mixtures of experts.
_EXPERT_KEYS: dict[str, tuple[str, str]] = {
    "mixtral": ("num_local_experts", "intermediate_size"),
    "qwen3_moe": ("num_experts", "moe_intermediate_size"),
    "gpt_oss": ("num_local_experts", "intermediate_size"),
    "deepseek_v2": ("n_routed_experts", "moe_intermediate_size"),
    "deepseek_v3": ("n_routed_experts", "moe_intermediate_size"),
}
# Families whose MLP is up, activation, down (no gate) besides BLOOM.
_PLAIN_MLP = frozenset({"starcoder2"})
# Families with a norm before and after each attention and MLP block.
_PRE_AND_POST_NORMS = frozenset({"gemma2", "gemma3_text"})
#: model_type values read as another family: a multimodal Gemma 3 carries a gemma3_text model
#: as its text_config, which is what serves a text request.
READ_AS: dict[str, str] = {"gemma3": "gemma3_text", "llama4": "llama4_text"}
#: Every model_type a config.json may have.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = (*SUPPORTED_FAMILIES, *READ_AS)
# Families whose Q/K/V projections have biases (and no other projection has).
_QKV_BIAS_ALWAYS = frozenset({"qwen2"})
# Families whose attention_bias puts biases on Q, K, V *and* the output projection but none in the
# MLP, which the architecture does not describe: their released models have none.
_ATTENTION_BIAS_REFUSED = frozenset(
    {"qwen3", "qwen3_moe", "olmo2", "gemma3_text", "deepseek_v2", "deepseek_v3", "llama4_text"}
)
# Families whose configuration classes default to token ids of their released vocabularies.
_TOKEN_IDS_OUTSIDE_SMALL_VOCABULARIES = frozenset(
    {"phi3", "olmo2", "starcoder2", "gpt_oss", "deepseek_v2", "deepseek_v3"}
)
# Families whose window is off unless use_sliding_window says otherwise.
_WINDOW_NEEDS_FLAG = frozenset({"qwen2", "qwen3", "qwen3_moe"})
# Families without sliding-window attention whatever their config carries.
_NO_WINDOW = frozenset({"gemma", "olmo2", "granite", "deepseek_v2", "deepseek_v3", "falcon"})


def _require(config: dict[str, Any], source: str, *keys: str) -> int:
    for key in keys:
        value = config.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigFileError(f"{source}: {key} must be an integer, got {value!r}")
            return value
    raise ConfigFileError(f"{source}: missing {' / '.join(keys)}")


def _activation(config: dict[str, Any]) -> str:
    act = str(config.get("hidden_activation") or config.get("hidden_act") or "silu")
    if act in {"silu", "swish"}:
        return "silu"
    if "tanh" in act or act in ("gelu_new", "gelu_fast", "gelu_pytorch_tanh"):
        return "gelu_tanh"
    if act.startswith("gelu"):
        return "gelu"
    raise UnsupportedArchitectureError(f"activation {act!r} is not supported")


def architecture_from_hf_config(config: dict[str, Any], name: str) -> Architecture:
    """Build an :class:`Architecture` from the parsed contents of a ``config.json``.

    Args:
        config: The JSON object of a Hugging Face model configuration.
        name: The name to give the architecture (usually the file path).

    Returns:
        The architecture, with family defaults applied for omitted keys.

    Raises:
        ConfigFileError: When a required key is missing or has the wrong type.
        UnsupportedArchitectureError: When ``model_type`` is not a supported family.
    """
    family = config.get("model_type")
    if family not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"{name}: model_type {family!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    if family == "gemma3":
        config = _gemma3_language_model(config, name)
        family = "gemma3_text"
    elif family == "llama4":
        config = _language_model(config, name, "llama4_text")
        family = "llama4_text"
    config = {**_CONFIG_CLASS_DEFAULTS.get(family, {}), **config}
    tied = bool(config.get("tie_word_embeddings", _TIED_DEFAULT[family]))
    if family == "bloom":
        hidden = _require(config, name, "hidden_size", "n_embed")
        heads = _require(config, name, "n_head", "num_attention_heads")
        return Architecture(
            name=name,
            family=family,
            hidden_size=hidden,
            intermediate_size=FIXED_MLP_RATIO["bloom"] * hidden,
            num_layers=_require(config, name, "n_layer", "num_hidden_layers"),
            num_heads=heads,
            num_kv_heads=heads,
            head_dim=hidden // heads,
            vocab_size=_require(config, name, "vocab_size"),
            mlp="plain",
            activation="gelu_tanh",  # BloomGelu, not configurable
            tied_embeddings=tied,
            qkv_bias=True,
            dense_bias=True,
            position="alibi",
        )

    if family == "falcon":
        return _falcon(config, name, tied)
    if family == "llama4_text":
        return _llama4(config, name, tied)
    hidden = _require(config, name, "hidden_size")
    heads = _require(config, name, "num_attention_heads")
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or _HEAD_DIM_DEFAULT.get(family) or hidden // heads
    window = config.get("sliding_window", _WINDOW_DEFAULT.get(family))
    if family in _WINDOW_NEEDS_FLAG and not config.get("use_sliding_window", False):
        window = None  # Qwen configs carry a window that is off unless use_sliding_window
    if family in _NO_WINDOW:
        window = None
    if family in _ATTENTION_BIAS_REFUSED and config.get("attention_bias", False):
        raise UnsupportedArchitectureError(
            f"{name}: {family} with attention_bias true is not supported (biases on the output "
            "projection without MLP biases)"
        )
    qkv_bias = family in _QKV_BIAS_ALWAYS
    dense_bias = False
    if family == "gpt_oss":
        # Its experts have biases whatever attention_bias says, which puts them on Q, K, V and
        # the output projection: without them the shape is not one the architecture states.
        if not config.get("attention_bias", True):
            raise UnsupportedArchitectureError(
                f"{name}: gpt_oss with attention_bias false is not supported (biased experts "
                "with unbiased attention projections)"
            )
        qkv_bias = dense_bias = True
    if family == "starcoder2":
        # use_bias puts biases on every projection, the MLP's included (c_fc, c_proj).
        qkv_bias = dense_bias = bool(config.get("use_bias", True))
    if family == "granite":
        # Granite's attention_bias covers Q, K, V and the output projection, mlp_bias the MLP;
        # its embedding/residual/attention/logits multipliers scale values, not counts.
        attention_bias = bool(config.get("attention_bias", False))
        if attention_bias != bool(config.get("mlp_bias", False)):
            raise UnsupportedArchitectureError(
                f"{name}: granite with attention_bias {attention_bias} but mlp_bias "
                f"{not attention_bias} is not supported (both or neither)"
            )
        qkv_bias = dense_bias = attention_bias
    fraction = 0.0
    if window is not None:
        fraction = 0.5 if family == "gemma2" else 1.0  # Gemma 2 alternates local and global
    layers = _require(config, name, "num_hidden_layers")
    if family in WINDOWED_LAYERS_LISTED:
        windowed = _windowed_layers(config, name, layers, _GLOBAL_LAYER_EVERY[family])
        fraction = windowed / layers
        if not windowed:
            window = None
    experts_key, width_key = _EXPERT_KEYS.get(family, (None, "intermediate_size"))
    if family == "qwen3_moe":
        _refuse_dense_qwen3_moe_layers(config, name)
    latent: dict[str, Any] = {}
    if family in LATENT_ATTENTION_FAMILIES:
        latent = _latent_attention(config, name, layers)
        head_dim = latent.pop("head_dim")
        kv_heads = heads  # every head gets its own key and value from the latent
    return Architecture(
        name=name,
        family=family,
        hidden_size=hidden,
        intermediate_size=_require(config, name, width_key),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        vocab_size=_require(config, name, "vocab_size"),
        mlp="plain" if family in _PLAIN_MLP else "gated",
        activation=_activation(config),  # type: ignore[arg-type]
        tied_embeddings=tied,
        num_experts=_require(config, name, experts_key) if experts_key else 1,
        experts_per_token=_require(config, name, "num_experts_per_tok") if experts_key else 1,
        sliding_window=int(window) if window is not None else None,
        sliding_window_layer_fraction=fraction,
        norms_per_sublayer=2 if family in _PRE_AND_POST_NORMS else 1,
        qkv_bias=qkv_bias,
        dense_bias=dense_bias,
        position="rope",
        qk_norm=QK_NORM_OF_FAMILY.get(family, "none"),
        attention_sinks=family in SINK_AND_ROUTER_BIAS_FAMILIES,
        router_bias=family in SINK_AND_ROUTER_BIAS_FAMILIES,
        **latent,
    )


def _language_model(config: dict[str, Any], name: str, model_type: str) -> dict[str, Any]:
    """The ``text_config`` of a multimodal release, as the text model config it is."""
    text = config.get("text_config")
    if not isinstance(text, dict):
        raise ConfigFileError(
            f"{name}: a {config.get('model_type')} config must hold its language model as "
            "text_config"
        )
    text = {**text, "model_type": model_type}
    if "tie_word_embeddings" in config and "tie_word_embeddings" not in text:
        text["tie_word_embeddings"] = config["tie_word_embeddings"]
    return text


def _llama4(config: dict[str, Any], name: str, tied: bool) -> Architecture:
    """A Llama 4 text config (Llama4TextConfig's defaults are Llama 4 Scout's).

    Layers listed in ``moe_layers`` (else every ``interleave_moe_layer_step``-th, none for a step
    of 0) are mixtures of ``num_local_experts`` experts of ``intermediate_size`` with one shared
    expert as wide; the others have a dense MLP of ``intermediate_size_mlp``. Layers with RoPE
    attend within chunks of ``attention_chunk_size`` (counted as a window of that size: the same
    keys for contexts up to a chunk, at most as many beyond); the NoPE layers globally. The Q/K
    L2 norms of the RoPE layers have no weights and are left out.
    """
    defaults = {"vocab_size": 202048, "hidden_size": 5120, "num_hidden_layers": 48,
                "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
                "intermediate_size": 8192, "intermediate_size_mlp": 16384,
                "num_local_experts": 16, "num_experts_per_tok": 1,
                "attention_chunk_size": 8192}  # fmt: skip
    config = {**defaults, **{k: v for k, v in config.items() if v is not None}}
    if config.get("attention_bias", False):
        raise UnsupportedArchitectureError(
            f"{name}: llama4_text with attention_bias true is not supported (no release has it)"
        )
    layers = _require(config, name, "num_hidden_layers")
    moe = config.get("moe_layers")
    if moe is None:
        step = config.get("interleave_moe_layer_step", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigFileError(
                f"{name}: interleave_moe_layer_step must be a non-negative integer, got {step!r}"
            )
        moe = list(range(step - 1, layers, step)) if step else []
    if not isinstance(moe, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < layers for i in moe
    ):
        raise ConfigFileError(f"{name}: moe_layers must list layer indices below {layers}")
    expert_layers = len(set(moe))
    experts = _require(config, name, "num_local_experts") if expert_layers else 1
    dense = layers - expert_layers if expert_layers else 0
    chunk = _require(config, name, "attention_chunk_size")
    if "layer_types" not in config:
        rope = config.get("no_rope_layers")
        if isinstance(rope, list) and len(rope) == layers:
            config["layer_types"] = ["chunked_attention" if r else "full_attention" for r in rope]
    windowed = _windowed_layers(config, name, layers, _GLOBAL_LAYER_EVERY["llama4_text"])
    return Architecture(
        name=name,
        family="llama4_text",
        hidden_size=_require(config, name, "hidden_size"),
        intermediate_size=_require(
            config, name, "intermediate_size" if expert_layers else "intermediate_size_mlp"
        ),
        num_layers=layers,
        num_heads=_require(config, name, "num_attention_heads"),
        num_kv_heads=_require(config, name, "num_key_value_heads"),
        head_dim=_require(config, name, "head_dim"),
        vocab_size=_require(config, name, "vocab_size"),
        activation=_activation(config),  # type: ignore[arg-type]
        tied_embeddings=tied,
        num_experts=experts,
        experts_per_token=_require(config, name, "num_experts_per_tok") if expert_layers else 1,
        sliding_window=chunk if windowed else None,
        sliding_window_layer_fraction=windowed / layers,
        shared_experts=1 if expert_layers else 0,
        dense_layers=dense,
        dense_intermediate_size=_require(config, name, "intermediate_size_mlp") if dense else 0,
    )


def _falcon(config: dict[str, Any], name: str, tied: bool) -> Architecture:
    """A Falcon config (FalconConfig's defaults are Falcon-7B's).

    The original layout (``new_decoder_architecture`` false) has one KV head under
    ``multi_query`` (else one per head) and, with ``parallel_attn``, one LayerNorm feeding
    attention and MLP side by side; the new layout (Falcon-40B, -180B, Falcon2-11B) has
    ``num_kv_heads`` KV heads and ``num_ln_in_parallel_attn`` LayerNorms (two unless one).
    ``bias`` puts biases on every projection; the MLP is up, GELU, down.
    """
    defaults = {
        ("vocab_size",): 65024,
        ("hidden_size", "n_embed"): 4544,
        ("num_hidden_layers", "n_layer"): 32,
        ("num_attention_heads", "n_head"): 71,
    }
    config = dict(config)
    for keys, value in defaults.items():
        if all(config.get(key) is None for key in keys):
            config[keys[0]] = value
    hidden = _require(config, name, "hidden_size", "n_embed")
    heads = _require(config, name, "num_attention_heads", "n_head")
    new_layout = bool(config.get("new_decoder_architecture", False))
    if new_layout:
        kv_heads = config.get("num_kv_heads") or heads
        norms = config.get("num_ln_in_parallel_attn") or 2
        block = "shared_norm" if norms == 1 else "own_norms"
    else:
        kv_heads = 1 if config.get("multi_query", True) else heads
        block = "shared_norm" if config.get("parallel_attn", True) else "none"
    if config.get("alibi", False):
        raise UnsupportedArchitectureError(
            f"{name}: falcon with ALiBi positions is not supported (no released Falcon uses it)"
        )
    bias = bool(config.get("bias", False))
    return Architecture(
        name=name,
        family="falcon",
        hidden_size=hidden,
        intermediate_size=config.get("ffn_hidden_size") or 4 * hidden,
        num_layers=_require(config, name, "num_hidden_layers", "n_layer"),
        num_heads=heads,
        num_kv_heads=int(kv_heads),
        head_dim=hidden // heads,
        vocab_size=_require(config, name, "vocab_size"),
        mlp="plain",
        activation=_activation({"hidden_act": config.get("activation", "gelu")}),  # type: ignore[arg-type]
        tied_embeddings=tied,
        qkv_bias=bias,
        dense_bias=bias,
        parallel_block=block,  # type: ignore[arg-type]
    )


def _latent_attention(config: dict[str, Any], name: str, layers: int) -> dict[str, Any]:
    """The MLA widths and DeepSeek's expert layout of a DeepSeek V2/V3 config.

    ``head_dim`` is the query/key head (its unrotated and rotated parts); the query goes
    straight from the hidden state where ``q_lora_rank`` is null (DeepSeek-V2-Lite). Layers from
    ``first_k_dense_replace`` on are mixtures of experts with ``n_shared_experts`` shared ones
    beside the routed; the first ones have a dense MLP of ``intermediate_size``. The router's
    score-correction bias of V3 (a buffer of one value per expert) and its multi-token-prediction
    layer (loaded only for speculative decoding) are left out.
    """
    if config.get("moe_layer_freq", 1) != 1:
        raise UnsupportedArchitectureError(
            f"{name}: {config['model_type']} with moe_layer_freq other than 1 is not supported "
            "(dense layers between the expert layers)"
        )
    q_lora = config.get("q_lora_rank")
    dense = _require(config, name, "first_k_dense_replace")
    shared = config.get("n_shared_experts") or 0
    if isinstance(shared, bool) or not isinstance(shared, int):
        raise ConfigFileError(f"{name}: n_shared_experts must be an integer, got {shared!r}")
    nope = _require(config, name, "qk_nope_head_dim")
    rope = _require(config, name, "qk_rope_head_dim")
    return {
        "head_dim": nope + rope,
        "q_lora_rank": 0 if q_lora is None else _require(config, name, "q_lora_rank"),
        "kv_lora_rank": _require(config, name, "kv_lora_rank"),
        "rope_head_dim": rope,
        "v_head_dim": _require(config, name, "v_head_dim"),
        "shared_experts": shared,
        "dense_layers": min(dense, layers),
        "dense_intermediate_size": _require(config, name, "intermediate_size") if dense else 0,
    }


def _gemma3_language_model(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``text_config`` of a multimodal Gemma 3, as the ``gemma3_text`` config it is.

    A text-only request runs the language model alone; the SigLIP vision tower's weights (about
    0.4 B) are not part of the shape.
    """
    return _language_model(config, name, "gemma3_text")


def _windowed_layers(config: dict[str, Any], name: str, layers: int, every: int) -> int:
    """How many layers attend within the window: from layer_types, or from the pattern.

    Without layer_types, layer ``i`` is global where ``i + 1`` is a multiple of the config's
    ``sliding_window_pattern`` (default ``every``), as the configuration classes build them.
    """
    types = config.get("layer_types")
    if types is None:
        pattern = config.get("sliding_window_pattern", config.get("_sliding_window_pattern"))
        pattern = every if pattern is None else pattern
        if isinstance(pattern, bool) or not isinstance(pattern, int) or pattern < 1:
            raise ConfigFileError(
                f"{name}: sliding_window_pattern must be a positive integer, got {pattern!r}"
            )
        return sum(1 for layer in range(layers) if (layer + 1) % pattern)
    kinds = {"sliding_attention", "chunked_attention", "full_attention"}
    if not isinstance(types, list) or len(types) != layers or not set(types) <= kinds:
        raise ConfigFileError(
            f"{name}: layer_types must name 'sliding_attention', 'chunked_attention' or "
            f"'full_attention' for each of the {layers} layers"
        )
    return layers - types.count("full_attention")


def _refuse_dense_qwen3_moe_layers(config: dict[str, Any], name: str) -> None:
    # The architecture gives every layer the same MLP: dense layers among the sparse ones
    # (mlp_only_layers, or a decoder_sparse_step above one) are a shape it cannot state.
    if config.get("mlp_only_layers") or config.get("decoder_sparse_step", 1) != 1:
        raise UnsupportedArchitectureError(
            f"{name}: qwen3_moe with dense MLP layers (mlp_only_layers or decoder_sparse_step "
            "other than 1) is not supported: every layer must be a mixture of experts"
        )


def load_hf_config(path: str | Path) -> Architecture:
    """Read ``config.json`` (or a directory holding one) into an :class:`Architecture`.

    Raises:
        ConfigFileError: When the file is missing, unreadable or not a JSON object.
        UnsupportedArchitectureError: When its ``model_type`` is not supported.
    """
    return architecture_from_hf_config(read_hf_config(path), name=str(path))


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """The JSON object of ``config.json`` (or of the one in a directory).

    Raises:
        ConfigFileError: When the file is missing, unreadable or not a JSON object.
    """
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read model config {str(file)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigFileError(
            f"model config {str(file)!r} is not a text file (not UTF-8 JSON)"
        ) from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            f"model config {str(file)!r} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from exc
    if not isinstance(config, dict):
        raise ConfigFileError(f"model config {str(file)!r} must hold a JSON object")
    return config


def context_window_of(config: dict[str, Any]) -> int | None:
    """A config's ``max_position_embeddings`` (prompt + output it was made for); None if unset."""
    value = config.get("max_position_embeddings")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def to_hf_config(arch: Architecture) -> dict[str, Any]:
    """The ``config.json`` a serving engine needs to build this architecture with dummy weights.

    The inverse of :func:`architecture_from_hf_config`: reading the result back gives ``arch``
    (perturbed architectures included), which is how the workers hand shapes to vLLM.
    """
    if arch.family == "bloom":
        return {
            "model_type": "bloom",
            "architectures": ["BloomForCausalLM"],
            "hidden_size": arch.hidden_size,
            "n_layer": arch.num_layers,
            "n_head": arch.num_heads,
            "vocab_size": arch.vocab_size,
            "tie_word_embeddings": arch.tied_embeddings,
            "layer_norm_epsilon": 1e-5,
        }
    class_names = {
        "llama": "LlamaForCausalLM",
        "mistral": "MistralForCausalLM",
        "qwen2": "Qwen2ForCausalLM",
        "qwen3": "Qwen3ForCausalLM",
        "qwen3_moe": "Qwen3MoeForCausalLM",
        "phi3": "Phi3ForCausalLM",
        "olmo2": "Olmo2ForCausalLM",
        "granite": "GraniteForCausalLM",
        "gemma": "GemmaForCausalLM",
        "gemma2": "Gemma2ForCausalLM",
        "gemma3_text": "Gemma3ForCausalLM",
        "mixtral": "MixtralForCausalLM",
        "starcoder2": "Starcoder2ForCausalLM",
        "gpt_oss": "GptOssForCausalLM",
        "deepseek_v2": "DeepseekV2ForCausalLM",
        "deepseek_v3": "DeepseekV3ForCausalLM",
    }
    if arch.family == "falcon":
        return _falcon_config(arch)
    if arch.family == "llama4_text":
        return _llama4_config(arch)
    config: dict[str, Any] = {
        "model_type": arch.family,
        "architectures": [class_names[arch.family]],
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_kv_heads,
        "head_dim": arch.head_dim,
        "vocab_size": arch.vocab_size,
        "tie_word_embeddings": arch.tied_embeddings,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu" if arch.activation == "silu" else "gelu_pytorch_tanh",
    }
    if arch.family in _TOKEN_IDS_OUTSIDE_SMALL_VOCABULARIES:
        # Their configuration classes default to end and padding tokens of the released
        # vocabularies (Phi3Config: 32000, Olmo2Config: 50279, Starcoder2Config: 50256,
        # GptOssConfig: 199999 and up); a shape with a smaller one
        # would make the engine index past its logits. Dummy weights need no particular ids.
        config.update(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if arch.family in ("gemma", "gemma2", "gemma3_text"):
        config["hidden_activation"] = config["hidden_act"]
    if arch.family in _EXPERT_KEYS:
        experts_key, width_key = _EXPERT_KEYS[arch.family]
        config[experts_key] = arch.num_experts
        config[width_key] = arch.intermediate_size
        config["num_experts_per_tok"] = arch.experts_per_token
    if arch.family == "qwen3_moe":
        config.update(decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True)
    if arch.family in _ATTENTION_BIAS_REFUSED:
        config["attention_bias"] = False
    if arch.family in LATENT_ATTENTION_FAMILIES:
        config.update(_deepseek_config(arch))
    if arch.family == "granite":
        config["attention_bias"] = config["mlp_bias"] = arch.qkv_bias
    if arch.family == "starcoder2":
        config.update(use_bias=arch.qkv_bias, norm_epsilon=1e-5)
    if arch.family == "gemma3_text":
        config.update(_gemma3_attention(arch))
    elif arch.family == "gpt_oss":
        config.update(_layer_attention(arch), attention_bias=True)
    elif arch.sliding_window is not None:
        config["sliding_window"] = arch.sliding_window
        if arch.family in _WINDOW_NEEDS_FLAG:
            config["use_sliding_window"] = True
    elif arch.family in ("mistral", "mixtral", "gemma2", "phi3", "starcoder2"):
        config["sliding_window"] = None
    return config


def _llama4_config(arch: Architecture) -> dict[str, Any]:
    """The config.json of a Llama 4 text shape, for :func:`to_hf_config`.

    The expert layers are spread evenly among the dense ones (Maverick's releases alternate
    them), and so are the chunked-attention layers among the global ones.
    """
    layers = arch.num_layers
    expert_layers = arch.expert_layers if arch.is_moe else 0
    attention = _layer_attention(arch)
    types = [
        "chunked_attention" if kind == "sliding_attention" else kind
        for kind in attention["layer_types"]
    ]
    config: dict[str, Any] = {
        "model_type": "llama4_text",
        "architectures": ["Llama4ForCausalLM"],
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_kv_heads,
        "head_dim": arch.head_dim,
        "vocab_size": arch.vocab_size,
        "tie_word_embeddings": arch.tied_embeddings,
        "hidden_act": "silu" if arch.activation == "silu" else "gelu_pytorch_tanh",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5,
        "attention_bias": False,
        "num_local_experts": arch.num_experts if arch.is_moe else 1,
        "num_experts_per_tok": arch.experts_per_token,
        "intermediate_size": arch.intermediate_size,
        "intermediate_size_mlp": arch.dense_intermediate_size or arch.intermediate_size,
        "moe_layers": [
            i
            for i in range(layers)
            if (i + 1) * expert_layers // layers > i * expert_layers // layers
        ],
        "layer_types": types,
        "no_rope_layers": [int(kind == "chunked_attention") for kind in types],
        "attention_chunk_size": arch.sliding_window or 8192,
        "use_qk_norm": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    return config


def _falcon_config(arch: Architecture) -> dict[str, Any]:
    """The config.json of a Falcon shape, for :func:`to_hf_config`.

    The original layout where it can state the shape (one KV head, or one per head; attention
    and MLP in sequence or beside each other behind one LayerNorm), the new one otherwise.
    """
    config: dict[str, Any] = {
        "model_type": "falcon",
        "architectures": ["FalconForCausalLM"],
        "hidden_size": arch.hidden_size,
        "ffn_hidden_size": arch.intermediate_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "vocab_size": arch.vocab_size,
        "tie_word_embeddings": arch.tied_embeddings,
        "bias": arch.qkv_bias,
        "alibi": False,
        "activation": "gelu" if arch.activation == "gelu" else "gelu_pytorch_tanh",
        "max_position_embeddings": 32768,
        "layer_norm_epsilon": 1e-5,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    original = arch.parallel_block != "own_norms" and arch.num_kv_heads in (1, arch.num_heads)
    if original:
        config.update(
            new_decoder_architecture=False,
            multi_query=arch.num_kv_heads == 1,
            parallel_attn=arch.parallel_block == "shared_norm",
            num_kv_heads=arch.num_kv_heads,
        )
    else:
        config.update(
            new_decoder_architecture=True,
            parallel_attn=True,
            num_kv_heads=arch.num_kv_heads,
            num_ln_in_parallel_attn=1 if arch.parallel_block == "shared_norm" else 2,
        )
    return config


def _deepseek_config(arch: Architecture) -> dict[str, Any]:
    """The MLA and expert keys of a DeepSeek V2/V3 shape, for :func:`to_hf_config`.

    Routing is plain top-k of a softmax in one group, for V3 too (whose release scores experts
    with a sigmoid plus a learnt per-expert correction bias): the kernels and their costs are the
    same, but with dummy weights, drawn from ±1e-3, the correction bias outweighs every
    token's scores, and the engine would send every token to the same experts (measured: the
    prefill of 742 tokens of a 6-layer V3 shape took less time than reading its 256 experts'
    weights once).
    """
    return {
        "q_lora_rank": arch.q_lora_rank or None,
        "kv_lora_rank": arch.kv_lora_rank,
        "qk_nope_head_dim": arch.head_dim - arch.rope_head_dim,
        "qk_rope_head_dim": arch.rope_head_dim,
        "v_head_dim": arch.v_head_dim,
        # The rotary width, as transformers' configuration classes set it (their rotary
        # embedding is built for head_dim).
        "head_dim": arch.rope_head_dim,
        "n_routed_experts": arch.num_experts,
        "n_shared_experts": arch.shared_experts or None,
        "moe_intermediate_size": arch.intermediate_size,
        "intermediate_size": arch.dense_intermediate_size or arch.intermediate_size,
        "first_k_dense_replace": arch.dense_layers,
        "moe_layer_freq": 1,
        "num_experts_per_tok": arch.experts_per_token,
        "n_group": 1,
        "topk_group": 1,
        "topk_method": "greedy",
        "scoring_func": "softmax",
        "norm_topk_prob": False,
        "routed_scaling_factor": 1.0,
    }


def _gemma3_attention(arch: Architecture) -> dict[str, Any]:
    """Gemma 3's per-layer attention kinds, window and scale, for :func:`to_hf_config`."""
    return {
        **_layer_attention(arch),
        "query_pre_attn_scalar": arch.head_dim,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
    }


def _layer_attention(arch: Architecture) -> dict[str, Any]:
    """The ``layer_types`` and window of a family that lists its layers' attention kinds.

    The windowed layers are spread evenly among the global ones (Gemma 3's releases put a global
    layer after every five, gpt-oss's after every one); only their number matters to the cost.
    """
    layers = arch.num_layers
    windowed = round(arch.sliding_window_layer_fraction * layers) if arch.sliding_window else 0
    full = layers - windowed
    # Layer i is global where the running share of global layers crosses a whole number.
    types = [
        "full_attention" if (i + 1) * full // layers > i * full // layers else "sliding_attention"
        for i in range(layers)
    ]
    return {
        "layer_types": types,
        "sliding_window": arch.sliding_window or _WINDOW_DEFAULT[arch.family],
    }
