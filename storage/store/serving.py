"""Serving points in the store: an engine configuration under a load, measured exactly once.

They live beside the points (``serving_points``, ``serving_measurements``) with the same life
(:mod:`storage.store.leases`): added once per key, claimed atomically, leased, finished once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Text, cast, select

from storage.models import ServingMeasurement, ServingPoint
from storage.records import ServingPointSpec, ServingRecord, StoredServingPoint
from storage.store.leases import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, LeaseOperations

#: The ``serving_points`` columns a :class:`StoredServingPoint` holds, in its field order.
SERVING_POINT_COLUMNS = tuple(StoredServingPoint.__dataclass_fields__)
#: The ``serving_measurements`` columns a :class:`ServingRecord` holds, in its field order.
SERVING_RECORD_COLUMNS = tuple(ServingRecord.__dataclass_fields__)
#: Measurement columns named apart from the serving point's of the same name.
_RENAMED = {"max_num_seqs": "engine_max_num_seqs", "requests": "served_requests"}


def _columns() -> list[Any]:
    return [getattr(ServingPoint, name) for name in SERVING_POINT_COLUMNS]


def _stored(row: Any) -> StoredServingPoint:
    return StoredServingPoint(**{name: getattr(row, name) for name in SERVING_POINT_COLUMNS})


class ServingOperations(LeaseOperations):
    """Reads and writes of the ``serving_points`` and ``serving_measurements`` tables."""

    def add_serving_points(self, campaign_id: int, specs: Iterable[ServingPointSpec]) -> list[int]:
        """Insert serving points, skipping keys the campaign has; the ids in order."""
        return self._add_rows(ServingPoint, campaign_id, [spec.row() for spec in specs])

    def claim_serving(
        self,
        campaign_id: int,
        owner: str,
        limit: int = 1,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> list[StoredServingPoint]:
        """Atomically move up to ``limit`` PENDING serving points to RUNNING for ``owner``."""
        rows = self._claim_rows(ServingPoint, _columns(), campaign_id, owner, limit, lease_seconds)
        return sorted((_stored(row) for row in rows), key=lambda p: p.id)

    def release_serving(self, ids: Sequence[int], owner: str) -> int:
        """Give RUNNING serving points back to PENDING without counting an attempt."""
        return self._release_rows(ServingPoint, ids, owner)

    def requeue_expired_serving(
        self, campaign_id: int | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> tuple[int, int]:
        """Requeue serving points whose lease expired; (requeued, failed) counts."""
        return self._requeue_expired_rows(ServingPoint, campaign_id, max_attempts)

    def record_serving_result(
        self, serving_point_id: int, record: ServingRecord, gpu_seconds: float = 0.0
    ) -> bool:
        """Store what serving the load cost and mark it COMPLETE (False: finished already)."""
        values = {"serving_point_id": serving_point_id, **record.columns()}
        return self._complete_row(
            ServingPoint, serving_point_id, gpu_seconds, ServingMeasurement, values
        )

    def record_serving_failure(
        self,
        serving_point_id: int,
        kind: str,
        message: str,
        *,
        retryable: bool = True,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        final_if_repeated: bool = False,
        gpu_seconds: float = 0.0,
    ) -> str | None:
        """Count a failed try, as :meth:`~storage.store.points.PointOperations.record_failure`."""
        return self._fail_row(
            ServingPoint, serving_point_id, kind, message, retryable=retryable,
            max_attempts=max_attempts, final_if_repeated=final_if_repeated,
            gpu_seconds=gpu_seconds,
        )  # fmt: skip

    def record_serving_infeasible(
        self,
        serving_point_id: int,
        reason: str,
        kind: str = "infeasible",
        gpu_seconds: float = 0.0,
    ) -> bool:
        """Mark a serving point INFEASIBLE: it is never retried."""
        return self._infeasible_row(ServingPoint, serving_point_id, reason, kind, gpu_seconds)

    def get_serving_points(
        self, campaign_id: int, *, statuses: Sequence[str] | None = None
    ) -> list[StoredServingPoint]:
        """Serving points of a campaign, lowest id first, optionally of some statuses."""
        conditions = [ServingPoint.campaign_id == campaign_id]
        if statuses is not None:
            conditions.append(ServingPoint.status.in_(statuses))
        with self._reading() as conn:
            rows = conn.execute(
                select(*_columns()).where(*conditions).order_by(ServingPoint.id)
            ).all()
        return [_stored(row) for row in rows]

    def serving_status_counts(self, campaign_id: int) -> dict[str, int]:
        """Serving points per status (every status present, zeros included)."""
        return self._status_counts_of(ServingPoint, campaign_id)

    def get_serving_measurement(self, serving_point_id: int) -> ServingRecord | None:
        """The measurement of a serving point, if it has one."""
        with self._reading() as conn:
            row = conn.execute(
                select(*(getattr(ServingMeasurement, f) for f in SERVING_RECORD_COLUMNS)).where(
                    ServingMeasurement.serving_point_id == serving_point_id
                )
            ).one_or_none()
        if row is None:
            return None
        return ServingRecord(**dict(zip(SERVING_RECORD_COLUMNS, row, strict=True)))

    def serving_rows(
        self, campaign_id: int, *, json_as_text: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Every COMPLETE serving point with its measurement, lowest id first, one snapshot.

        Each row holds the serving point's columns (the architecture as a dict) and the
        measurement's, whose ``max_num_seqs`` (the engine's own scheduler) is
        ``engine_max_num_seqs`` and whose ``requests`` (those served, the load's) is
        ``served_requests``; ``json_as_text`` names measurement fields to return as their
        stored JSON text.
        """
        point_cols = [c for c in _columns() if c.key not in ("lease_owner", "status")]
        point_cols.append(ServingPoint.gpu_seconds)
        record_cols = [
            cast(getattr(ServingMeasurement, name), Text).label(_RENAMED.get(name, name))
            if name in json_as_text
            else getattr(ServingMeasurement, name).label(_RENAMED.get(name, name))
            for name in SERVING_RECORD_COLUMNS
        ]
        with self._reading(snapshot=True) as conn:
            rows = conn.execute(
                select(*point_cols, *record_cols)
                .join(ServingMeasurement, ServingMeasurement.serving_point_id == ServingPoint.id)
                .where(ServingPoint.campaign_id == campaign_id, ServingPoint.status == "COMPLETE")
                .order_by(ServingPoint.id)
            ).all()
        return [dict(row._mapping) for row in rows]
