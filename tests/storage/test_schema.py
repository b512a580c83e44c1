"""Schema creation, migrations and version checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, text

from llmco2.errors import DatabaseError, SchemaVersionError
from storage import CampaignStore, current_revision, head_revision, make_engine, upgrade
from storage.database import VERSION_TABLE, _alembic_config
from storage.models import Base

ASSET = Path(__file__).parent / "assets" / "schema_v1.sqlite"


def test_new_database_is_created_at_head(db_url: str) -> None:
    store = CampaignStore(db_url)
    store.list_campaigns()
    assert current_revision(store.engine) == head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert {"campaigns", "points", "measurements", "rounds", "models"} <= tables
    store.close()


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_a_database_of_the_legacy_version_table_is_adopted_and_optuna_can_share_it(
    db_url: str,
) -> None:
    """Databases before 0.2 kept llmco2's revision in `alembic_version`, which Optuna also uses."""
    import optuna

    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        legacy = MigrationContext.configure(conn)  # Alembic's default table, as before 0.2
        legacy.stamp(ScriptDirectory.from_config(_alembic_config()), revision)
    assert current_revision(engine) == revision == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert VERSION_TABLE in tables and "alembic_version" not in tables
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=optuna.storages.RDBStorage(db_url))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert current_revision(engine) == head_revision()  # Optuna's revision is not mistaken for ours
    CampaignStore(db_url).list_campaigns()
    engine.dispose()


def test_a_first_version_file_is_refused_then_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(ASSET, path)
    url = f"sqlite:///{path}"
    with pytest.raises(
        SchemaVersionError, match=r"older than this llmco2 needs.*llmco2 db upgrade"
    ):
        CampaignStore(url).list_campaigns()
    before, after = upgrade(make_engine(url))
    assert (before, after) == ("0001", head_revision())
    store = CampaignStore(url)
    campaign = store.get_campaign("v1-campaign")
    assert campaign.config == {"engine": "vllm", "A": 3}
    assert store.status_counts(campaign.id) == {
        "PENDING": 1,
        "RUNNING": 0,
        "COMPLETE": 1,
        "FAILED": 1,
        "INFEASIBLE": 0,
    }
    measurement = store.get_measurement(1)
    assert measurement is not None and measurement.energy_j == pytest.approx(298.8)
    assert store.rounds(campaign.id) == []  # the table the second revision added
    store.close()


def test_a_newer_schema_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer than this llmco2"):
        CampaignStore(db_url).list_campaigns()
    with pytest.raises(SchemaVersionError, match="newer"):
        upgrade(make_engine(db_url))


def test_an_empty_database_is_not_created_when_reading(sqlite_url: str) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        CampaignStore(sqlite_url, create=False).list_campaigns()
    assert not Path(make_url(sqlite_url).database or "").exists()
    Path(make_url(sqlite_url).database or "").touch()  # a file without llmco2's tables
    with pytest.raises(DatabaseError, match="holds no llmco2 campaigns"):
        CampaignStore(sqlite_url, create=False).list_campaigns()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
