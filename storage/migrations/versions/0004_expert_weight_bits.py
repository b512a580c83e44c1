"""Points may store their routed experts narrower than their other weights (MXFP4 experts).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the experts' weight bit width (NULL: as the other weights) to the points."""
    with op.batch_alter_table("points") as batch:
        batch.add_column(sa.Column("expert_weight_bits", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop the experts' weight bit width."""
    with op.batch_alter_table("points") as batch:
        batch.drop_column("expert_weight_bits")
