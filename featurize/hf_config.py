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
    QK_NORM_OF_FAMILY,
    SUPPORTED_FAMILIES,
    Architecture,
)
from llmco2.errors import ConfigFileError, UnsupportedArchitectureError

# Defaults of the transformers configuration classes for keys a config.json may omit.
_TIED_DEFAULT: dict[str, bool] = {
    "llama": False,
    "mistral": False,
    "qwen2": False,
    "qwen3": False,
    "phi3": False,
    "olmo2": False,
    "granite": False,
    "mixtral": False,
    "gemma": True,
    "gemma2": True,
    "bloom": True,
}
# transformers' default sliding windows where the key is absent (MistralConfig, Gemma2Config).
_WINDOW_DEFAULT: dict[str, int] = {"mistral": 4096, "gemma2": 4096}
# Head widths of the configuration classes that do not derive it from hidden_size / heads.
_HEAD_DIM_DEFAULT: dict[str, int] = {"gemma": 256, "gemma2": 256, "qwen3": 128}
# Families whose Q/K/V projections have biases (and no other projection has).
_QKV_BIAS_ALWAYS = frozenset({"qwen2"})
# Families whose attention_bias puts biases on Q, K, V *and* the output projection but none in the
# MLP, which the architecture does not describe: their released models have none.
_ATTENTION_BIAS_REFUSED = frozenset({"qwen3", "olmo2"})
# Families whose configuration classes default to token ids of their released vocabularies.
_TOKEN_IDS_OUTSIDE_SMALL_VOCABULARIES = frozenset({"phi3", "olmo2"})
# Families whose window is off unless use_sliding_window says otherwise.
_WINDOW_NEEDS_FLAG = frozenset({"qwen2", "qwen3"})
# Families without sliding-window attention whatever their config carries.
_NO_WINDOW = frozenset({"gemma", "olmo2", "granite"})


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
    if family not in SUPPORTED_FAMILIES:
        raise UnsupportedArchitectureError(
            f"{name}: model_type {family!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_FAMILIES)})"
        )
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
    return Architecture(
        name=name,
        family=family,
        hidden_size=hidden,
        intermediate_size=_require(config, name, "intermediate_size"),
        num_layers=_require(config, name, "num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        vocab_size=_require(config, name, "vocab_size"),
        mlp="gated",
        activation=_activation(config),  # type: ignore[arg-type]
        tied_embeddings=tied,
        num_experts=int(config.get("num_local_experts") or 1) if family == "mixtral" else 1,
        experts_per_token=int(config.get("num_experts_per_tok") or 1) if family == "mixtral" else 1,
        sliding_window=int(window) if window is not None else None,
        sliding_window_layer_fraction=fraction,
        norms_per_sublayer=2 if family == "gemma2" else 1,
        qkv_bias=qkv_bias,
        dense_bias=dense_bias,
        position="rope",
        qk_norm=QK_NORM_OF_FAMILY.get(family, "none"),
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
        "phi3": "Phi3ForCausalLM",
        "olmo2": "Olmo2ForCausalLM",
        "granite": "GraniteForCausalLM",
        "gemma": "GemmaForCausalLM",
        "gemma2": "Gemma2ForCausalLM",
        "mixtral": "MixtralForCausalLM",
    }
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
        # vocabularies (Phi3Config: 32000, Olmo2Config: 50279); a shape with a smaller one
        # would make the engine index past its logits. Dummy weights need no particular ids.
        config.update(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if arch.family in ("gemma", "gemma2"):
        config["hidden_activation"] = config["hidden_act"]
    if arch.family == "mixtral":
        config["num_local_experts"] = arch.num_experts
        config["num_experts_per_tok"] = arch.experts_per_token
    if arch.family in _ATTENTION_BIAS_REFUSED:
        config["attention_bias"] = False
    if arch.family == "granite":
        config["attention_bias"] = config["mlp_bias"] = arch.qkv_bias
    if arch.sliding_window is not None:
        config["sliding_window"] = arch.sliding_window
        if arch.family in _WINDOW_NEEDS_FLAG:
            config["use_sliding_window"] = True
    elif arch.family in ("mistral", "mixtral", "gemma2", "phi3"):
        config["sliding_window"] = None
    return config
