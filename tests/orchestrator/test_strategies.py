"""How the strategies rank candidates."""

from __future__ import annotations

import numpy as np

from orchestrator.config import HighErrorRule
from orchestrator.strategies import disagreement_order, high_error_indices


def test_disagreement_ranks_by_relative_spread_not_by_size() -> None:
    predictions = np.array([
        [100.0, 1.0, 1000.0, 5.0],
        [110.0, 2.0, 1001.0, 5.0],
    ])  # fmt: skip
    # 1 J vs 2 J disagrees far more than 100 J vs 110 J, which beats 1000 J vs 1001 J; the
    # unanimous candidate comes last.
    assert disagreement_order(predictions).tolist() == [1, 0, 2, 3]


def test_high_error_rules_pick_the_worst_first() -> None:
    errors = np.array([0.05, 0.4, 0.2, 0.01, 0.3])
    assert high_error_indices(errors, HighErrorRule(rule="top_fraction", value=0.4)).tolist() == [
        1, 4,
    ]  # fmt: skip
    assert high_error_indices(errors, HighErrorRule(rule="above", value=0.1)).tolist() == [1, 4, 2]
