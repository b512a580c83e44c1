"""Campaign config files: valid ones load, every bad one is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from featurize import Precision
from gnn.names import CORRECTION_EPOCHS
from llmco2.errors import ConfigFileError
from orchestrator.config import CampaignConfig, load_config, parse_config
from storage import CampaignStore

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
MINIMAL = {"name": "c", "priors": {"architectures": {"models": ["qwen2-0.5b"]}}}


def test_shipped_configs_load() -> None:
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert paths
    for path in paths:
        assert isinstance(load_config(path), CampaignConfig)


def test_defaults_follow_the_paper() -> None:
    config = parse_config(MINIMAL)
    assert config.sampling.test_fraction == 0.2 and config.sampling.neighbours == 100
    assert config.sampling.radius.prompt_tokens == 10
    assert config.sampling.radius.generated_tokens == 1
    assert config.sampling.radius.num_layers == 1


def test_fingerprint_ignores_the_database_url_only() -> None:
    one = parse_config({**MINIMAL, "database": "sqlite:///a.db"})
    two = parse_config({**MINIMAL, "database": "sqlite:///b.db"})
    three = parse_config({**MINIMAL, "seed": 1})
    assert one.config_hash() == two.config_hash() != three.config_hash()


def test_the_config_hash_is_the_one_the_store_records(tmp_path: Path) -> None:
    config = parse_config(MINIMAL)
    store = CampaignStore(f"sqlite:///{tmp_path / 'c.db'}")
    stored = store.create_campaign(config.name, config.fingerprint())
    assert stored.config_hash == config.config_hash()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"sampling": {"initial": 0}}, "sampling.initial"),
        ({"sampling": {"neighbours": -1}}, "sampling.neighbours"),
        ({"sampling": {"radius": {"prompt_tokens": -10}}}, "sampling.radius.prompt_tokens"),
        ({"target_mape": 0}, "target_mape"),
        ({"strategy": "psychic"}, "strategy"),
        ({"priors": {"architectures": {"models": []}}}, "priors.architectures.models"),
        ({"priors": {"architectures": {"models": ["x"]}, "gpus": {"tp": [4, 1]}}}, "reversed"),
        ({"name": "has space"}, "name"),
        ({"strategy": "disagreement"}, "ensemble ≥ 2"),
        ({"strategy": "diverse"}, "'diverse' needs training.ensemble ≥ 2"),
        ({"training": {"predictor": "oracle"}}, "training.predictor"),
        (
            {"priors": {"architectures": {"models": ["x"], "precisions": ["fp8"]}}},
            "w<bits>a<bits>kv<bits>",
        ),
        (
            {"priors": {"architectures": {"models": ["x"], "precisions": ["w8a4kv8"]}}},
            "4-bit activations",
        ),
        (
            {"priors": {"architectures": {"models": ["x"], "precisions": []}}},
            "priors.architectures.precisions",
        ),
        (
            {
                "priors": {
                    "architectures": {
                        "models": ["x"],
                        "precisions": ["w8a8kv8"],
                        "weight_bits": [8],
                    }
                }
            },
            "not both",
        ),
        ({"reference": {"model": "x", "precision": "fp8"}}, "reference.precision"),
        ({"reference": {"model": "x", "prompt_tokens": 0}}, "reference.prompt_tokens"),
        ({"reference": {"batch": 1}}, "missing key 'reference.model'"),
        ({"reference": {"model": "x", "fill": -1}}, "reference.fill"),
        ({"reference": {"model": "x", "every": "session"}}, "reference.every"),
    ],
)
def test_bad_values_are_one_line(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config({**MINIMAL, **change})
    text = str(info.value)
    assert message in text and "\n" not in text


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="no campaign config"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigFileError, match="mapping"):
        load_config(listing)
    traced = tmp_path / "traced.yaml"
    config = {**MINIMAL, "priors": {**MINIMAL["priors"], "requests": {"trace": "t.csv"}}}  # type: ignore[dict-item]
    traced.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigFileError, match="does not exist"):
        load_config(traced)
    (tmp_path / "t.csv").write_text("ContextTokens,GeneratedTokens\n10,5\n")
    assert load_config(traced).priors.requests.trace == (tmp_path / "t.csv").resolve()


def test_a_key_added_later_keeps_older_fingerprints_at_its_default() -> None:
    config = parse_config({"name": "n", "priors": {"architectures": {"models": ["qwen2-0.5b"]}}})
    assert "perturbed_variants" not in config.fingerprint()["priors"]["architectures"]
    changed = parse_config({"name": "n", "priors": {"architectures": {
        "models": ["qwen2-0.5b"], "perturbed_variants": 3}}})  # fmt: skip
    assert changed.fingerprint()["priors"]["architectures"]["perturbed_variants"] == 3
    assert changed.config_hash() != config.config_hash()


def test_the_round_predictor_defaults_to_llmco2_without_changing_older_fingerprints() -> None:
    config = parse_config(MINIMAL)
    assert config.training.predictor == "llmco2"
    assert "predictor" not in config.fingerprint()["training"]
    explicit = parse_config({**MINIMAL, "training": {"predictor": "llmco2"}})
    paper = parse_config({**MINIMAL, "training": {"predictor": "gnn"}})
    assert explicit.config_hash() == config.config_hash() != paper.config_hash()


def test_correction_epochs_are_checked_and_leave_older_fingerprints_unchanged() -> None:
    config = parse_config(MINIMAL)
    assert config.training.correction_epochs == CORRECTION_EPOCHS
    assert "correction_epochs" not in config.fingerprint()["training"]
    early = parse_config({**MINIMAL, "training": {"correction_epochs": 0}})
    assert early.fingerprint()["training"]["correction_epochs"] == 0
    assert early.config_hash() != config.config_hash()
    with pytest.raises(ConfigFileError, match="correction_epochs"):
        parse_config({**MINIMAL, "training": {"correction_epochs": -1}})


def test_whole_precisions_leave_older_fingerprints_and_draws_unchanged() -> None:
    config = parse_config(MINIMAL)
    assert "precisions" not in config.fingerprint()["priors"]["architectures"]
    assert config.priors.architectures.precision_choices() == [Precision()]
    fp8 = parse_config({**MINIMAL, "priors": {"architectures": {
        "models": ["qwen2-0.5b"], "precisions": ["W8A8KV8", "w16a16kv16"]}}})  # fmt: skip
    assert fp8.priors.architectures.precisions == ["w8a8kv8", "w16a16kv16"]
    assert fp8.priors.architectures.precision_choices() == [Precision(8, 8, 8), Precision()]
    assert fp8.config_hash() != config.config_hash()


def test_a_reference_point_defaults_to_one_1024_128_request_and_leaves_fingerprints() -> None:
    config = parse_config(MINIMAL)
    assert config.reference is None and "reference" not in config.fingerprint()
    referenced = parse_config({**MINIMAL, "reference": {"model": "llama-3.1-8b"}})
    reference = referenced.reference
    assert reference is not None
    assert (reference.batch, reference.prompt_tokens, reference.generated_tokens) == (1, 1024, 128)
    assert (reference.precision, reference.tp, reference.fill) == ("w16a16kv16", 1, None)
    assert reference.every == "run"
    assert referenced.config_hash() != config.config_hash()
    # A campaign stored before the reference's own fill (or its every) existed keeps its
    # fingerprint.
    assert {"fill", "every"}.isdisjoint(referenced.fingerprint()["reference"])
    per_gpu = parse_config({**MINIMAL, "reference": {"model": "llama-3.1-8b", "every": "gpu"}})
    assert per_gpu.fingerprint()["reference"]["every"] == "gpu"
    assert per_gpu.config_hash() != referenced.config_hash()
    filled = parse_config({**MINIMAL, "reference": {"model": "llama-3.1-8b", "fill": 3}})
    assert filled.fingerprint()["reference"]["fill"] == 3
    assert filled.config_hash() != referenced.config_hash()


def test_protocol_defaults_are_the_protocols_own() -> None:
    from dataclasses import asdict

    from workers.protocol import ProtocolSettings

    config = parse_config(MINIMAL).protocol.model_dump()
    assert config == {k: v for k, v in asdict(ProtocolSettings()).items() if k in config}
    assert set(config) == {
        "warmups", "windows", "min_window_s", "min_periods", "min_requests", "cv_threshold"
    }  # fmt: skip


def test_counter_updates_per_window_are_checked_and_leave_older_fingerprints_unchanged() -> None:
    config = parse_config(MINIMAL)
    assert "min_periods" not in config.fingerprint()["protocol"]
    shorter = parse_config({**MINIMAL, "protocol": {"min_window_s": 1.0, "min_periods": 10}})
    assert shorter.fingerprint()["protocol"]["min_periods"] == 10
    assert shorter.config_hash() != config.config_hash()
    with pytest.raises(ConfigFileError, match="min_periods"):
        parse_config({**MINIMAL, "protocol": {"min_periods": 0}})


def test_a_serving_section_names_traces_loads_and_the_scheduler(tmp_path: Path) -> None:
    before = parse_config(MINIMAL)
    serving = {"traces": ["conversation", "code"], "concurrency": [1, 8], "rates": [2.5]}
    config = parse_config({**MINIMAL, "serving": serving})
    assert config.fingerprint()["serving"]["traces"] == ["conv", "code"]
    assert before.serving is None and "serving" not in before.fingerprint()
    assert config.config_hash() != before.config_hash()
    assert config.serving is not None
    assert config.serving.scheduler_seqs() == 32  # at least 32, or the largest concurrency
    wide = parse_config({**MINIMAL, "serving": {"concurrency": [1, 64]}}).serving
    assert wide is not None and wide.scheduler_seqs() == 64
    plan = config.serving.plan("code", seed=7)
    assert (plan.trace, plan.concurrency, plan.rates, plan.seed) == ("code", (1, 8), (2.5,), 7)
    # A trace file is read where the config lies, checked at once, and stored by its full path.
    trace = tmp_path / "requests.csv"
    trace.write_text("prompt_tokens,generated_tokens\n100,20\n300,5\n")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "serving": {"traces": ["requests.csv"]}}))
    loaded = load_config(path).serving
    assert loaded is not None and loaded.traces == [str(trace.resolve())]


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        ({"traces": []}, "serving.traces: List should have at least 1 item"),
        ({"concurrency": [0]}, "serving.concurrency.0: Input should be greater than or equal to 1"),
        ({"concurrency": [], "rate_fractions": [0.5]}, "rate_fractions are of the throughput"),
        ({"concurrency": []}, "give concurrency, rates or rate_fractions"),
        ({"concurrency": [64], "max_requests": 100}, "max_requests (100) is below twice"),
        ({"requests_per_slot": 1}, "serving.requests_per_slot"),
        ({"rates": [-1.0]}, "serving.rates.0: Input should be greater than 0"),
        ({"engines_per_round": True}, "engines_per_round must be a number or a name"),
        ({"window": 3}, "unknown key 'serving.window'"),
    ],
)
def test_bad_serving_sections_are_one_line(serving: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigFileError) as error:
        parse_config({**MINIMAL, "serving": serving})
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "serving trace"),
        ("prompt,answer\n1,2\n", "needs columns ContextTokens and GeneratedTokens"),
        ("prompt_tokens,generated_tokens\n100,-3\n", "line 2: lengths must be ≥ 1 token"),
    ],
)
def test_bad_serving_trace_files_are_refused_when_the_config_loads(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "t.csv").write_text(content)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "serving": {"traces": ["t.csv"]}}))
    with pytest.raises(ConfigFileError) as error:
        load_config(path)
    assert message in str(error.value) and "\n" not in str(error.value)
