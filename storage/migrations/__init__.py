"""Alembic migrations of the campaign database (shipped with the package)."""
