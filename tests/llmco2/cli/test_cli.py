"""The command line as a user runs it: a real process, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmco2.cli.main import run


def llmco2(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmco2", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command_with_one_line() -> None:
    result = llmco2("--help")
    assert result.returncode == 0
    for command in ("featurize", "models", "gpus", "version", "serve", "predict-trace"):
        assert command in result.stdout


def test_version_flag_and_command_agree() -> None:
    flag, command = llmco2("--version"), llmco2("version")
    assert flag.returncode == command.returncode == 0
    assert flag.stdout == command.stdout and flag.stdout.strip()


def test_regions_json_lists_what_region_takes() -> None:
    result = llmco2("regions", "france", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    france = next(r for r in rows if r["region"] == "FRA")
    assert france["g_per_kwh"] > 0 and "France" in france["source"]
    assert all("france" in (r["region"] + r["source"]).lower() for r in rows)


def test_featurize_json_has_phase_totals() -> None:
    result = llmco2(
        "featurize",
        "llama3.1-8b",
        "--gpu",
        "H100-SXM",
        "--tp",
        "2",
        "--batch",
        "1",
        "--prompt",
        "1500",
        "--gen",
        "129",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["prefill"]["total"]["flops"] > data["decode"]["total"]["flops"] > 0
    assert data["decode"]["total"]["memory_bytes"] > data["prefill"]["total"]["memory_bytes"]
    assert data["prefill"]["total"]["network_bytes"] > 0
    assert data["hardware"]["gpu_count"] == 2
    assert "allreduce_mlp" in data["decode"]["kernels"]


def test_featurize_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(["featurize", "qwen2-0.5b", "--gpu", "NVIDIA H200", "--no-flash", "--wbits", "8"]) == 0
    )
    out = capsys.readouterr().out
    assert "prefill phase" in out and "decode phase" in out and "matmul_qk" in out


def test_models_and_gpus_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["models"]) == 0
    assert run(["gpus"]) == 0
    out = capsys.readouterr().out
    assert "mistralai/Mixtral-8x7B-v0.1" in out and "NVIDIA H100 80GB HBM3" in out


def test_featurize_a_config_json_path(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 512,
                "intermediate_size": 1024,
                "num_hidden_layers": 4,
                "num_attention_heads": 8,
                "num_key_value_heads": 2,
                "vocab_size": 1000,
            }
        )
    )
    result = llmco2("featurize", str(config), "--gpu", "L4", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["architecture"]["num_layers"] == 4


BAD_INPUTS = [
    (["featurize", "llama3-8b"], "unknown model 'llama3-8b'; did you mean"),
    (
        ["featurize", "llama3.1-8b", "--gpu", "H100-SMX"],
        "unknown gpu 'H100-SMX'; did you mean 'H100-SXM'",
    ),
    (["featurize", "llama3.1-8b", "--batch", "0"], "batch size must be a positive integer"),
    (["featurize", "llama3.1-8b", "--prompt", "-5"], "prompt length must be a positive integer"),
    (["featurize", "llama3.1-8b", "--gen", "0"], "generated tokens must be a positive integer"),
    (["featurize", "llama3.1-8b", "--tp", "3"], "TP 3 does not divide its 32 attention heads"),
    (["featurize", "llama3.1-70b", "--gpu", "L4"], "GB per GPU"),
    (["featurize", "llama3.1-8b", "--wbits", "3"], "weight bit width must be one of"),
    (["featurize", "llama3.1-8b", "--batch", "two"], "Invalid value for '--batch'"),
    (["featurize", "llama3.1-8b", "--colour"], "No such option"),
    (["featurize", "./missing/config.json"], "cannot read model config"),
    (["featurize", "llama3.1-8b", "--gpu-file", "/nonexistent.yaml"], "cannot read GPU file"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    result = llmco2(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("llmco2: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_invalid_config_json_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    result = llmco2("featurize", str(bad))
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr and len(result.stderr.strip().splitlines()) == 1
