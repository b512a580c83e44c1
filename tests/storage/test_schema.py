"""Schema creation, migrations and version checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from llmco2.errors import DatabaseError, SchemaVersionError
from storage import CampaignStore, current_revision, head_revision, make_engine, upgrade
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
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


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
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer than this llmco2"):
        CampaignStore(db_url).list_campaigns()
    with pytest.raises(SchemaVersionError, match="newer"):
        upgrade(make_engine(db_url))


def test_an_empty_database_is_not_created_when_reading(sqlite_url: str) -> None:
    with pytest.raises(DatabaseError, match="holds no llmco2 campaigns"):
        CampaignStore(sqlite_url, create=False).list_campaigns()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
