"""Deployment grids: read-offs against exact predictions, cells that do not fit, the cache."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import llmco2
from featurize import resolve_model
from featurize.gpus import GpuCatalog
from llmco2.api import as_precision
from llmco2.errors import InfeasibleConfigError, InvalidRequestError
from llmco2.price_grid import PriceGrid, grid_axis
from llmco2.request_log import predict_log


@pytest.fixture(scope="module")
def predictor() -> llmco2.Predictor:
    return llmco2.Predictor.load("gnn/data/default_predictor.npz")


def _requests(count: int, longest: int, seed: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    prompts = np.exp(rng.uniform(0, np.log(longest), count)).astype(np.int64) + 1
    gens = np.exp(rng.uniform(0, np.log(longest // 4), count)).astype(np.int64) + 1
    return {"prompt": prompts, "gen": gens}


@pytest.mark.parametrize(("model", "gpu"), [("llama3.1-8b", "H200"), ("qwen3-30b-a3b", "H100-SXM")])
def test_grid_read_offs_stay_within_half_a_percent_of_exact(
    predictor: llmco2.Predictor, model: str, gpu: str
) -> None:
    requests = _requests(400, 16_000)
    exact = llmco2.predict_many(requests, model=model, gpu=gpu, region="FRA", predictor=predictor)
    read = llmco2.predict_many(
        requests, model=model, gpu=gpu, region="FRA", predictor=predictor, grid=True
    )
    assert list(read.columns) == list(exact.columns)
    assert (read.dtypes == exact.dtypes).all()
    # The total within 0.5 % (measured: 0.15-0.4 %), each phase and the bound within 1 %.
    for column, bound in (("total_j", 0.005), ("operational_g", 0.005), ("prefill_j", 0.01),
                          ("decode_j", 0.01), ("total_high_j", 0.01)):  # fmt: skip
        error = np.abs(read[column] / exact[column] - 1)
        assert error.max() < bound, (column, float(error.max()))
    assert (np.abs(read["latency_s"] / exact["latency_s"] - 1)).max() < 0.02
    for column in ("model", "gpu", "tp", "batch", "prompt", "gen", "latency_source"):
        assert (read[column] == exact[column]).all()
    single = llmco2.predict(
        model, gpu=gpu, prompt=int(requests["prompt"][7]), gen=int(requests["gen"][7]),
        region="FRA", predictor=predictor, grid=True,
    )  # fmt: skip
    assert single.total_j == pytest.approx(float(read["total_j"].iloc[7]), rel=1e-12)
    assert single.embodied_g == pytest.approx(float(read["embodied_g"].iloc[7]), rel=1e-12)


def test_a_deployment_s_grid_is_built_once(predictor: llmco2.Predictor) -> None:
    architecture, window = resolve_model("qwen2-1.5b")
    gpu = GpuCatalog.default().get("H200")
    first = predictor.price_grid(architecture, window, gpu, 1, 1, as_precision(None))
    again = predictor.price_grid(architecture, window, gpu, 1, 1, as_precision(None))
    assert first is again
    assert first.prompt_axis[0] == 1 and first.prompt_axis[-1] == (window or 0) - 1
    other = predictor.price_grid(architecture, window, gpu, 1, 2, as_precision(None))
    assert other is not first


def test_requests_next_to_cells_that_do_not_fit_are_priced_exactly(
    predictor: llmco2.Predictor,
) -> None:
    # Sixteen sequences of Llama-3.1-8B on an H100: 16,000 + 100 tokens fit, 16,000 + 16,000 not.
    asked: dict[str, Any] = {
        "prompt": [16_000, 100, 15_000, 300], "gen": [100, 16_000, 900, 40], "batch": [16] * 4
    }  # fmt: skip
    exact = llmco2.predict_many(asked, model="llama3.1-8b", gpu="H100-SXM", predictor=predictor)
    read = llmco2.predict_many(
        asked, model="llama3.1-8b", gpu="H100-SXM", predictor=predictor, grid=True
    )
    np.testing.assert_allclose(read["total_j"], exact["total_j"], rtol=5e-3)
    with pytest.raises(InfeasibleConfigError, match="request row 1"):
        llmco2.predict_many(
            {"prompt": [100, 16_000], "gen": [100, 16_000], "batch": [16, 16]},
            model="llama3.1-8b", gpu="H100-SXM", predictor=predictor, grid=True,
        )  # fmt: skip
    with pytest.raises(InfeasibleConfigError):
        llmco2.predict(
            "llama3.1-8b", gpu="H100-SXM", batch=16, prompt=16_000, gen=16_000,
            predictor=predictor, grid=True,
        )  # fmt: skip


def test_rows_out_of_range_are_named_as_on_the_exact_path(predictor: llmco2.Predictor) -> None:
    with pytest.raises(InvalidRequestError, match="request row 2"):
        llmco2.predict_many(
            {"prompt": [10, 20, 0], "gen": [5, 5, 5]}, model="qwen3-8b", gpu="H200",
            predictor=predictor, grid=True,
        )  # fmt: skip
    with pytest.raises(InvalidRequestError, match=r"request row 1.*context window"):
        llmco2.predict_many(
            {"prompt": [10, 60_000], "gen": [5, 5]}, model="qwen3-8b", gpu="H200",
            predictor=predictor, grid=True,
        )  # fmt: skip


def test_a_log_whose_longest_lengths_do_not_fit_together_is_priced(
    predictor: llmco2.Predictor,
) -> None:
    # Llama-3.1-8B on an L4: each row fits (prompt + output ≤ 24,000) but the grid's corner of
    # the longest prompt and the longest output does not; its neighbours are priced exactly.
    rng = np.random.default_rng(0)
    prompts = np.exp(rng.uniform(np.log(16), np.log(23_000), 3_000)).astype(np.int64)
    gens = np.minimum(np.exp(rng.uniform(0, np.log(23_000), 3_000)).astype(np.int64) + 1,
                      24_000 - prompts)  # fmt: skip
    gens[:2], prompts[:2] = [23_000, 10], [10, 23_000]
    log = pd.DataFrame({"prompt": prompts, "gen": gens})
    priced = predict_log(log, model="llama3.1-8b", gpu="L4", predictor=predictor)
    assert priced.attrs["llmco2"]["method"] == "grid"
    assert np.isfinite(priced["total_j"]).all()
    sample = log.iloc[:40]
    exact = llmco2.predict_many(sample, model="llama3.1-8b", gpu="L4", predictor=predictor)
    np.testing.assert_allclose(priced["total_j"].iloc[:40], exact["total_j"], rtol=5e-3)


def test_grid_axes_are_log_spaced_whole_lengths_with_exact_ends() -> None:
    axis = grid_axis(1, 131_071, 64)
    assert axis[0] == 1 and axis[-1] == 131_071 and len(axis) <= 64
    assert (np.diff(axis) > 0).all()
    assert list(grid_axis(7, 7)) == [7]


def test_a_grid_answers_only_inside_its_axes(predictor: llmco2.Predictor) -> None:
    architecture, _ = resolve_model("qwen2-1.5b")
    gpu = GpuCatalog.default().get("H200")
    axis = grid_axis(10, 1_000, 8)
    small = PriceGrid.build(predictor, architecture, gpu, 1, 1, as_precision(None), axis, axis)
    values, answered = small.read(np.array([10, 5, 500, 2_000]), np.array([10, 10, 500, 10]))
    assert answered.tolist() == [True, False, True, False]
    assert np.isnan(values[~answered]).all() and np.isfinite(values[answered, :3]).all()
