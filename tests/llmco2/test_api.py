"""The Python API: one import, the CLI's answers, typed errors before any work."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import llmco2
from llmco2.api import Predictor
from tests.llmco2.cli.test_cli import llmco2 as run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_importing_llmco2_loads_neither_the_predictor_nor_torch() -> None:
    code = (
        "import sys, llmco2; "
        "print(sorted(m for m in ('torch', 'gnn', 'featurize', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def test_predict_answers_what_the_cli_answers() -> None:
    p = llmco2.predict("llama3.1-8b", gpu="H200", tp=2, prompt=1024, gen=128, region="FRA", pue=1.2)
    cli = run_cli(
        "predict", "llama3.1-8b", "--gpu", "H200", "--tp", "2", "--prompt", "1024", "--gen",
        "128", "--region", "FRA", "--pue", "1.2", "--json",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    (row,) = json.loads(cli.stdout)["predictions"]
    for field in ("prefill_j", "decode_j", "total_j", "total_low_j", "total_high_j",
                  "latency_s", "operational_g", "embodied_g"):  # fmt: skip
        assert getattr(p, field) == pytest.approx(row[field], rel=1e-9), field
    assert (p.model, p.gpu, p.gpus, p.extrapolated) == ("meta-llama/Llama-3.1-8B", "H200", 2, False)
    assert p.total_low_j is not None and p.total_high_j is not None
    assert p.total_low_j < p.total_j < p.total_high_j
    assert p.carbon_intensity_source is not None and "France" in p.carbon_intensity_source
    assert p.carbon_intensity_g_per_kwh is not None
    assert p.operational_g == pytest.approx(p.total_j / 3.6e6 * 1.2 * p.carbon_intensity_g_per_kwh)
    assert json.loads(json.dumps(p.to_dict()))["total_j"] == p.total_j


def test_precision_is_taken_as_a_label_and_changes_the_answer() -> None:
    bf16 = llmco2.predict("qwen3-8b", gpu="H200", prompt=512, gen=64)
    fp8 = llmco2.predict("qwen3-8b", gpu="H200", prompt=512, gen=64, precision="w8a8kv8")
    assert (bf16.precision, fp8.precision) == ("w16a16kv16", "w8a8kv8")
    assert fp8.total_j < bf16.total_j


def test_a_deployment_at_its_load_is_the_serving_prediction() -> None:
    low = llmco2.predict("qwen3-8b", gpu="H200", concurrency=2, trace="code", requests=40)
    high = llmco2.predict("qwen3-8b", gpu="H200", concurrency=16, trace="code", requests=160)
    assert isinstance(low, llmco2.DeploymentPrediction)
    assert (high.concurrency, high.rate_per_s, high.trace) == (16, None, "code")
    # More requests in flight share each forward pass: less energy per request, more tokens/s.
    assert high.per_request_j < low.per_request_j
    assert high.output_tokens_per_s > low.output_tokens_per_s
    assert high.per_request_low_j is not None and high.per_request_high_j is not None
    assert high.per_request_low_j < high.per_request_j < high.per_request_high_j
    opened = llmco2.predict("qwen3-8b", gpu="H200", rate=2.0, trace="conv", requests=60)
    assert opened.concurrency is None and opened.rate_per_s == 2.0 and opened.per_request_j > 0


def test_predict_many_is_predict_row_by_row_in_one_call() -> None:
    log = pd.DataFrame(
        {
            "ContextTokens": [120, 2048, 700],
            "GeneratedTokens": [30, 12, 400],
            "model": ["qwen3-8b", "llama3.1-8b", "qwen3-8b"],
            "tp": [1, 2, 1],
        }
    )
    table = llmco2.predict_many(log, gpu="H200", region="DEU")
    assert list(table["prompt"]) == [120, 2048, 700] and list(table["tp"]) == [1, 2, 1]
    for row, request in zip(table.to_dict("records"), log.to_dict("records"), strict=True):
        single = llmco2.predict(
            str(request["model"]), gpu="H200", tp=int(request["tp"]),
            prompt=int(request["ContextTokens"]), gen=int(request["GeneratedTokens"]), region="DEU",
        )  # fmt: skip
        # One batch through the network or one row: float32 sums in another order.
        assert row["total_j"] == pytest.approx(single.total_j, rel=1e-6)
        assert row["operational_g"] == pytest.approx(single.operational_g, rel=1e-6)
    # Rows of mappings and a mapping of columns are tables too.
    rows = llmco2.predict_many(
        [{"prompt": 100, "gen": 10}, {"prompt": 200, "gen": 20, "batch": 2}],
        model="qwen3-8b", gpu="H100-SXM",
    )  # fmt: skip
    columns = llmco2.predict_many(
        {"prompt": [100, 200], "gen": [10, 20], "batch": [1, 2]}, model="qwen3-8b", gpu="H100-SXM"
    )
    assert np.allclose(rows["total_j"], columns["total_j"])
    assert list(rows["batch"]) == [1, 2]


@pytest.mark.parametrize(
    ("requests", "kwargs", "error", "match"),
    [
        ([{"prompt": 10}], {"model": "qwen3-8b", "gpu": "H200"}, "InvalidRequestError", "gen"),
        ([{"prompt": 10, "gen": 5}], {"gpu": "H200"}, "InvalidRequestError", "model="),
        (
            [{"prompt": 10, "gen": 5}, {"prompt": 1.5, "gen": 5}],
            {"model": "qwen3-8b", "gpu": "H200"},
            "InvalidRequestError",
            "row 1: prompt must be a whole number",
        ),
        (
            [{"prompt": 10, "gen": 5}, {"prompt": -3, "gen": 5}],
            {"model": "qwen3-8b", "gpu": "H200"},
            "InvalidRequestError",
            "row 1",
        ),
        (
            [{"prompt": 10, "gen": 5, "model": "nope"}],
            {"gpu": "H200"},
            "UnknownModelError",
            "nope",
        ),
        (
            [{"prompt": 10, "gen": 5}],
            {"model": "llama3.1-70b", "gpu": "H100-SXM"},
            "InfeasibleConfigError",
            "row 0",
        ),
        ([], {"model": "qwen3-8b", "gpu": "H200"}, "InvalidRequestError", "no requests"),
    ],
)
def test_predict_many_refuses_a_bad_table_before_predicting(
    requests: list[dict[str, object]], kwargs: dict[str, str], error: str, match: str
) -> None:
    with pytest.raises(getattr(llmco2, error), match=match):
        llmco2.predict_many(requests, model=kwargs.get("model"), gpu=kwargs.get("gpu"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "nope"}, "UnknownModelError", "nope"),
        ({"gpu": "Z9000"}, "UnknownGpuError", "Z9000"),
        ({"region": "Atlantis"}, "UnknownRegionError", "Atlantis"),
        ({"region": "FRA", "intensity": 50.0}, "InvalidRequestError", "not both"),
        ({"pue": 0.8}, "InvalidRequestError", "PUE"),
        ({"prompt": 200_000}, "InvalidRequestError", "context window"),
        ({"model": "llama3.1-70b"}, "InfeasibleConfigError", "GB per GPU"),
        ({"concurrency": 4, "batch": 2}, "InvalidRequestError", "batch"),
        ({"concurrency": 4, "rate": 2.0}, "InvalidRequestError", "one of"),
        ({"precision": "w3"}, "InvalidRequestError", "w3"),
    ],
)
def test_predict_refuses_bad_input_with_a_typed_error(
    kwargs: dict[str, object], error: str, match: str
) -> None:
    arguments: dict[str, object] = {"model": "llama3.1-8b", "gpu": "H100-SXM", **kwargs}
    model = arguments.pop("model")
    with pytest.raises(getattr(llmco2, error), match=match):
        llmco2.predict(str(model), **arguments)  # type: ignore[call-overload]


def test_a_gpu_type_never_measured_is_marked_extrapolated() -> None:
    p = llmco2.predict("llama3.1-8b", gpu="A100-80GB")
    assert p.extrapolated and p.latency_source.startswith("analytical time")


def test_a_predictor_is_loaded_from_a_path_and_used(tmp_path: Path) -> None:
    shipped = ROOT / "gnn" / "data" / "default_predictor.npz"
    loaded = Predictor.load(shipped)
    assert "1xH200" in loaded.trained_on
    by_path = llmco2.predict("qwen3-8b", gpu="H200", predictor=shipped)
    by_object = llmco2.predict("qwen3-8b", gpu="H200", predictor=loaded)
    assert by_path == by_object == llmco2.predict("qwen3-8b", gpu="H200")
    with pytest.raises(llmco2.ConfigFileError, match="no predictor"):
        Predictor.load(tmp_path / "missing.npz")


def test_the_catalogs_list_what_predict_takes() -> None:
    names = {name for m in llmco2.models() for name in (m.id, *m.aliases)}
    assert {"meta-llama/Llama-3.1-8B", "llama3.1-8b", "qwen3-8b"} <= names
    assert {"H100-SXM", "H200"} <= {g.id for g in llmco2.gpus()}
    regions = llmco2.regions()
    assert regions["FRA"] == pytest.approx(
        llmco2.predict("qwen3-8b", gpu="H200", region="FRA").carbon_intensity_g_per_kwh
    )


def test_the_readmes_python_examples_run() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    examples = [b for b in blocks if "import llmco2" in b]
    assert examples, "the README shows the Python API"
    for block in examples:
        namespace: dict[str, object] = {}
        exec(compile(block, "README.md", "exec"), namespace)


def test_predictions_are_frozen_dataclasses() -> None:
    p = llmco2.predict("qwen3-8b", gpu="H200")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.total_j = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(("model", "gpu"), [("llama3.1-8b", "H200"), ("qwen3-8b", "H100-SXM")])
def test_the_answer_moves_smoothly_with_the_prompt(model: str, gpu: str) -> None:
    # Across the ridge points where projections turn from memory- to compute-bound (Llama-3.1-8B
    # on an H200: 295 → 296 prompt tokens stepped by 4 % with a one-hot bound feature).
    prompts = list(range(16, 2048))
    requests = {"prompt": prompts, "gen": [2] * len(prompts)}
    table = llmco2.predict_many(requests, model=model, gpu=gpu)
    energy = table["total_j"].to_numpy()
    steps = np.abs(energy[1:] / energy[:-1] - 1)
    assert steps.max() < 0.01
