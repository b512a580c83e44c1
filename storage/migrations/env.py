"""Alembic environment: runs on the connection llmco2 hands over (see storage.schema)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from storage.database import VERSION_TABLE
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Migrate on ``config.attributes['connection']`` (llmco2 always provides one)."""
    connection: Connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("llmco2 migrations run online only: use `llmco2 db upgrade`")
run_migrations_online()
