"""`llmco2 predict` with the shipped predictor, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.llmco2.cli.test_cli import llmco2


def test_predict_sweep_json_with_carbon() -> None:
    result = llmco2(
        "predict", "llama3.1-8b", "--gpu", "H200", "--sweep-gpus", "1,2,4",
        "--prompt", "1024", "--gen", "128", "--region", "FRA", "--pue", "1.2", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {p["gpus"]: p for p in data["predictions"]}
    assert set(rows) == {1, 2, 4}
    one = rows[1]
    assert one["total_j"] == pytest.approx(one["prefill_j"] + one["decode_j"], rel=1e-6)
    # Measured on one H200 for this request: 305-308 J (experiments/data/instance-spread-h200).
    assert 250 < one["total_j"] < 370
    assert one["operational_g"] == pytest.approx(one["total_j"] / 3.6e6 * 1.2 * 56.039, rel=1e-3)
    # The default predictor's data has 1, 2 and 4 H200s.
    assert not any(p["extrapolated"] for p in rows.values())
    assert data["assumptions"]["pue"] == 1.2 and data["units"]["energy"] == "J"
    # The interval brackets the answer; latency is learnt from measured latencies.
    for row in rows.values():
        assert row["total_low_j"] < row["total_j"] < row["total_high_j"]
        assert row["interval_level"] == 0.8
    assert "measured latencies" in data["assumptions"]["latency"]
    assert "held-out architecture shapes" in data["assumptions"]["interval"]
    # More GPUs answer faster; embodied carbon = parts × time ÷ lifetime.
    assert rows[1]["latency_s"] > rows[2]["latency_s"] > rows[4]["latency_s"] > 0
    per_gpu_second = 179.49 * 1000 / (5 * 365 * 86400)  # H200 + host share, kg → g per s
    for count, row in rows.items():
        assert row["embodied_g"] == pytest.approx(
            per_gpu_second * count * row["latency_s"], rel=1e-3
        )
    assert data["assumptions"]["embodied"]["lifetime_years"] == 5.0
    assert data["units"]["embodied_co2"] == "gCO2eq"


def test_another_gpu_type_is_flagged_as_extrapolated() -> None:
    result = llmco2("predict", "llama3.1-8b", "--gpu", "A100-80GB", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    row = data["predictions"][0]
    # No A100 was measured: the analytical model's prior scaled by the A100's datasheet, and no
    # correction learnt on other GPU types.
    assert row["extrapolated"] and row["total_j"] > 0
    assert data["assumptions"]["latency"].startswith("analytical time (no measurements")


@pytest.mark.parametrize(
    ("model", "measured_family"),
    [("bloom-560m", False), ("starcoder2-3b", True), ("mistral-nemo-12b", True),
     ("olmo-2-7b", True), ("phi-3-mini-4k", True), ("granite-3.1-8b", True), ("qwen2-7b", True),
     ("qwen3-8b", True), ("gemma-2-9b", True), ("qwen3-30b-a3b", True), ("gemma-3-1b", True)],
)  # fmt: skip
def test_a_family_without_measurements_is_flagged_as_extrapolated(
    model: str, measured_family: bool
) -> None:
    # The shipped predictor measured every family of the catalog in bf16 but the paper's BLOOM
    # (ALiBi), which vLLM does not run on an H200.
    result = llmco2("predict", model, "--gpu", "H200", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["predictions"][0]
    assert row["extrapolated"] is not measured_family and row["total_j"] > 0


def test_precision_flags_price_fp8_and_weight_only_deployments() -> None:
    rows = {
        (wbits, abits): json.loads(
            llmco2("predict", "qwen2-7b", "--gpu", "H200", "--wbits", wbits, "--abits", abits,
                   "--kvbits", wbits, "--prompt", "1024", "--gen", "256", "--json").stdout
        )["predictions"][0]
        for wbits, abits in (("16", "16"), ("8", "8"), ("8", "16"))
    }  # fmt: skip
    # Half the bytes of weights and KV cache: a memory-bound decode costs clearly less.
    for eight_bit in (("8", "8"), ("8", "16")):
        assert rows[eight_bit]["decode_j"] < 0.8 * rows[("16", "16")]["decode_j"]
    # FP8 (w8a8kv8) was measured on this GPU, weight-only 8-bit never: that answer says so.
    assert not rows[("8", "8")]["extrapolated"] and not rows[("16", "16")]["extrapolated"]
    assert rows[("8", "16")]["extrapolated"]


def test_mxfp4_experts_price_gpt_oss_as_released() -> None:
    args = ("predict", "gpt-oss-120b", "--gpu", "H100-SXM", "--prompt", "1024", "--gen", "256")
    bf16 = llmco2(*args, "--json")  # 117 B parameters in bf16 do not fit one 80 GB GPU
    assert bf16.returncode == 2 and "GB per GPU" in bf16.stderr
    result = llmco2(*args, "--expert-wbits", "4", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["predictions"][0]
    assert row["total_j"] > 0 and row["extrapolated"]  # no MXFP4 row was measured
    small = {
        bits: json.loads(llmco2("predict", "gpt-oss-20b", *args[2:], *flag, "--json").stdout)
        for bits, flag in (("16", ()), ("4", ("--expert-wbits", "4")))
    }
    # A quarter of the expert bytes: a decode reading them costs less.
    assert small["4"]["predictions"][0]["decode_j"] < small["16"]["predictions"][0]["decode_j"]
    dense = llmco2("predict", "qwen3-8b", "--expert-wbits", "4")
    assert dense.returncode == 2 and "without routed experts" in dense.stderr


def test_predict_takes_a_gpu_from_a_gpu_file(tmp_path: Path) -> None:
    from tests.featurize.test_gpus import USER_GPU

    gpu_file = tmp_path / "gpus.yaml"
    gpu_file.write_text(USER_GPU)
    result = llmco2(
        "predict", "qwen3-8b", "--gpu", "RTX-6000-Ada", "--gpu-file", str(gpu_file), "--json"
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["predictions"][0]
    assert row["gpu"] == "RTX-6000-Ada" and row["extrapolated"] and row["total_j"] > 0
    unknown = llmco2("predict", "qwen3-8b", "--gpu", "RTX-6000-Ada", "--json")
    assert unknown.returncode == 2 and "RTX-6000-Ada" in unknown.stderr


def _smallest_catalog_model_per_family() -> list[str]:
    from featurize import catalog_models

    smallest: dict[str, tuple[int, str]] = {}
    for entry in catalog_models():
        size = (entry.architecture.total_params, entry.aliases[0])
        smallest[entry.architecture.family] = min(
            smallest.get(entry.architecture.family, size), size
        )
    return sorted(name for _, name in smallest.values())


@pytest.mark.parametrize("model", _smallest_catalog_model_per_family())
def test_every_family_is_priced_on_the_h200_and_on_a_gpu_from_a_gpu_file(
    tmp_path: Path, model: str
) -> None:
    from featurize import resolve_architecture, to_hf_config
    from tests.featurize.test_gpus import USER_GPU

    gpu_file = tmp_path / "gpus.yaml"
    gpu_file.write_text(USER_GPU)
    arch = resolve_architecture(model)
    if arch.total_params > 60e9:
        # A family whose smallest release needs more than four GPUs (DeepSeek-V3: 671 B) is
        # priced through the config.json of its shape cut to a few layers.
        model = str(tmp_path / "config.json")
        Path(model).write_text(json.dumps(to_hf_config(arch.with_depth(4))))
    for gpu in ("H200", "RTX-6000-Ada"):
        result = llmco2(
            "predict", model, "--gpu", gpu, "--gpu-file", str(gpu_file), "--sweep-gpus", "1,2,4",
            "--batch", "2", "--prompt", "256", "--gen", "32", "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)["predictions"]
        assert rows and all(row["gpu"] == gpu for row in rows), (gpu, rows)
        assert all(row["total_j"] > row["decode_j"] > 0 for row in rows)


def test_predict_prices_a_multimodal_gemma3_config_on_a_gpu_from_a_gpu_file(
    tmp_path: Path,
) -> None:
    from tests.featurize.test_gpus import USER_GPU

    gpu_file = tmp_path / "gpus.yaml"
    gpu_file.write_text(USER_GPU)
    config = tmp_path / "gemma-3-4b-it"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({
        "model_type": "gemma3",
        "text_config": {"model_type": "gemma3_text", "hidden_size": 2560,
                        "intermediate_size": 10240, "num_hidden_layers": 34,
                        "sliding_window": 1024},
    }))  # fmt: skip
    rows = {
        gpu: json.loads(
            llmco2("predict", str(config), "--gpu", gpu, "--gpu-file", str(gpu_file),
                   "--json").stdout
        )["predictions"][0]
        for gpu in ("H200", "RTX-6000-Ada")
    }  # fmt: skip
    # Read as the catalog's Gemma-3-4B language model: measured on the H200, not on the other.
    assert not rows["H200"]["extrapolated"] and rows["RTX-6000-Ada"]["extrapolated"]
    catalog = json.loads(llmco2("predict", "gemma-3-4b", "--gpu", "H200", "--json").stdout)
    assert rows["H200"]["total_j"] == pytest.approx(catalog["predictions"][0]["total_j"])


def test_lifetime_changes_embodied_carbon_only() -> None:
    short, long = (
        json.loads(llmco2("predict", "qwen2-7b", "--gpu", "H200", "--lifetime-years", years,
                          "--json").stdout)["predictions"][0]
        for years in ("2", "4")
    )  # fmt: skip
    assert short["embodied_g"] == pytest.approx(2 * long["embodied_g"])
    assert short["total_j"] == long["total_j"]


def test_sweep_plot_is_written(tmp_path: Path) -> None:
    plot = tmp_path / "sweep.png"
    result = llmco2(
        "predict", "mixtral-8x7b", "--gpu", "H200", "--sweep-gpus", "1,2,4", "--intensity", "400",
        "--plot", str(plot),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "embodied CO2eq" in result.stdout


def test_predict_table_without_carbon() -> None:
    result = llmco2("predict", "qwen2-1.5b", "--gpu", "H200", "--gen", "1")
    assert result.returncode == 0, result.stderr
    assert "operational CO2eq not computed" in result.stdout


def test_a_sweep_reports_counts_that_do_not_fit() -> None:
    result = llmco2("predict", "llama3.1-70b", "--gpu", "H100-SXM", "--sweep-gpus", "1,4", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [p["gpus"] for p in data["predictions"]] == [4]
    assert data["skipped"][0]["gpus"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pue", "0.9"], "PUE must be a finite number ≥ 1"),
        (["--pue", "inf"], "PUE must be a finite number ≥ 1"),
        (["--intensity", "inf"], "carbon intensity must be a finite number ≥ 0"),
        (["--region", "XYZ"], "unknown region 'XYZ'"),
        (["--region", "FRA", "--intensity", "50"], "not both"),
        (["--intensity", "-5"], "carbon intensity must be a finite number ≥ 0"),
        (["--sweep-gpus", "1,two"], "--sweep-gpus takes counts"),
        (["--gpu", "H999"], "unknown gpu"),
        (["--model", "/nonexistent/model.pt"], "no predictor at"),
        (["--model", "/nonexistent/model.npz"], "no predictor at"),
        (["--lifetime-years", "0"], "lifetime must be > 0"),
        (["--plot", "x.png"], "--plot draws a sweep"),
        (["--sweep-gpus", "1,2", "--plot", "/nonexistent/dir/x.png"], "does not exist"),
    ],
)
def test_predict_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = llmco2("predict", "llama3.1-8b", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_corrupted_checkpoint_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"garbage")
    result = llmco2("predict", "llama3.1-8b", "--model", str(bad))
    assert result.returncode == 2 and "cannot read predictor checkpoint" in result.stderr


def test_the_catalogs_list_as_json(tmp_path: Path) -> None:
    from tests.featurize.test_gpus import USER_GPU

    models = json.loads(llmco2("models", "--json").stdout)
    qwen3 = next(m for m in models if m["id"] == "Qwen/Qwen3-8B")
    assert qwen3["aliases"] == ["qwen3-8b"] and qwen3["architecture"]["qk_norm"] == "head"
    assert qwen3["total_params"] == 8_190_735_360 and qwen3["context_window"] == 40960
    assert all(m["source"] for m in models)
    gpu_file = tmp_path / "gpus.yaml"
    gpu_file.write_text(USER_GPU)
    gpus = json.loads(llmco2("gpus", "--gpu-file", str(gpu_file), "--json").stdout)
    ids = [g["id"] for g in gpus]
    assert "H200" in ids and "RTX-6000-Ada" in ids
    assert next(g for g in gpus if g["id"] == "H200")["tdp_w"] == 700
