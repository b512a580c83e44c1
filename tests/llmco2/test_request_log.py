"""Pricing a whole request log: exact for few distinct requests, a grid for many."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import llmco2
from llmco2.request_log import GRID_POINTS, predict_log, summarise_log


def _log(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "TIMESTAMP": pd.date_range("2023-11-16", periods=rows, freq="s"),
            "ContextTokens": np.exp(rng.uniform(np.log(2), np.log(6000), rows)).astype(int),
            "GeneratedTokens": np.exp(rng.uniform(0, np.log(900), rows)).astype(int),
        }
    )


def test_a_small_log_is_priced_request_by_request_as_predict_many_does() -> None:
    log = _log(40)
    priced = predict_log(log, model="qwen3-8b", gpu="H200", region="DEU")
    assert priced.attrs["llmco2"]["method"] == "exact"
    many = llmco2.predict_many(
        {"prompt": log["ContextTokens"].tolist(), "gen": log["GeneratedTokens"].tolist()},
        model="qwen3-8b", gpu="H200", region="DEU",
    )  # fmt: skip
    assert np.allclose(priced["total_j"], many["total_j"], rtol=1e-6)
    assert np.allclose(priced["operational_g"], many["operational_g"], rtol=1e-6)
    assert np.allclose(priced["embodied_g"], many["embodied_g"], rtol=1e-6)
    assert np.allclose(priced["latency_s"], many["latency_s"], rtol=1e-6)
    # The log's own columns and order are kept.
    assert list(priced["TIMESTAMP"]) == list(log["TIMESTAMP"])


def test_a_large_log_read_off_the_grid_stays_close_to_exact_predictions() -> None:
    log = _log(20_000, seed=1)
    priced = predict_log(log, model="llama3.1-8b", gpu="H100-SXM")
    how = priced.attrs["llmco2"]
    assert how["method"] == "grid" and max(how["grid"]) <= GRID_POINTS
    sample = log.sample(600, random_state=2)
    exact = predict_log(sample, model="llama3.1-8b", gpu="H100-SXM", exact=True)
    for column in ("total_j", "latency_s", "total_low_j", "total_high_j"):
        error = np.abs(priced.loc[sample.index, column] / exact[column] - 1)
        assert np.percentile(error, 95) < 0.003, column
        assert error.max() < 0.03, column
    summary = summarise_log(priced)
    assert summary.requests == 20_000
    assert summary.total_kwh == pytest.approx(priced["total_j"].sum() / 3.6e6)
    assert summary.p50_j <= summary.p90_j <= summary.p99_j
    assert summary.operational_kg is None


@pytest.mark.parametrize(
    ("log", "kwargs", "error", "match"),
    [
        (pd.DataFrame({"prompt": [10]}), {}, "InvalidRequestError", "generated-token column"),
        (pd.DataFrame({"gen": [10]}), {}, "InvalidRequestError", "prompt-token column"),
        (
            pd.DataFrame({"prompt": [10, 0], "gen": [5, 5]}),
            {},
            "InvalidRequestError",
            "row 1 of the log: prompt must be a whole number ≥ 1",
        ),
        (
            pd.DataFrame({"prompt": [10, 2.5], "gen": [5, 5]}),
            {},
            "InvalidRequestError",
            "row 1",
        ),
        (
            pd.DataFrame({"prompt": [10, 200_000], "gen": [5, 5]}),
            {},
            "InvalidRequestError",
            "row 1 of the log: .*context window",
        ),
        (
            pd.DataFrame({"prompt": [10], "gen": [5]}),
            {"model": "llama3.1-70b", "gpu": "H100-SXM"},
            "InfeasibleConfigError",
            "row 0 of the log",
        ),
        (pd.DataFrame({"prompt": [], "gen": []}), {}, "InvalidRequestError", "no requests"),
        (pd.DataFrame({"prompt": [10], "gen": [5]}), {"gpu": "Z9"}, "UnknownGpuError", "Z9"),
    ],
)
def test_a_bad_log_is_refused_before_anything_is_predicted(
    log: pd.DataFrame, kwargs: dict[str, str], error: str, match: str
) -> None:
    with pytest.raises(getattr(llmco2, error), match=match):
        predict_log(log, model=kwargs.get("model", "qwen3-8b"), gpu=kwargs.get("gpu", "H200"))
