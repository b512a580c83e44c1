"""Serving points (an engine configuration under a load) and their measurements.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _campaign_id() -> sa.Column[int]:
    return sa.Column(
        "campaign_id",
        sa.Integer(),
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    """Add the serving_points and serving_measurements tables."""
    op.create_table(
        "serving_points",
        sa.Column("id", sa.Integer(), primary_key=True),
        _campaign_id(),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("config_key", sa.String(64), nullable=False),
        sa.Column("architecture", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(300), nullable=False),
        sa.Column("family", sa.String(40), nullable=False),
        sa.Column("weight_bits", sa.Integer(), nullable=False),
        sa.Column("activation_bits", sa.Integer(), nullable=False),
        sa.Column("kv_bits", sa.Integer(), nullable=False),
        sa.Column("expert_weight_bits", sa.Integer(), nullable=True),
        sa.Column("flash_attention", sa.Boolean(), nullable=False),
        sa.Column("gpu_type", sa.String(80), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("engine", sa.String(40), nullable=False),
        sa.Column("trace", sa.Text(), nullable=False),
        sa.Column("trace_sha256", sa.String(64), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("rate_per_s", sa.Float(), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("max_context", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("max_num_seqs", sa.Integer(), nullable=False),
        sa.Column("round_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("gpu_seconds", sa.Float(), server_default="0", nullable=False),
        sa.Column("error_kind", sa.String(40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("campaign_id", "key", name="uq_serving_points_campaign_key"),
    )
    op.create_index("ix_serving_points_claim", "serving_points", ["campaign_id", "status"])
    op.create_table(
        "serving_measurements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "serving_point_id",
            sa.Integer(),
            sa.ForeignKey("serving_points.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("per_request_j", sa.Float(), nullable=True),
        sa.Column("per_output_token_j", sa.Float(), nullable=True),
        sa.Column("per_input_token_j", sa.Float(), nullable=True),
        sa.Column("window_s", sa.Float(), nullable=True),
        sa.Column("window_requests", sa.Integer(), nullable=False),
        sa.Column("window_energy_j", sa.Float(), nullable=True),
        sa.Column("total_energy_j", sa.Float(), nullable=True),
        sa.Column("total_s", sa.Float(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("requests_per_s", sa.Float(), nullable=False),
        sa.Column("output_tokens_per_s", sa.Float(), nullable=False),
        sa.Column("mean_running", sa.Float(), nullable=True),
        sa.Column("ttft_s", sa.JSON(), nullable=True),
        sa.Column("tpot_s", sa.JSON(), nullable=True),
        sa.Column("timeline", sa.JSON(), nullable=True),
        sa.Column("max_num_seqs", sa.Integer(), nullable=True),
        sa.Column("gpu_names", sa.JSON(), nullable=True),
        sa.Column("gpu_uuids", sa.JSON(), nullable=True),
        sa.Column("driver_version", sa.String(40), nullable=True),
        sa.Column("engine_name", sa.String(40), nullable=False),
        sa.Column("engine_version", sa.String(80), nullable=True),
        sa.Column("engine_settings", sa.JSON(), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    """Drop the serving tables."""
    op.drop_table("serving_measurements")
    op.drop_index("ix_serving_points_claim", table_name="serving_points")
    op.drop_table("serving_points")
