"""The lease a campaign's driver holds, so that a second driver of it is refused.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the driver, its start and its lease's end to the campaigns."""
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("driver", sa.String(200), nullable=True))
        batch.add_column(sa.Column("driver_since", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("driver_lease_expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop the driver lease."""
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("driver_lease_expires_at")
        batch.drop_column("driver_since")
        batch.drop_column("driver")
