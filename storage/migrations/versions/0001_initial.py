"""Initial schema: campaigns, points, measurements.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the first schema version."""
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code_version", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "points",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer(),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("config_key", sa.String(64), nullable=False),
        sa.Column("architecture", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(300), nullable=False),
        sa.Column("family", sa.String(40), nullable=False),
        sa.Column("weight_bits", sa.Integer(), nullable=False),
        sa.Column("activation_bits", sa.Integer(), nullable=False),
        sa.Column("kv_bits", sa.Integer(), nullable=False),
        sa.Column("flash_attention", sa.Boolean(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("generated_tokens", sa.Integer(), nullable=False),
        sa.Column("gpu_type", sa.String(80), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("engine", sa.String(40), nullable=False),
        sa.Column("round_index", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column(
            "parent_point_id",
            sa.Integer(),
            sa.ForeignKey("points.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("strategy", sa.String(40), nullable=True),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("error_kind", sa.String(40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("campaign_id", "key", name="uq_points_campaign_key"),
    )
    op.create_index("ix_points_claim", "points", ["campaign_id", "status", "config_key"])
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "point_id",
            sa.Integer(),
            sa.ForeignKey("points.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("energy_j", sa.Float(), nullable=True),
        sa.Column("prefill_energy_j", sa.Float(), nullable=True),
        sa.Column("decode_energy_j", sa.Float(), nullable=True),
        sa.Column("gpu_energies_j", sa.JSON(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=True),
        sa.Column("prefill_latency_s", sa.Float(), nullable=True),
        sa.Column("decode_latency_per_token_s", sa.Float(), nullable=True),
        sa.Column("avg_power_w", sa.Float(), nullable=True),
        sa.Column("idle_power_w", sa.Float(), nullable=True),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("energy_std_j", sa.Float(), nullable=True),
        sa.Column("energy_cv", sa.Float(), nullable=True),
        sa.Column("counter_period_s", sa.Float(), nullable=True),
        sa.Column("noisy", sa.Boolean(), nullable=False),
        sa.Column("gpu_names", sa.JSON(), nullable=True),
        sa.Column("gpu_uuids", sa.JSON(), nullable=True),
        sa.Column("driver_version", sa.String(40), nullable=True),
        sa.Column("gpu_state_before", sa.JSON(), nullable=True),
        sa.Column("gpu_state_after", sa.JSON(), nullable=True),
        sa.Column("engine_name", sa.String(40), nullable=False),
        sa.Column("engine_version", sa.String(80), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    """Drop everything."""
    op.drop_table("measurements")
    op.drop_index("ix_points_claim", table_name="points")
    op.drop_table("points")
    op.drop_table("campaigns")
