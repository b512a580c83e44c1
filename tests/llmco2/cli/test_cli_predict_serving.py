"""`llmco2 predict --concurrency/--rate/--sweep-concurrency`: a deployment's energy per request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.llmco2.cli.test_cli import llmco2


def _in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI run from ``folder`` (to see that it writes nothing there)."""
    return subprocess.run(
        [sys.executable, "-m", "llmco2", *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=folder,
    )  # fmt: skip


def test_a_concurrency_sweep_falls_with_load_and_charges_carbon_per_request() -> None:
    result = llmco2(
        "predict", "llama3.1-8b", "--gpu", "H200", "--sweep-concurrency", "1,4,64",
        "--trace", "conv", "--region", "FRA", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = data["predictions"]
    assert [r["concurrency"] for r in rows] == [1, 4, 64]
    energy = [r["per_request_j"] for r in rows]
    # Measured on one H200 (experiments/data/serving-h200): 466.8, 154.9 and 42.3 J, for loads of
    # requests up to 4,096 tokens; the CLI draws 200 of up to 8,192, longer on average.
    assert energy == sorted(energy, reverse=True)
    assert 350 < energy[0] < 700 and 25 < energy[2] < 70
    for row in rows:
        assert row["per_request_low_j"] < row["per_request_j"] < row["per_request_high_j"]
        assert row["operational_g"] == pytest.approx(
            row["per_request_j"] / 3.6e6 * 56.039, rel=1e-3
        )
        assert row["ttft_s"]["p50"] > 0 and row["tpot_s"]["p90"] >= row["tpot_s"]["p50"]
    # The GPU time per request shrinks as requests share it: so does its embodied carbon.
    assert rows[0]["embodied_g"] > rows[1]["embodied_g"] > rows[2]["embodied_g"] > 0
    assert rows[2]["requests_per_s"] > rows[0]["requests_per_s"]
    assert data["units"]["energy"] == "J per request" and data["trace"] == "conv"
    # The shipped serving correction says what it was fitted on.
    assert data["assumptions"]["serving_correction"].startswith("corrected on ")
    assert "H200" in data["assumptions"]["serving_correction"]


def test_an_open_loop_from_a_users_trace(tmp_path: Path) -> None:
    trace = tmp_path / "requests.csv"
    trace.write_text("prompt_tokens,generated_tokens\n" + "500,100\n300,50\n" * 20)
    result = llmco2(
        "predict", "qwen2-1.5b", "--gpu", "H200", "--rate", "4", "--trace", str(trace),
        "--requests", "100", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["predictions"]
    assert row["rate_per_s"] == 4.0 and row["concurrency"] is None and row["requests"] == 100
    assert row["per_request_j"] > 0
    # 500 + 300 prompt tokens and 150 output tokens per pair of requests.
    assert row["per_input_token_j"] == pytest.approx(row["per_request_j"] / 400, rel=0.1)


def test_the_table_and_the_plot(tmp_path: Path) -> None:
    plot = tmp_path / "curve.png"
    result = llmco2(
        "predict", "llama3.1-8b", "--gpu", "H100", "--sweep-concurrency", "1,8",
        "--trace", "code", "--plot", str(plot),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "C=8" in result.stdout and "J / request" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--concurrency", "4", "--rate", "1"], "one of --concurrency, --rate"),
        (["--sweep-concurrency", "1,x"], "levels like 1,4,16,64"),
        (["--concurrency", "0"], "concurrency must be ≥ 1"),
        (["--rate", "-2"], "arrival rate must be > 0"),
        (["--concurrency", "4", "--requests", "5"], "≥ 8 requests"),
        (["--concurrency", "4", "--batch", "2"], "--batch is for a single request"),
        (["--concurrency", "4", "--sweep-gpus", "1,2"], "--sweep-gpus compares single requests"),
        (["--concurrency", "4", "--max-num-seqs", "0"], "--max-num-seqs must be ≥ 1"),
        (["--concurrency", "4", "--trace", "absent.csv"], "cannot read trace"),
        (["--concurrency", "4", "--plot", "x.png"], "--plot draws a sweep"),
    ],
)
def test_bad_serving_options_are_one_line_and_exit_2(
    args: list[str], says: str, tmp_path: Path
) -> None:
    result = _in(tmp_path, "predict", "llama3.1-8b", "--gpu", "H200", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_trace_with_a_negative_length_is_refused(tmp_path: Path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("ContextTokens,GeneratedTokens\n100,10\n-5,3\n")
    result = llmco2("predict", "llama3.1-8b", "--concurrency", "2", "--trace", str(trace))
    assert result.returncode != 0 and "line 3: lengths must be ≥ 1 token" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
