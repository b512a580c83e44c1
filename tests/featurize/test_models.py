"""The LLM catalog: the paper's 17 models and later ones, names, parameter counts against published
figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurize import catalog_models, get_catalog_model, resolve_architecture
from llmco2.errors import UnknownModelError, UnsupportedArchitectureError

PAPER_FAMILIES = {"bloom", "gemma", "gemma2", "qwen2", "llama", "mixtral"}


def test_catalog_holds_the_papers_17_models_and_later_ones() -> None:
    entries = catalog_models()
    paper = entries[:17]
    assert {e.architecture.family for e in paper} == PAPER_FAMILIES
    assert {e.architecture.family for e in entries} - PAPER_FAMILIES >= {
        "qwen3", "qwen3_moe", "phi3", "olmo2", "granite", "gemma3_text", "starcoder2", "gpt_oss",
    }  # fmt: skip
    assert all(e.source for e in entries)


@pytest.mark.parametrize(
    ("name", "published_params"),
    [
        # Totals published on the models' cards / papers (embeddings included).
        ("bigscience/bloom-560m", 559.2e6),
        ("bigscience/bloom-7b1", 7.07e9),
        ("Qwen/Qwen2-0.5B", 494.0e6),
        ("Qwen/Qwen2-72B", 72.7e9),
        ("google/gemma-2-9b", 9.24e9),
        ("google/gemma-7b", 8.54e9),
        ("meta-llama/Llama-3.1-8B", 8.03e9),
        ("meta-llama/Llama-3.1-70B", 70.6e9),
        ("mistralai/Mixtral-8x7B-v0.1", 46.7e9),
        # Qwen3 model cards (0.6B, 4.0B, 8.2B, 32.8B; 1.7B is 1.72B, rounded on its card).
        ("Qwen/Qwen3-0.6B", 0.6e9),
        ("Qwen/Qwen3-4B", 4.0e9),
        ("Qwen/Qwen3-8B", 8.2e9),
        ("Qwen/Qwen3-32B", 32.8e9),
        ("microsoft/Phi-3-mini-4k-instruct", 3.8e9),
        ("microsoft/Phi-3-medium-4k-instruct", 14.0e9),  # model card: 14 B
        ("microsoft/Phi-3.5-mini-instruct", 3.8e9),  # model card: 3.8 B
        ("allenai/OLMo-2-1124-7B", 7.30e9),
        ("allenai/OLMo-2-1124-13B", 13.7e9),
        ("allenai/OLMo-2-0325-32B", 32.2e9),
        ("ibm-granite/granite-3.0-2b-instruct", 2.53e9),
        ("ibm-granite/granite-3.1-8b-instruct", 8.17e9),
        ("Qwen/Qwen3-30B-A3B-Instruct-2507", 30.5e9),
        ("Qwen/Qwen3-235B-A22B", 235e9),
        ("google/gemma-3-1b-it", 1.0e9),
        ("meta-llama/Llama-3.2-1B", 1.235e9),
        ("bigcode/starcoder2-3b", 3.03e9),
        ("bigcode/starcoder2-7b", 7.17e9),
        # gpt-oss model card: 20.91 B and 116.83 B in all.
        ("openai/gpt-oss-20b", 20.91e9),
        ("openai/gpt-oss-120b", 116.83e9),
        # Model cards: Llama 3.2 3B 3.21 B, Llama 3.3 70B 70.6 B, Qwen2.5-7B 7.61 B,
        # Mistral-Nemo 12.2 B, Phi-4 14.7 B.
        ("meta-llama/Llama-3.2-3B", 3.21e9),
        ("meta-llama/Llama-3.3-70B-Instruct", 70.6e9),
        ("Qwen/Qwen2.5-7B-Instruct", 7.61e9),
        ("mistralai/Mistral-Nemo-Instruct-2407", 12.2e9),
        ("microsoft/phi-4", 14.7e9),
        # Qwen2.5 model cards: 0.49, 3.09, 14.7, 32.5 and 72.7 B.
        ("Qwen/Qwen2.5-0.5B", 0.49e9),
        ("Qwen/Qwen2.5-3B-Instruct", 3.09e9),
        ("Qwen/Qwen2.5-14B-Instruct", 14.7e9),
        ("Qwen/Qwen2.5-32B", 32.5e9),
        ("Qwen/Qwen2.5-72B-Instruct", 72.7e9),
    ],
)
def test_parameter_counts_match_published_totals(name: str, published_params: float) -> None:
    assert resolve_architecture(name).total_params == pytest.approx(published_params, rel=0.01)


@pytest.mark.parametrize(
    ("name", "published"),
    [("qwen3-0.6b", 0.44e9), ("qwen3-1.7b", 1.4e9), ("qwen3-4b", 3.6e9), ("qwen3-8b", 6.95e9),
     ("qwen3-32b", 31.2e9)],
)  # fmt: skip
def test_qwen3_non_embedding_parameters_match_the_model_cards(name: str, published: float) -> None:
    # The cards give two significant figures.
    assert resolve_architecture(name).non_embedding_params == pytest.approx(published, rel=0.02)


@pytest.mark.parametrize(
    ("name", "non_embedding", "activated"),
    [("qwen3-30b-a3b", 29.9e9, 3.3e9), ("qwen3-235b-a22b", 234e9, 22e9)],
)  # fmt: skip
def test_qwen3_moe_totals_and_activated_parameters_match_the_model_cards(
    name: str, non_embedding: float, activated: float
) -> None:
    arch = resolve_architecture(name)
    assert arch.non_embedding_params == pytest.approx(non_embedding, rel=0.01)
    # Activated: the top-8 experts' weights plus everything outside the experts (two figures).
    active = arch.num_layers * arch.active_params_per_layer + arch.embedding_params
    assert active == pytest.approx(activated, rel=0.02)


@pytest.mark.parametrize(("name", "active"), [("gpt-oss-20b", 3.61e9), ("gpt-oss-120b", 5.13e9)])
def test_gpt_oss_active_parameters_match_the_model_card(name: str, active: float) -> None:
    # The card counts the unembedding and the final norm, not the embedding, as active.
    arch = resolve_architecture(name)
    per_token = arch.num_layers * arch.active_params_per_layer + arch.embedding_params // 2
    assert per_token + arch.hidden_size == pytest.approx(active, rel=0.01)


def test_llama_non_embedding_parameters() -> None:
    assert resolve_architecture("llama3.1-8b").non_embedding_params == pytest.approx(
        6.98e9, rel=0.005
    )


def test_bloom_has_a_plain_gelu_mlp_of_four_times_hidden_and_alibi() -> None:
    bloom = resolve_architecture("bloom-3b")
    assert bloom.mlp == "plain"
    assert bloom.activation == "gelu_tanh"
    assert bloom.intermediate_size == 4 * bloom.hidden_size
    assert bloom.position == "alibi"
    assert bloom.tied_embeddings


def test_mixtral_is_a_top2_of_8_mixture() -> None:
    mixtral = resolve_architecture("mixtral-8x7b")
    assert (mixtral.num_experts, mixtral.experts_per_token) == (8, 2)
    assert mixtral.active_params_per_layer < mixtral.params_per_layer


@pytest.mark.parametrize("alias", ["llama3.1-8b", "LLAMA3.1-8B", "Llama-3.1-8B", " llama-3.1-8b "])
def test_aliases_resolve_case_insensitively(alias: str) -> None:
    assert get_catalog_model(alias).id == "meta-llama/Llama-3.1-8B"


def test_unknown_model_suggests_the_closest_names() -> None:
    with pytest.raises(UnknownModelError) as info:
        resolve_architecture("llama3-8b")
    assert "llama3.1-8b" in str(info.value)
    assert "did you mean" in str(info.value)


def test_a_bloom_shape_with_another_mlp_width_is_refused() -> None:
    bloom = resolve_architecture("bloom-560m")
    with pytest.raises(UnsupportedArchitectureError, match="4 x hidden_size"):
        bloom.replace(intermediate_size=3 * bloom.hidden_size)


def test_context_windows_come_from_the_catalog_or_the_config_file(tmp_path: Path) -> None:
    from featurize import context_window

    assert context_window("llama3.1-8b") == 131072
    assert context_window("gemma-2-2b") == 8192
    assert context_window("mixtral-8x7b") == 32768
    assert context_window("bloom-560m") is None  # ALiBi: its config sets no limit
    config = tmp_path / "config.json"
    fields = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1024,
              "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 1000}  # fmt: skip
    config.write_text(json.dumps({**fields, "max_position_embeddings": 4096}))
    assert context_window(str(config)) == 4096
    config.write_text(json.dumps(fields))
    assert context_window(str(config)) is None
    with pytest.raises(UnknownModelError):
        context_window("no-such-model")
