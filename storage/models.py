"""The campaign database schema (SQLAlchemy 2, typed ``Mapped`` models).

Contract of the tables, enforced by :class:`storage.store.CampaignStore`:

* A point is identified by ``(campaign_id, key)``; the key hashes everything that determines its
  measurement, so at-least-once delivery from Ray becomes exactly-once in the database.
* A point moves PENDING → RUNNING → COMPLETE | FAILED | INFEASIBLE. The move to RUNNING is an
  atomic claim; COMPLETE, FAILED and INFEASIBLE rows never change again.
* A COMPLETE point has exactly one measurement (``measurements.point_id`` is unique).
* Lease expiry times are seconds since the epoch **on the database server's clock**, so drivers
  on machines with skewed clocks agree on which leases have expired.
* Serving points (an engine configuration under a load: a trace at a concurrency or an arrival
  rate) follow the same life in ``serving_points``; a COMPLETE one has exactly one
  ``serving_measurements`` row.

Any change here needs an Alembic migration in ``storage/migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.records import CampaignStatus, PointStatus


class Base(DeclarativeBase):
    """Declarative base of the llmco2 schema."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Campaign(Base):
    """A named campaign with its full configuration (like an Optuna study)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.ACTIVE)
    code_version: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )
    #: The driver running the campaign (``HOST:PID``), while its lease lasts.
    driver: Mapped[str | None] = mapped_column(String(200))
    driver_since: Mapped[datetime | None] = mapped_column(DateTime)
    #: End of the driver's lease in seconds since the epoch, by the database server's clock.
    driver_lease_expires_at: Mapped[float | None] = mapped_column(Float)

    points: Mapped[list[Point]] = relationship(back_populates="campaign")


class Point(Base):
    """One (architecture, precision, request, GPU setup, engine) to measure."""

    __tablename__ = "points"
    __table_args__ = (
        UniqueConstraint("campaign_id", "key", name="uq_points_campaign_key"),
        Index("ix_points_claim", "campaign_id", "status", "config_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    #: Hash of what one engine instance serves (architecture, precision, GPU type and count,
    #: engine): the scheduler claims points of one configuration for the actor that holds it.
    config_key: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[dict[str, Any]]
    model_name: Mapped[str] = mapped_column(String(300))
    family: Mapped[str] = mapped_column(String(40))
    weight_bits: Mapped[int]
    activation_bits: Mapped[int]
    kv_bits: Mapped[int]
    #: Bits of the routed experts' weights where narrower than the others (NULL: the same).
    expert_weight_bits: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flash_attention: Mapped[bool] = mapped_column(Boolean)
    batch_size: Mapped[int]
    prompt_tokens: Mapped[int]
    generated_tokens: Mapped[int]
    gpu_type: Mapped[str] = mapped_column(String(80))
    gpu_count: Mapped[int]
    engine: Mapped[str] = mapped_column(String(40))
    round_index: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str] = mapped_column(String(20), default="initial")
    parent_point_id: Mapped[int | None] = mapped_column(
        ForeignKey("points.id", ondelete="SET NULL")
    )
    strategy: Mapped[str | None] = mapped_column(String(40))
    split: Mapped[str] = mapped_column(String(8), default="train")
    status: Mapped[str] = mapped_column(String(16), default=PointStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    #: GPU time spent on the point's tries (engine loads included), stored with each result.
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    error_kind: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    campaign: Mapped[Campaign] = relationship(back_populates="points")
    measurement: Mapped[Measurement | None] = relationship(back_populates="point")


class Measurement(Base):
    """The energy label of a COMPLETE point, with everything needed to trust or reject it."""

    __tablename__ = "measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), unique=True)
    energy_j: Mapped[float | None] = mapped_column(Float)
    prefill_energy_j: Mapped[float | None] = mapped_column(Float)
    decode_energy_j: Mapped[float | None] = mapped_column(Float)
    gpu_energies_j: Mapped[list[Any] | None]
    latency_s: Mapped[float | None] = mapped_column(Float)
    prefill_latency_s: Mapped[float | None] = mapped_column(Float)
    decode_latency_per_token_s: Mapped[float | None] = mapped_column(Float)
    avg_power_w: Mapped[float | None] = mapped_column(Float)
    idle_power_w: Mapped[float | None] = mapped_column(Float)
    repeats: Mapped[int] = mapped_column(default=1)
    energy_std_j: Mapped[float | None] = mapped_column(Float)
    energy_cv: Mapped[float | None] = mapped_column(Float)
    counter_period_s: Mapped[float | None] = mapped_column(Float)
    noisy: Mapped[bool] = mapped_column(Boolean, default=False)
    gpu_names: Mapped[list[Any] | None]
    gpu_uuids: Mapped[list[Any] | None]
    driver_version: Mapped[str | None] = mapped_column(String(40))
    gpu_state_before: Mapped[dict[str, Any] | None]
    gpu_state_after: Mapped[dict[str, Any] | None]
    engine_name: Mapped[str] = mapped_column(String(40))
    engine_version: Mapped[str | None] = mapped_column(String(80))
    simulated: Mapped[bool] = mapped_column(Boolean)
    extra: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    point: Mapped[Point] = relationship(back_populates="measurement")


class ServingPoint(Base):
    """One engine configuration serving one load (continuous batching), to measure."""

    __tablename__ = "serving_points"
    __table_args__ = (
        UniqueConstraint("campaign_id", "key", name="uq_serving_points_campaign_key"),
        Index("ix_serving_points_claim", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    #: The engine configuration's hash, as its points have it: both run on one engine start.
    config_key: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[dict[str, Any]]
    model_name: Mapped[str] = mapped_column(String(300))
    family: Mapped[str] = mapped_column(String(40))
    weight_bits: Mapped[int]
    activation_bits: Mapped[int]
    kv_bits: Mapped[int]
    expert_weight_bits: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flash_attention: Mapped[bool] = mapped_column(Boolean)
    gpu_type: Mapped[str] = mapped_column(String(80))
    gpu_count: Mapped[int]
    engine: Mapped[str] = mapped_column(String(40))
    #: ``conv``, ``code`` or a trace file's path; ``trace_sha256`` is the file's content hash.
    trace: Mapped[str] = mapped_column(Text)
    trace_sha256: Mapped[str | None] = mapped_column(String(64))
    concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    requests: Mapped[int]
    max_context: Mapped[int]
    seed: Mapped[int]
    max_num_seqs: Mapped[int]
    round_index: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default=PointStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    error_kind: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class ServingMeasurement(Base):
    """What a COMPLETE serving point cost: per request at steady state and over the whole run."""

    __tablename__ = "serving_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serving_point_id: Mapped[int] = mapped_column(
        ForeignKey("serving_points.id", ondelete="CASCADE"), unique=True
    )
    per_request_j: Mapped[float | None] = mapped_column(Float)
    per_output_token_j: Mapped[float | None] = mapped_column(Float)
    per_input_token_j: Mapped[float | None] = mapped_column(Float)
    window_s: Mapped[float | None] = mapped_column(Float)
    window_requests: Mapped[int]
    window_energy_j: Mapped[float | None] = mapped_column(Float)
    total_energy_j: Mapped[float | None] = mapped_column(Float)
    total_s: Mapped[float] = mapped_column(Float)
    requests: Mapped[int]
    output_tokens: Mapped[int]
    requests_per_s: Mapped[float] = mapped_column(Float)
    output_tokens_per_s: Mapped[float] = mapped_column(Float)
    mean_running: Mapped[float | None] = mapped_column(Float)
    ttft_s: Mapped[dict[str, Any] | None]
    tpot_s: Mapped[dict[str, Any] | None]
    #: Per request: prompt and output tokens, arrival, admission, first token and finish (s).
    timeline: Mapped[list[Any] | None]
    max_num_seqs: Mapped[int | None] = mapped_column(Integer)
    gpu_names: Mapped[list[Any] | None]
    gpu_uuids: Mapped[list[Any] | None]
    driver_version: Mapped[str | None] = mapped_column(String(40))
    engine_name: Mapped[str] = mapped_column(String(40))
    engine_version: Mapped[str | None] = mapped_column(String(80))
    engine_settings: Mapped[dict[str, Any] | None]
    simulated: Mapped[bool] = mapped_column(Boolean)
    extra: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


class Round(Base):
    """One iteration of Algorithm 1: what was selected and how good the model then was."""

    __tablename__ = "rounds"
    __table_args__ = (
        UniqueConstraint("campaign_id", "round_index", name="uq_rounds_campaign_round"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    round_index: Mapped[int]
    strategy: Mapped[str] = mapped_column(String(40))
    points_selected: Mapped[int] = mapped_column(default=0)
    train_points: Mapped[int | None]
    test_points: Mapped[int | None]
    mape: Mapped[float | None] = mapped_column(Float)
    eba5: Mapped[float | None] = mapped_column(Float)
    eba10: Mapped[float | None] = mapped_column(Float)
    eba30: Mapped[float | None] = mapped_column(Float)
    duty_cycle: Mapped[float | None] = mapped_column(Float)
    gpu_hours: Mapped[float | None] = mapped_column(Float)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


class ModelCheckpoint(Base):
    """A trained predictor: its bytes (or where they are), metrics and versions."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    checkpoint: Mapped[bytes | None] = mapped_column(LargeBinary)
    path: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any] | None]
    feature_schema_version: Mapped[int]
    code_version: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
