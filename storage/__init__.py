"""Storage: the campaign database, migrations and dataset export (issue 3)."""

from __future__ import annotations
