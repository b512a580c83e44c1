"""Points in the store: added once, claimed atomically, leased, finished exactly once.

The lease and the end of a try are :mod:`storage.store.leases`'s, shared with serving points.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Text, cast, func, literal, select

from llmco2.errors import InvalidRequestError
from storage.models import Measurement, Point, ServingPoint
from storage.records import (
    MEASUREMENT_COLUMNS,
    DatasetRows,
    MeasurementRecord,
    PointSpec,
    PointStatus,
    StoredPoint,
)
from storage.store.base import POINT_COLUMNS, point_columns, server_epoch, stored_point
from storage.store.leases import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, LeaseOperations


class PointOperations(LeaseOperations):
    """Reads and writes of the ``points`` and ``measurements`` tables."""

    # Adding and claiming ------------------------------------------------------------------
    def add_points(self, campaign_id: int, specs: Iterable[PointSpec]) -> list[int]:
        """Insert points, skipping keys the campaign already has; returns the ids in order.

        The ids of points that existed are returned too, so a resumed driver that re-adds what
        it had sampled learns the same ids.
        """
        rows = []
        for spec in specs:
            if spec.split not in ("train", "test"):
                raise InvalidRequestError(f"split must be 'train' or 'test', got {spec.split!r}")
            rows.append(spec.row())
        return self._add_rows(Point, campaign_id, rows)

    def claim(
        self,
        campaign_id: int,
        owner: str,
        limit: int = 1,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        config_key: str | None = None,
    ) -> list[StoredPoint]:
        """Atomically move up to ``limit`` PENDING points to RUNNING for ``owner``.

        Args:
            campaign_id: The campaign.
            owner: Who claims (driver or actor id); only the owner may heartbeat.
            limit: Most points to claim.
            lease_seconds: Lease length on the database server's clock.
            config_key: Only points of this engine configuration.

        Returns:
            The claimed points, lowest id first.
        """
        conditions = [] if config_key is None else [Point.config_key == config_key]
        rows = self._claim_rows(
            Point, point_columns(), campaign_id, owner, limit, lease_seconds, *conditions
        )
        return sorted((stored_point(row) for row in rows), key=lambda p: p.id)

    def heartbeat(
        self, point_ids: Sequence[int], owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> int:
        """Extend the leases ``owner`` holds on ``point_ids``; returns how many were extended."""
        return self._update_owned(
            Point, point_ids, owner,
            lease_expires_at=server_epoch() + literal(float(lease_seconds)),
        )  # fmt: skip

    def release(self, point_ids: Sequence[int], owner: str) -> int:
        """Give RUNNING points back to PENDING without counting an attempt (clean shutdown)."""
        return self._release_rows(Point, point_ids, owner)

    def requeue_expired(
        self, campaign_id: int | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> tuple[int, int]:
        """Requeue RUNNING points whose lease expired (by the database server's clock).

        Each goes back to PENDING with attempts + 1, or to FAILED once it reaches
        ``max_attempts``.

        Returns:
            (requeued, failed) counts.
        """
        return self._requeue_expired_rows(Point, campaign_id, max_attempts)

    def record_result(
        self, point_id: int, record: MeasurementRecord, gpu_seconds: float = 0.0
    ) -> bool:
        """Store the measurement of a point and mark it COMPLETE.

        Args:
            point_id: The point.
            record: Its measurement.
            gpu_seconds: GPU time this try took (added to the point's).

        Returns:
            True if stored; False if the point was already finished (nothing changes).
        """
        values = {"point_id": point_id, **record.columns()}
        return self._complete_row(Point, point_id, gpu_seconds, Measurement, values)

    def record_failure(
        self,
        point_id: int,
        kind: str,
        message: str,
        *,
        retryable: bool = True,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        final_if_repeated: bool = False,
        gpu_seconds: float = 0.0,
    ) -> str | None:
        """Count a failed try: back to PENDING while tries remain and ``retryable``, else FAILED.

        Args:
            point_id: The point.
            kind: Short failure class (``engine_load_failed``, ``measurement``...).
            message: One line on what went wrong.
            retryable: Whether another try may succeed at all.
            max_attempts: Tries after which the point is FAILED.
            final_if_repeated: Make the point FAILED at once when its previous try failed with
                the same kind and message (a deterministic failure: another try would only
                spend GPU time on the same error).
            gpu_seconds: GPU time this try took (added to the point's).

        Returns:
            The point's new status, or None if it was already finished (nothing changes).
        """
        return self._fail_row(
            Point, point_id, kind, message, retryable=retryable, max_attempts=max_attempts,
            final_if_repeated=final_if_repeated, gpu_seconds=gpu_seconds,
        )  # fmt: skip

    def record_infeasible(
        self, point_id: int, reason: str, kind: str = "infeasible", gpu_seconds: float = 0.0
    ) -> bool:
        """Mark a point INFEASIBLE (out of memory, unsupported): it is never retried."""
        return self._infeasible_row(Point, point_id, reason, kind, gpu_seconds)

    def get_points(
        self,
        campaign_id: int,
        *,
        statuses: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[StoredPoint]:
        """Points of a campaign, lowest id first, optionally filtered."""
        conditions = [Point.campaign_id == campaign_id]
        if statuses is not None:
            conditions.append(Point.status.in_(statuses))
        if ids is not None:
            conditions.append(Point.id.in_(ids))
        columns = point_columns()
        with self._reading() as conn:
            rows = conn.execute(select(*columns).where(*conditions).order_by(Point.id)).all()
        return [stored_point(row) for row in rows]

    def gpu_seconds(self, campaign_id: int) -> float:
        """GPU time every try of the campaign's points and serving points took."""
        return self._gpu_seconds_of(Point, campaign_id) + self._gpu_seconds_of(
            ServingPoint, campaign_id
        )

    def status_counts(self, campaign_id: int) -> dict[str, int]:
        """Points per status (every status present, zeros included)."""
        return self._status_counts_of(Point, campaign_id)

    def measurement_count(self, campaign_id: int) -> int:
        """Measurements stored for the campaign."""
        with self._reading() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(Measurement)
                    .join(Point, Point.id == Measurement.point_id)
                    .where(Point.campaign_id == campaign_id)
                ).scalar_one()
            )

    def get_measurement(self, point_id: int) -> MeasurementRecord | None:
        """The measurement of a point, if it has one."""
        fields = tuple(MeasurementRecord.__dataclass_fields__)
        with self._reading() as conn:
            row = conn.execute(
                select(*(getattr(Measurement, f) for f in fields)).where(
                    Measurement.point_id == point_id
                )
            ).one_or_none()
        return None if row is None else MeasurementRecord(**dict(zip(fields, row, strict=True)))

    def labelled_points(self, campaign_id: int) -> list[tuple[StoredPoint, dict[str, Any]]]:
        """Every COMPLETE point with its energy labels, lowest id first (one query).

        The labels are ``energy_j``, ``prefill_energy_j``, ``decode_energy_j``, ``latency_s``,
        ``prefill_latency_s``, ``simulated`` and ``gpu_uuids``.
        """
        labels = (
            "energy_j", "prefill_energy_j", "decode_energy_j", "latency_s", "prefill_latency_s",
            "simulated", "gpu_uuids",
        )  # fmt: skip
        columns = point_columns()
        columns += [getattr(Measurement, name) for name in labels]
        with self._reading() as conn:
            rows = conn.execute(
                select(*columns)
                .join(Measurement, Measurement.point_id == Point.id)
                .where(Point.campaign_id == campaign_id, Point.status == PointStatus.COMPLETE)
                .order_by(Point.id)
            ).all()
        width = len(POINT_COLUMNS)
        return [
            (
                StoredPoint(**dict(zip(POINT_COLUMNS, row[:width], strict=True))),
                dict(zip(labels, row[width:], strict=True)),
            )
            for row in rows
        ]

    def dataset_rows(self, campaign_id: int, *, json_as_text: Sequence[str] = ()) -> DatasetRows:
        """The campaign's finished points as a dataset reads them, in one snapshot.

        Writers go on while it reads (SQLite reads a WAL snapshot without the write lock).
        Architectures are read once per engine configuration rather than once per row: decoding
        the same JSON for 100,000 rows would dominate an export.

        Args:
            campaign_id: The campaign.
            json_as_text: Measurement fields holding JSON to return as the JSON text stored,
                without a decode and re-encode.
        """
        fields = [name for name in POINT_COLUMNS if name != "architecture"]
        point_cols = [getattr(Point, name) for name in fields]
        label_cols = [
            cast(getattr(Measurement, name), Text) if name in json_as_text
            else getattr(Measurement, name)
            for name in MEASUREMENT_COLUMNS
        ]  # fmt: skip
        first_of_config = (
            select(func.min(Point.id))
            .where(Point.campaign_id == campaign_id)
            .group_by(Point.config_key)
            .scalar_subquery()
        )
        with self._reading(snapshot=True) as conn:
            complete = conn.execute(
                select(*point_cols, *label_cols)
                .join(Measurement, Measurement.point_id == Point.id)
                .where(Point.campaign_id == campaign_id, Point.status == PointStatus.COMPLETE)
                .order_by(Point.id)
            ).all()
            failed = conn.execute(
                select(*point_cols)
                .where(
                    Point.campaign_id == campaign_id,
                    Point.status.in_((PointStatus.FAILED, PointStatus.INFEASIBLE)),
                )
                .order_by(Point.id)
            ).all()
            architectures = conn.execute(
                select(Point.config_key, Point.architecture).where(Point.id.in_(first_of_config))
            ).all()
        names = (*fields, *MEASUREMENT_COLUMNS)
        return DatasetRows(
            complete=[dict(zip(names, row, strict=True)) for row in complete],
            failed=[dict(zip(fields, row, strict=True)) for row in failed],
            architectures=dict(architectures),
        )

    def engine_load_rows(self, campaign_id: int) -> list[dict[str, Any]]:
        """Per COMPLETE point, what tells which engine start measured it and what it cost.

        Each row: the point's ``config_key``, ``model_name``, ``gpu_type``, ``gpu_count``, and
        its measurement's ``simulated``, ``gpu_uuids``, ``started_at``, ``finished_at`` and
        ``extra`` (the engine's record: start, load seconds, seconds held and inside windows);
        :func:`storage.engine_loads.engine_loads` groups them by engine start.
        """
        with self._reading(snapshot=True) as conn:
            rows = conn.execute(
                select(
                    Point.config_key, Point.model_name, Point.gpu_type, Point.gpu_count,
                    Measurement.simulated, Measurement.gpu_uuids, Measurement.started_at,
                    Measurement.finished_at, Measurement.extra,
                )
                .join(Measurement, Measurement.point_id == Point.id)
                .where(Point.campaign_id == campaign_id, Point.status == PointStatus.COMPLETE)
                .order_by(Point.id)
            ).all()  # fmt: skip
        return [dict(row._mapping) for row in rows]
