from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from gnn.hpo import tune
from gnn.training import TrainConfig
from llmco2.errors import InvalidRequestError

QUICK = TrainConfig(epochs=4, patience=4, seed=0, correction_epochs=4)


def test_study_lives_in_the_database_and_resumes(twin_data: Any, db_url: str) -> None:
    seen: list[int] = []
    first = tune(twin_data, db_url, "study-a", 2, base=QUICK, folds=2,
                 on_trial=lambda n, v: seen.append(n))  # fmt: skip
    assert (first.trials, first.new_trials) == (2, 2) and seen == [0, 1]
    assert first.best_mape > 0 and first.shape.hidden in (64, 128, 256)
    again = tune(twin_data, db_url, "study-a", 3, base=QUICK, folds=2)
    assert (again.trials, again.new_trials) == (3, 1)  # N trials in all, not N more
    assert tune(twin_data, db_url, "study-a", 3, base=QUICK, folds=2).new_trials == 0
    engine = create_engine(db_url)
    assert "trials" in inspect(engine).get_table_names()
    engine.dispose()


def test_bad_hpo_arguments(twin_data: Any, sqlite_url: str) -> None:
    with pytest.raises(InvalidRequestError):
        tune(twin_data, sqlite_url, "s", 0)
    with pytest.raises(InvalidRequestError):
        tune(twin_data, sqlite_url, "s", 1, folds=1)
