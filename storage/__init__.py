"""Storage: the campaign database (SQLite or PostgreSQL), its migrations and dataset export.

The public surface is :class:`CampaignStore` and the plain records it takes and returns;
``storage.export`` writes datasets (imported on demand: it needs pyarrow, and PyG for graphs).
"""

from __future__ import annotations

from llmco2.defaults import DEFAULT_DATABASE_URL
from storage.database import (
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    mask_url,
    upgrade,
)
from storage.records import (
    FINISHED_STATUSES,
    OPEN_STATUSES,
    CampaignInfo,
    CampaignStatus,
    MeasurementRecord,
    PointSpec,
    PointStatus,
    RoundRecord,
    ServingPointSpec,
    ServingRecord,
    StoredPoint,
    StoredServingPoint,
    config_key,
    point_key,
)
from storage.store import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, CampaignStore

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_ATTEMPTS",
    "FINISHED_STATUSES",
    "OPEN_STATUSES",
    "CampaignInfo",
    "CampaignStatus",
    "CampaignStore",
    "MeasurementRecord",
    "PointSpec",
    "PointStatus",
    "RoundRecord",
    "ServingPointSpec",
    "ServingRecord",
    "StoredPoint",
    "StoredServingPoint",
    "config_key",
    "current_revision",
    "ensure_schema",
    "head_revision",
    "make_engine",
    "mask_url",
    "point_key",
    "upgrade",
]
