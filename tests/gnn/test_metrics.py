"""MAPE and EBA against hand computations."""

from __future__ import annotations

import pytest

from gnn.metrics import Scores, eba, first_reaching, learning_curve_at, mape, scores_by_group
from llmco2.errors import InvalidRequestError


def test_mape_and_eba_by_hand() -> None:
    measured = [100.0, 200.0, 50.0, 10.0]
    predicted = [104.0, 180.0, 64.9, 10.0]  # errors 4 %, 10 %, 29.8 %, 0 %
    assert mape(predicted, measured) == pytest.approx((4 + 10 + 29.8 + 0) / 4)
    assert eba(predicted, measured, 0.05) == pytest.approx(50.0)
    assert eba(predicted, measured, 0.10) == pytest.approx(75.0)
    assert eba(predicted, measured, 0.30) == pytest.approx(100.0)
    scores = Scores.of(predicted, measured)
    assert scores.count == 4 and scores.eba10 == pytest.approx(75.0)


def test_scores_by_group() -> None:
    grouped = scores_by_group([1.1, 2.0, 3.6], [1.0, 2.0, 3.0], ["llama", "qwen2", "llama"])
    assert set(grouped) == {"all", "llama", "qwen2"}
    assert grouped["llama"].mape == pytest.approx(15.0)
    assert grouped["qwen2"].mape == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("predicted", "measured", "message"),
    [
        ([1.0], [1.0, 2.0], "predictions for"),
        ([], [], "no measurements"),
        ([1.0], [0.0], "positive"),
    ],
)
def test_bad_inputs(predicted: list[float], measured: list[float], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        mape(predicted, measured)


def test_a_learning_curve_is_read_at_the_last_model_within_the_count() -> None:
    curve = [(60, 20.0), (90, 12.0), (120, 9.0)]
    assert learning_curve_at(curve, 59) is None  # before the first model
    assert learning_curve_at(curve, 60) == 20.0
    assert learning_curve_at(curve, 119) == 12.0
    assert learning_curve_at(curve, 500) == 9.0  # a run that stopped keeps its last model


def test_first_reaching_is_the_count_of_the_first_round_at_the_level() -> None:
    curve = [(60, 20.0), (90, 9.0), (120, 12.0), (150, 4.0)]
    assert first_reaching(curve, 10.0) == 90  # not the later, lower round
    assert first_reaching(curve, 4.0) == 150
    assert first_reaching(curve, 1.0) is None
