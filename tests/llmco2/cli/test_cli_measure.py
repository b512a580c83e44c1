"""`llmco2 measure` as a user runs it: the simulated engine end to end, and bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from llmco2.errors import EngineUnavailableError
from tests.llmco2.cli.test_cli import llmco2
from workers import local


def test_measure_with_the_simulated_engine_through_a_ray_actor() -> None:
    result = llmco2(
        "measure", "llama3.1-8b", "--engine", "simulated", "--gpu", "H200", "--tp", "2",
        "--batch", "2", "--prompt", "1500", "--gen", "13", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "COMPLETE" and data["gpu"] == "H200" and data["tp"] == 2
    m = data["measurement"]
    assert m["simulated"] is True and m["repeats"] == 3
    assert m["energy_j"] == pytest.approx(m["prefill_energy_j"] + m["decode_energy_j"])
    assert m["counter_period_s"] == pytest.approx(0.1, abs=0.005)
    assert len(m["gpu_energies_j"]) == 2
    assert 0 < data["timing"]["duty_cycle"] <= 1


def test_measure_table_output() -> None:
    result = llmco2("measure", "qwen2-0.5b", "--engine", "simulated", "--gpu", "L4", "--gen", "8")
    assert result.returncode == 0, result.stderr
    assert (
        "prefill" in result.stdout and "decode" in result.stdout and "(simulated)" in result.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "tensorrt"], "unknown engine 'tensorrt'"),
        (["--engine", "vllm", "--tp", "2"], "without tensor parallelism"),
        (["--engine", "transformers", "--tp", "2"], "TP 1 only"),
        (["--engine", "simulated", "--gpu", "H300"], "unknown gpu 'H300'"),
        (["--engine", "simulated", "--tp", "3"], "TP 3 does not divide"),
        (["--engine", "simulated", "--repeats", "0"], "--repeats must be"),
        (["--engine", "simulated", "--gpu", "L4", "--prompt", "0"], "prompt length"),
    ],
)
def test_measure_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = llmco2("measure", "llama3.1-8b", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_an_unknown_way_to_start_vllm_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMCO2_VLLM_COMPILE", "fast")  # the command inherits it
    result = llmco2("measure", "llama3.1-8b", "--engine", "vllm")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "LLMCO2_VLLM_COMPILE='fast'" in lines[0], result.stderr


def test_measure_of_a_model_that_does_not_fit_is_infeasible() -> None:
    result = llmco2("measure", "llama3.1-70b", "--engine", "simulated", "--gpu", "L4")
    assert result.returncode == 2
    assert "infeasible" in result.stderr and "GB per GPU" in result.stderr


def test_gpu_engines_without_vllm_or_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "detect_gpu_names", lambda: [])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EngineUnavailableError, match="no GPU found for --engine vllm and vLLM"):
        local.resolve_measurement_gpu("vllm", "auto", 1)
    monkeypatch.setattr(local, "detect_gpu_names", lambda: ["NVIDIA H200"])
    with pytest.raises(EngineUnavailableError, match="vLLM is not installed"):
        local.resolve_measurement_gpu("vllm", "auto", 1)
    with pytest.raises(EngineUnavailableError, match="TP 2 needs 2 GPUs but 1"):
        local.resolve_measurement_gpu("vllm", "auto", 2)
    with pytest.raises(EngineUnavailableError, match="this machine has NVIDIA H200"):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
        local.resolve_measurement_gpu("vllm", "A100-80GB", 1)
    gpu, note = local.resolve_measurement_gpu("vllm", "auto", 1)
    assert gpu is not None and gpu.id == "H200" and note is None


def test_measure_takes_precisions_and_a_gpu_from_a_gpu_file(tmp_path: Path) -> None:
    from tests.featurize.test_gpus import USER_GPU

    gpu_file = tmp_path / "gpus.yaml"
    gpu_file.write_text(USER_GPU)
    result = llmco2(
        "measure", "qwen3-0.6b", "--engine", "simulated", "--gpu", "RTX-6000-Ada",
        "--gpu-file", str(gpu_file), "--wbits", "8", "--abits", "8", "--kvbits", "8",
        "--gen", "8", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "COMPLETE" and data["gpu"] == "RTX-6000-Ada"
    assert data["measurement"]["energy_j"] > 0
    unknown = llmco2("measure", "qwen3-0.6b", "--engine", "simulated", "--gpu", "RTX-6000-Ada")
    assert unknown.returncode == 2 and "RTX-6000-Ada" in unknown.stderr
