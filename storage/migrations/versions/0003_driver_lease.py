"""The lease a campaign's driver holds (a second driver is refused), GPU time per point.

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
    """Add the driver, its start and its lease's end to the campaigns, GPU time to the points."""
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("driver", sa.String(200), nullable=True))
        batch.add_column(sa.Column("driver_since", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("driver_lease_expires_at", sa.Float(), nullable=True))
    with op.batch_alter_table("points") as batch:
        batch.add_column(sa.Column("gpu_seconds", sa.Float(), server_default="0", nullable=False))


def downgrade() -> None:
    """Drop the driver lease and the points' GPU time."""
    with op.batch_alter_table("points") as batch:
        batch.drop_column("gpu_seconds")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("driver_lease_expires_at")
        batch.drop_column("driver_since")
        batch.drop_column("driver")
