"""The life both kinds of point share: claimed atomically, leased, finished exactly once.

Points (one request) and serving points (a load) live in tables of their own with the same
lifecycle columns (``status``, ``attempts``, ``lease_owner``, ``lease_expires_at``,
``gpu_seconds``, ``error_kind``, ``error_message``, ``finished_at``); these operations take the
table they work on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Update, case, func, insert, literal, select, update

from storage.models import Point, ServingPoint
from storage.records import OPEN_STATUSES, PointStatus
from storage.store.base import StoreBase, server_epoch

#: A table of points: each row moves PENDING → RUNNING → COMPLETE | FAILED | INFEASIBLE.
LeasedTable = type[Point] | type[ServingPoint]

#: Default lease of a claimed point: longer than the slowest measurement of one point.
DEFAULT_LEASE_SECONDS = 900.0
#: Default number of tries before a point is FAILED.
DEFAULT_MAX_ATTEMPTS = 3


#: Rows inserted per statement.
_INSERT_CHUNK = 500


class LeaseOperations(StoreBase):
    """Claims, leases and the end of a try, on the table each call names."""

    def _add_rows(
        self, table: LeasedTable, campaign_id: int, rows: Sequence[dict[str, Any]]
    ) -> list[int]:
        """Insert PENDING rows, skipping keys the campaign has; the ids of all, in order."""
        if not rows:
            return []
        ids: dict[str, int] = {}
        with self._transaction() as conn:
            for start in range(0, len(rows), _INSERT_CHUNK):
                chunk = rows[start : start + _INSERT_CHUNK]
                fresh = {"campaign_id": campaign_id, "status": PointStatus.PENDING, "attempts": 0}
                conn.execute(
                    self._insert(table)
                    .values([{**row, **fresh} for row in chunk])
                    .on_conflict_do_nothing(index_elements=["campaign_id", "key"])
                )
                found = conn.execute(
                    select(table.key, table.id).where(
                        table.campaign_id == campaign_id,
                        table.key.in_([row["key"] for row in chunk]),
                    )
                ).all()
                ids.update({key: row_id for key, row_id in found})
        return [ids[row["key"]] for row in rows]

    def _claim_rows(
        self,
        table: LeasedTable,
        columns: Sequence[Any],
        campaign_id: int,
        owner: str,
        limit: int,
        lease_seconds: float,
        *conditions: ColumnElement[bool],
    ) -> list[Row[Any]]:
        """Atomically move up to ``limit`` PENDING rows to RUNNING for ``owner``, lowest id first.

        Returns the claimed rows' ``columns``.
        """
        if limit < 1:
            return []
        candidates = (
            select(table.id)
            .where(
                table.campaign_id == campaign_id, table.status == PointStatus.PENDING, *conditions
            )
            .order_by(table.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the write lock
            # A CTE is evaluated once. As an IN-subquery PostgreSQL may rescan it per row,
            # and every rescan skips the rows this statement just locked: LIMIT is exceeded.
            .cte("claimable")
        )
        statement = (
            update(table)
            .where(table.id.in_(select(candidates.c.id)), table.status == PointStatus.PENDING)
            .values(
                status=PointStatus.RUNNING,
                lease_owner=owner,
                lease_expires_at=server_epoch() + literal(float(lease_seconds)),
                updated_at=func.now(),
            )
            .returning(*columns)
        )
        with self._transaction() as conn:
            return list(conn.execute(statement).all())

    def _update_owned(
        self, table: LeasedTable, ids: Sequence[int], owner: str, **values: Any
    ) -> int:
        """Set ``values`` on the RUNNING rows among ``ids`` that ``owner`` holds."""
        if not ids:
            return 0
        with self._transaction() as conn:
            result = conn.execute(
                update(table)
                .where(
                    table.id.in_(ids),
                    table.status == PointStatus.RUNNING,
                    table.lease_owner == owner,
                )
                .values(**values)
            )
        return int(result.rowcount)

    def _release_rows(self, table: LeasedTable, ids: Sequence[int], owner: str) -> int:
        """Give RUNNING rows back to PENDING without counting an attempt."""
        return self._update_owned(
            table, ids, owner, status=PointStatus.PENDING, lease_owner=None,
            lease_expires_at=None, updated_at=func.now(),
        )  # fmt: skip

    def _requeue_expired_rows(
        self, table: LeasedTable, campaign_id: int | None, max_attempts: int
    ) -> tuple[int, int]:
        """Expired leases back to PENDING with one more attempt, or FAILED at the limit."""
        exhausted = table.attempts + 1 >= max_attempts
        conditions = [
            table.status == PointStatus.RUNNING,
            table.lease_expires_at < server_epoch(),
        ]
        if campaign_id is not None:
            conditions.append(table.campaign_id == campaign_id)
        statement = (
            update(table)
            .where(*conditions)
            .values(
                status=case((exhausted, PointStatus.FAILED), else_=PointStatus.PENDING),
                attempts=table.attempts + 1,
                error_kind=case((exhausted, "lease_expired"), else_=table.error_kind),
                error_message=case(
                    (exhausted, f"lease expired {max_attempts} times"),
                    else_=table.error_message,
                ),
                finished_at=case((exhausted, func.now()), else_=None),
                lease_owner=None,
                lease_expires_at=None,
                updated_at=func.now(),
            )
            .returning(table.status)
        )
        with self._transaction() as conn:
            statuses = conn.execute(statement).scalars().all()
        failed = sum(1 for status in statuses if status == PointStatus.FAILED)
        return len(statuses) - failed, failed

    def _complete_row(
        self,
        table: LeasedTable,
        row_id: int,
        gpu_seconds: float,
        results: Any,
        values: dict[str, Any],
    ) -> bool:
        """Mark a row COMPLETE and insert its result row (``values`` into ``results``).

        Returns False, changing nothing, if the row was finished already.
        """
        with self._transaction() as conn:
            moved = conn.execute(
                ending_try(
                    table, row_id, gpu_seconds, status=PointStatus.COMPLETE, finished_at=func.now()
                )
            )
            if moved.rowcount != 1:
                return False
            conn.execute(insert(results).values(**values))
        return True

    def _fail_row(
        self,
        table: LeasedTable,
        row_id: int,
        kind: str,
        message: str,
        *,
        retryable: bool,
        max_attempts: int,
        final_if_repeated: bool,
        gpu_seconds: float,
    ) -> str | None:
        """Count a failed try (see :meth:`PointOperations.record_failure`)."""
        repeated = (table.error_kind == kind[:40]) & (table.error_message == message)
        final = (
            literal(not retryable)
            | (table.attempts + 1 >= max_attempts)
            | (literal(final_if_repeated) & repeated)
        )
        with self._transaction() as conn:
            status = conn.execute(
                ending_try(
                    table,
                    row_id,
                    gpu_seconds,
                    status=case((final, PointStatus.FAILED), else_=PointStatus.PENDING),
                    attempts=table.attempts + 1,
                    error_kind=kind[:40],
                    error_message=message,
                    finished_at=case((final, func.now()), else_=None),
                ).returning(table.status)
            ).scalar_one_or_none()
        return str(status) if status is not None else None

    def _infeasible_row(
        self, table: LeasedTable, row_id: int, reason: str, kind: str, gpu_seconds: float
    ) -> bool:
        """Mark a row INFEASIBLE, never retried; False if it was finished already."""
        with self._transaction() as conn:
            moved = conn.execute(
                ending_try(
                    table,
                    row_id,
                    gpu_seconds,
                    status=PointStatus.INFEASIBLE,
                    error_kind=kind[:40],
                    error_message=reason,
                    finished_at=func.now(),
                )
            )
        return moved.rowcount == 1

    def _gpu_seconds_of(self, table: LeasedTable, campaign_id: int) -> float:
        with self._reading() as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(table.gpu_seconds), 0.0)).where(
                    table.campaign_id == campaign_id
                )
            ).scalar_one()
        return float(total)

    def _status_counts_of(self, table: LeasedTable, campaign_id: int) -> dict[str, int]:
        with self._reading() as conn:
            rows = conn.execute(
                select(table.status, func.count())
                .where(table.campaign_id == campaign_id)
                .group_by(table.status)
            ).all()
        counts = {status.value: 0 for status in PointStatus}
        counts.update({str(status): int(n) for status, n in rows})
        return counts


def ending_try(table: LeasedTable, row_id: int, gpu_seconds: float, **values: Any) -> Update:
    """The UPDATE that ends a try of an open row: its GPU time added, its lease given up.

    It matches nothing once the row is finished, so a result delivered twice changes nothing.
    """
    return (
        update(table)
        .where(table.id == row_id, table.status.in_(OPEN_STATUSES))
        .values(
            gpu_seconds=table.gpu_seconds + literal(float(gpu_seconds)),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=func.now(),
            **values,
        )
    )
