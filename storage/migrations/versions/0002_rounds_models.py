"""Rounds of Algorithm 1 and trained predictor checkpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the models and rounds tables."""
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer(),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("checkpoint", sa.LargeBinary(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("feature_schema_version", sa.Integer(), nullable=False),
        sa.Column("code_version", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer(),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("round_index", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(40), nullable=False),
        sa.Column("points_selected", sa.Integer(), nullable=False),
        sa.Column("train_points", sa.Integer(), nullable=True),
        sa.Column("test_points", sa.Integer(), nullable=True),
        sa.Column("mape", sa.Float(), nullable=True),
        sa.Column("eba5", sa.Float(), nullable=True),
        sa.Column("eba10", sa.Float(), nullable=True),
        sa.Column("eba30", sa.Float(), nullable=True),
        sa.Column("duty_cycle", sa.Float(), nullable=True),
        sa.Column("gpu_hours", sa.Float(), nullable=True),
        sa.Column(
            "model_id",
            sa.Integer(),
            sa.ForeignKey("models.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("campaign_id", "round_index", name="uq_rounds_campaign_round"),
    )


def downgrade() -> None:
    """Drop the rounds and models tables."""
    op.drop_table("rounds")
    op.drop_table("models")
