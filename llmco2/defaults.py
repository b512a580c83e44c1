"""Defaults shared by the CLI, the campaign config and the store (importable without SQLAlchemy)."""

from __future__ import annotations

#: The campaign database when none is given: SQLite in the working directory.
DEFAULT_DATABASE_URL = "sqlite:///llmco2.db"
