"""The campaign store: every result a campaign learns, exactly once, whatever Ray or a crash does.

Contract (modelled on Optuna's RDB storage):

* Every public method is one transaction.
* :meth:`CampaignStore.create_campaign` creates or resumes a campaign by name and refuses a
  different configuration under the same name.
* :meth:`CampaignStore.add_points` is idempotent: a point whose key exists keeps its row.
* :meth:`CampaignStore.claim` moves PENDING points to RUNNING atomically (one conditional UPDATE;
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two drivers never run the same point. The claimer
  owns a RUNNING point until its lease (on the database server's clock) expires;
  :meth:`CampaignStore.requeue_expired` returns expired points to PENDING with one more attempt,
  or fails them at the attempt limit.
* COMPLETE, FAILED and INFEASIBLE rows never change. Recording a result for a point that is
  already finished is a no-op that returns False (Ray may deliver a result twice).
* The store is safe to pickle (it goes to Ray actors): the engine is rebuilt on first use.
* Safe for threads and processes: every call checks a connection out of the engine's pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    case,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from llmco2.defaults import DEFAULT_DATABASE_URL
from llmco2.errors import (
    CampaignConflictError,
    DatabaseError,
    InvalidRequestError,
    UnknownCampaignError,
)
from llmco2.version import code_version
from storage.database import (
    ensure_schema,
    make_engine,
    mask_url,
    parse_url,
    translate_errors,
)
from storage.models import (
    OPEN_STATUSES,
    Campaign,
    CampaignStatus,
    Measurement,
    ModelCheckpoint,
    Point,
    PointStatus,
    Round,
)
from storage.records import (
    CampaignInfo,
    DriverLeaseInfo,
    MeasurementRecord,
    PointSpec,
    RoundRecord,
    StoredPoint,
    sha256_hex,
)

#: Default lease of a claimed point: longer than the slowest measurement of one point.
DEFAULT_LEASE_SECONDS = 900.0
#: Default lease of a campaign's driver: it renews it several times within (see orchestrator).
DEFAULT_DRIVER_LEASE_SECONDS = 60.0
#: Default number of tries before a point is FAILED.
DEFAULT_MAX_ATTEMPTS = 3
_INSERT_CHUNK = 500


class server_epoch(FunctionElement[float]):  # noqa: N801 (reads like the SQL function it is)
    """Seconds since the epoch on the database server's clock."""

    type = Float()
    inherit_cache = True


@compiles(server_epoch, "sqlite")
def _epoch_sqlite(_element: server_epoch, _compiler: Any, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(server_epoch, "postgresql")
def _epoch_postgresql(_element: server_epoch, _compiler: Any, **_kw: Any) -> str:
    return "extract(epoch from clock_timestamp())"


_POINT_COLUMNS = tuple(StoredPoint.__dataclass_fields__)


def _stored_point(row: Any) -> StoredPoint:
    return StoredPoint(**{name: getattr(row, name) for name in _POINT_COLUMNS})


class CampaignStore:
    """All reads and writes of campaigns, points, measurements, rounds and models.

    Args:
        url: SQLAlchemy URL (``sqlite:///llmco2.db`` by default).
        create: Create the schema in a database that has none of llmco2's tables.
    """

    def __init__(self, url: str | URL = DEFAULT_DATABASE_URL, *, create: bool = True) -> None:
        self._url: URL = parse_url(url) if isinstance(url, str) else url
        self._create = create
        self._engine: Engine | None = None

    # Connection management -----------------------------------------------------------------
    @property
    def url(self) -> str:
        """The database URL with its password masked (for display)."""
        return mask_url(self._url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created and schema-checked on first use."""
        if self._engine is None:
            database = self._url.database
            if (
                not self._create
                and self.dialect == "sqlite"
                and database
                and database != ":memory:"
                and not Path(database).expanduser().exists()
            ):
                # A reader must not leave an empty file behind where the user mistyped a path.
                raise DatabaseError(f"database file {database!r} does not exist ({self.url})")
            engine = make_engine(self._url)
            try:
                ensure_schema(engine, create=self._create)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._url.get_backend_name()

    def close(self) -> None:
        """Release the engine's connections (the store stays usable and reconnects)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __getstate__(self) -> dict[str, Any]:
        # Engines hold sockets and locks: a pickled store carries its URL and rebuilds.
        return {"url": self._url.render_as_string(hide_password=False), "create": self._create}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], create=state["create"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"CampaignStore({self.url!r})"

    # Campaigns -----------------------------------------------------------------------------
    def create_campaign(
        self,
        name: str,
        config: dict[str, Any],
        *,
        load_if_exists: bool = True,
        replace_config: bool = False,
    ) -> CampaignInfo:
        """Create a campaign, or resume it when it exists with the same configuration.

        Args:
            name: The campaign's name.
            config: Its configuration (JSON-ready).
            load_if_exists: Resume an existing campaign of that name.
            replace_config: Resume it even with another configuration, which then replaces
                the stored one (what was measured stays).

        Raises:
            CampaignConflictError: The name exists with another configuration (without
                ``replace_config``), or exists and ``load_if_exists`` is off.
        """
        config_hash = sha256_hex(config)
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        with translate_errors(self._url), self.engine.begin() as conn:
            inserted = (
                conn.execute(
                    dialect_insert(Campaign)
                    .values(
                        name=name,
                        config=config,
                        config_hash=config_hash,
                        status=CampaignStatus.ACTIVE,
                        code_version=code_version(),
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                    .returning(Campaign.id)
                ).scalar_one_or_none()
                is not None
            )
            row = conn.execute(select(Campaign).where(Campaign.name == name)).one()
        info = _campaign_info(row)
        if info.config_hash != config_hash and replace_config and load_if_exists:
            with translate_errors(self._url), self.engine.begin() as conn:
                conn.execute(
                    update(Campaign)
                    .where(Campaign.name == name)
                    .values(config=config, config_hash=config_hash)
                )
            return dataclasses.replace(info, config=config, config_hash=config_hash)
        if info.config_hash != config_hash:
            raise CampaignConflictError(
                f"campaign {name!r} exists with a different configuration "
                f"(hash {info.config_hash[:12]} vs {config_hash[:12]}); choose a new name "
                "(--new-name) or continue it with the new configuration (--force)"
            )
        if not load_if_exists and not inserted:
            raise CampaignConflictError(f"campaign {name!r} exists already")
        return info

    def get_campaign(self, name: str) -> CampaignInfo:
        """The campaign called ``name``.

        Raises:
            UnknownCampaignError: With the known names, when none is called so.
        """
        with translate_errors(self._url), self.engine.connect() as conn:
            row = conn.execute(select(Campaign).where(Campaign.name == name)).one_or_none()
            if row is None:
                names = conn.execute(select(Campaign.name).order_by(Campaign.name)).scalars()
                known = list(names)
        if row is None:
            listing = ", ".join(repr(n) for n in known[:10]) if known else "none"
            raise UnknownCampaignError(
                f"no campaign {name!r} in {self.url} (campaigns there: {listing})"
            )
        return _campaign_info(row)

    def list_campaigns(self) -> list[CampaignInfo]:
        """All campaigns, oldest first."""
        with translate_errors(self._url), self.engine.connect() as conn:
            rows = conn.execute(select(Campaign).order_by(Campaign.id)).all()
        return [_campaign_info(row) for row in rows]

    def acquire_driver(
        self,
        campaign_id: int,
        driver: str,
        lease_seconds: float = DEFAULT_DRIVER_LEASE_SECONDS,
        holder_gone: Callable[[str], bool] = lambda _holder: False,
    ) -> None:
        """Take the campaign's driver lease, by the database server's clock.

        Args:
            campaign_id: The campaign.
            driver: Who runs it (``HOST:PID``).
            lease_seconds: How long the lease lasts without :meth:`renew_driver`.
            holder_gone: Says whether another holder is known to be gone (its process no longer
                exists), so that its lease is taken over at once instead of at its end.

        Raises:
            CampaignBusyError: Another driver holds an unexpired lease.
        """
        with translate_errors(self._url), self.engine.begin() as conn:
            lease = self._driver_lease(conn, campaign_id, for_update=True)
            if lease is not None and lease.held_against(driver, holder_gone):
                raise lease.busy_error()
            conn.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(
                    driver=driver,
                    driver_since=func.now()
                    if lease is None or lease.driver != driver
                    else Campaign.driver_since,
                    driver_lease_expires_at=server_epoch() + literal(float(lease_seconds)),
                )
            )

    def renew_driver(
        self, campaign_id: int, driver: str, lease_seconds: float = DEFAULT_DRIVER_LEASE_SECONDS
    ) -> bool:
        """Extend ``driver``'s lease; False when it no longer holds it (another took over)."""
        with translate_errors(self._url), self.engine.begin() as conn:
            result = conn.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id, Campaign.driver == driver)
                .values(driver_lease_expires_at=server_epoch() + literal(float(lease_seconds)))
            )
        return bool(result.rowcount)

    def release_driver(self, campaign_id: int, driver: str) -> bool:
        """Give the lease up (a driver's clean end); False when ``driver`` did not hold it."""
        with translate_errors(self._url), self.engine.begin() as conn:
            result = conn.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id, Campaign.driver == driver)
                .values(driver=None, driver_since=None, driver_lease_expires_at=None)
            )
        return bool(result.rowcount)

    def driver_lease(self, campaign_id: int) -> DriverLeaseInfo | None:
        """The driver whose lease on the campaign has not ended, if any."""
        with translate_errors(self._url), self.engine.connect() as conn:
            return self._driver_lease(conn, campaign_id)

    def driver_of(self, campaign_id: int) -> str | None:
        """The id of the driver whose lease on the campaign has not ended, if any."""
        lease = self.driver_lease(campaign_id)
        return lease.driver if lease is not None else None

    @staticmethod
    def _driver_lease(
        conn: Connection, campaign_id: int, for_update: bool = False
    ) -> DriverLeaseInfo | None:
        statement = select(
            Campaign.name, Campaign.driver, Campaign.driver_since,
            Campaign.driver_lease_expires_at, server_epoch(),
        ).where(Campaign.id == campaign_id)  # fmt: skip
        name, driver, since, expires, now = conn.execute(
            statement.with_for_update() if for_update else statement
        ).one()
        if driver is None or expires is None or expires <= now:
            return None
        return DriverLeaseInfo(name, driver, since, expires - now)

    def set_campaign_status(self, campaign_id: int, status: CampaignStatus) -> None:
        """Mark a campaign ACTIVE, COMPLETE or STOPPED."""
        with translate_errors(self._url), self.engine.begin() as conn:
            conn.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(status=status, updated_at=func.now())
            )

    # Points --------------------------------------------------------------------------------
    def add_points(self, campaign_id: int, specs: Iterable[PointSpec]) -> list[int]:
        """Insert points, skipping keys the campaign already has; returns the ids in order.

        The ids of points that existed are returned too, so a resumed driver that re-adds what
        it had sampled learns the same ids.
        """
        rows = []
        for spec in specs:
            if spec.split not in ("train", "test"):
                raise InvalidRequestError(f"split must be 'train' or 'test', got {spec.split!r}")
            rows.append({**spec.row(), "campaign_id": campaign_id})
        if not rows:
            return []
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        ids: dict[str, int] = {}
        with translate_errors(self._url), self.engine.begin() as conn:
            for start in range(0, len(rows), _INSERT_CHUNK):
                chunk = rows[start : start + _INSERT_CHUNK]
                conn.execute(
                    dialect_insert(Point)
                    .values(
                        [{**row, "status": PointStatus.PENDING, "attempts": 0} for row in chunk]
                    )
                    .on_conflict_do_nothing(index_elements=["campaign_id", "key"])
                )
                keys = [row["key"] for row in chunk]
                found = conn.execute(
                    select(Point.key, Point.id).where(
                        Point.campaign_id == campaign_id, Point.key.in_(keys)
                    )
                ).all()
                ids.update({key: point_id for key, point_id in found})
        return [ids[row["key"]] for row in rows]

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
        if limit < 1:
            return []
        conditions = [Point.campaign_id == campaign_id, Point.status == PointStatus.PENDING]
        if config_key is not None:
            conditions.append(Point.config_key == config_key)
        candidates = (
            select(Point.id)
            .where(*conditions)
            .order_by(Point.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the write lock
            # A CTE is evaluated once. As an IN-subquery PostgreSQL may rescan it per row,
            # and every rescan skips the rows this statement just locked: LIMIT is exceeded.
            .cte("claimable")
        )
        statement = (
            update(Point)
            .where(Point.id.in_(select(candidates.c.id)), Point.status == PointStatus.PENDING)
            .values(
                status=PointStatus.RUNNING,
                lease_owner=owner,
                lease_expires_at=server_epoch() + literal(float(lease_seconds)),
                updated_at=func.now(),
            )
            .returning(*(getattr(Point, name) for name in _POINT_COLUMNS))
        )
        with translate_errors(self._url), self.engine.begin() as conn:
            rows = conn.execute(statement).all()
        return sorted((_stored_point(row) for row in rows), key=lambda p: p.id)

    def heartbeat(
        self, point_ids: Sequence[int], owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> int:
        """Extend the leases ``owner`` holds on ``point_ids``; returns how many were extended."""
        if not point_ids:
            return 0
        with translate_errors(self._url), self.engine.begin() as conn:
            result = conn.execute(
                update(Point)
                .where(*_owned_running(point_ids, owner))
                .values(lease_expires_at=server_epoch() + literal(float(lease_seconds)))
            )
        return int(result.rowcount)

    def release(self, point_ids: Sequence[int], owner: str) -> int:
        """Give RUNNING points back to PENDING without counting an attempt (clean shutdown)."""
        if not point_ids:
            return 0
        with translate_errors(self._url), self.engine.begin() as conn:
            result = conn.execute(
                update(Point)
                .where(*_owned_running(point_ids, owner))
                .values(
                    status=PointStatus.PENDING,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=func.now(),
                )
            )
        return int(result.rowcount)

    def requeue_expired(
        self, campaign_id: int | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> tuple[int, int]:
        """Requeue RUNNING points whose lease expired (by the database server's clock).

        Each goes back to PENDING with attempts + 1, or to FAILED once it reaches
        ``max_attempts``.

        Returns:
            (requeued, failed) counts.
        """
        exhausted = Point.attempts + 1 >= max_attempts
        conditions = [
            Point.status == PointStatus.RUNNING,
            Point.lease_expires_at < server_epoch(),
        ]
        if campaign_id is not None:
            conditions.append(Point.campaign_id == campaign_id)
        statement = (
            update(Point)
            .where(*conditions)
            .values(
                status=case((exhausted, PointStatus.FAILED), else_=PointStatus.PENDING),
                attempts=Point.attempts + 1,
                error_kind=case((exhausted, "lease_expired"), else_=Point.error_kind),
                error_message=case(
                    (exhausted, f"lease expired {max_attempts} times"),
                    else_=Point.error_message,
                ),
                finished_at=case((exhausted, func.now()), else_=None),
                lease_owner=None,
                lease_expires_at=None,
                updated_at=func.now(),
            )
            .returning(Point.status)
        )
        with translate_errors(self._url), self.engine.begin() as conn:
            statuses = conn.execute(statement).scalars().all()
        failed = sum(1 for status in statuses if status == PointStatus.FAILED)
        return len(statuses) - failed, failed

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
        with translate_errors(self._url), self.engine.begin() as conn:
            moved = conn.execute(
                update(Point)
                .where(Point.id == point_id, Point.status.in_(OPEN_STATUSES))
                .values(
                    gpu_seconds=Point.gpu_seconds + literal(float(gpu_seconds)),
                    status=PointStatus.COMPLETE,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=func.now(),
                    updated_at=func.now(),
                )
            )
            if moved.rowcount != 1:
                return False
            conn.execute(insert(Measurement).values(point_id=point_id, **record.columns()))
        return True

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
        repeated = (Point.error_kind == kind[:40]) & (Point.error_message == message)
        final = (
            literal(not retryable)
            | (Point.attempts + 1 >= max_attempts)
            | (literal(final_if_repeated) & repeated)
        )
        with translate_errors(self._url), self.engine.begin() as conn:
            status = conn.execute(
                update(Point)
                .where(Point.id == point_id, Point.status.in_(OPEN_STATUSES))
                .values(
                    gpu_seconds=Point.gpu_seconds + literal(float(gpu_seconds)),
                    status=case((final, PointStatus.FAILED), else_=PointStatus.PENDING),
                    attempts=Point.attempts + 1,
                    error_kind=kind[:40],
                    error_message=message,
                    finished_at=case((final, func.now()), else_=None),
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=func.now(),
                )
                .returning(Point.status)
            ).scalar_one_or_none()
        return str(status) if status is not None else None

    def record_infeasible(
        self, point_id: int, reason: str, kind: str = "infeasible", gpu_seconds: float = 0.0
    ) -> bool:
        """Mark a point INFEASIBLE (out of memory, unsupported): it is never retried."""
        with translate_errors(self._url), self.engine.begin() as conn:
            moved = conn.execute(
                update(Point)
                .where(Point.id == point_id, Point.status.in_(OPEN_STATUSES))
                .values(
                    gpu_seconds=Point.gpu_seconds + literal(float(gpu_seconds)),
                    status=PointStatus.INFEASIBLE,
                    error_kind=kind[:40],
                    error_message=reason,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=func.now(),
                    updated_at=func.now(),
                )
            )
        return moved.rowcount == 1

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
        columns = [getattr(Point, name) for name in _POINT_COLUMNS]
        with translate_errors(self._url), self.engine.connect() as conn:
            rows = conn.execute(select(*columns).where(*conditions).order_by(Point.id)).all()
        return [_stored_point(row) for row in rows]

    def gpu_seconds(self, campaign_id: int) -> float:
        """GPU time every try of the campaign's points took, as stored with their results."""
        with translate_errors(self._url), self.engine.connect() as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(Point.gpu_seconds), 0.0)).where(
                    Point.campaign_id == campaign_id
                )
            ).scalar_one()
        return float(total)

    def status_counts(self, campaign_id: int) -> dict[str, int]:
        """Points per status (every status present, zeros included)."""
        with translate_errors(self._url), self.engine.connect() as conn:
            rows = conn.execute(
                select(Point.status, func.count())
                .where(Point.campaign_id == campaign_id)
                .group_by(Point.status)
            ).all()
        counts = {status.value: 0 for status in PointStatus}
        counts.update({str(status): int(n) for status, n in rows})
        return counts

    def measurement_count(self, campaign_id: int) -> int:
        """Measurements stored for the campaign."""
        with translate_errors(self._url), self.engine.connect() as conn:
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
        with translate_errors(self._url), self.engine.connect() as conn:
            row = conn.execute(
                select(*(getattr(Measurement, f) for f in fields)).where(
                    Measurement.point_id == point_id
                )
            ).one_or_none()
        return None if row is None else MeasurementRecord(**dict(zip(fields, row, strict=True)))

    def labelled_points(self, campaign_id: int) -> list[tuple[StoredPoint, dict[str, Any]]]:
        """Every COMPLETE point with its energy labels, lowest id first (one query).

        The labels are ``energy_j``, ``prefill_energy_j``, ``decode_energy_j``, ``latency_s``,
        ``prefill_latency_s`` and ``simulated``.
        """
        labels = (
            "energy_j", "prefill_energy_j", "decode_energy_j", "latency_s", "prefill_latency_s",
            "simulated",
        )  # fmt: skip
        columns = [getattr(Point, name) for name in _POINT_COLUMNS]
        columns += [getattr(Measurement, name) for name in labels]
        with translate_errors(self._url), self.engine.connect() as conn:
            rows = conn.execute(
                select(*columns)
                .join(Measurement, Measurement.point_id == Point.id)
                .where(Point.campaign_id == campaign_id, Point.status == PointStatus.COMPLETE)
                .order_by(Point.id)
            ).all()
        width = len(_POINT_COLUMNS)
        return [
            (
                StoredPoint(**dict(zip(_POINT_COLUMNS, row[:width], strict=True))),
                dict(zip(labels, row[width:], strict=True)),
            )
            for row in rows
        ]

    # Rounds and models ---------------------------------------------------------------------
    def add_round(self, campaign_id: int, record: RoundRecord) -> int:
        """Persist a finished round; a round index is written once.

        Raises:
            CampaignConflictError: When the campaign already has that round.
        """
        values = {**dataclasses.asdict(record), "campaign_id": campaign_id}
        with translate_errors(self._url), self.engine.begin() as conn:
            exists = conn.execute(
                select(Round.id).where(
                    Round.campaign_id == campaign_id, Round.round_index == record.round_index
                )
            ).scalar_one_or_none()
            if exists is not None:
                raise CampaignConflictError(
                    f"round {record.round_index} of campaign {campaign_id} is already recorded"
                )
            return int(conn.execute(insert(Round).values(values).returning(Round.id)).scalar_one())

    def rounds(self, campaign_id: int) -> list[RoundRecord]:
        """The campaign's rounds in order."""
        fields = tuple(RoundRecord.__dataclass_fields__)
        with translate_errors(self._url), self.engine.connect() as conn:
            rows = conn.execute(
                select(*(getattr(Round, f) for f in fields))
                .where(Round.campaign_id == campaign_id)
                .order_by(Round.round_index)
            ).all()
        return [RoundRecord(**dict(zip(fields, row, strict=True))) for row in rows]

    def save_model(
        self,
        name: str,
        *,
        feature_schema_version: int,
        checkpoint: bytes | None = None,
        path: str | None = None,
        metrics: dict[str, Any] | None = None,
        campaign_id: int | None = None,
    ) -> int:
        """Store a trained predictor (its bytes or where they are); returns its id."""
        if checkpoint is None and path is None:
            raise InvalidRequestError("a model needs its checkpoint bytes or a path")
        with translate_errors(self._url), self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(ModelCheckpoint)
                    .values(
                        name=name,
                        checkpoint=checkpoint,
                        path=path,
                        metrics=metrics,
                        campaign_id=campaign_id,
                        feature_schema_version=feature_schema_version,
                        code_version=code_version(),
                    )
                    .returning(ModelCheckpoint.id)
                ).scalar_one()
            )

    def load_model(self, model_id: int) -> dict[str, Any]:
        """A stored predictor's fields.

        Raises:
            InvalidRequestError: When no model has that id.
        """
        with translate_errors(self._url), self.engine.connect() as conn:
            row = conn.execute(
                select(ModelCheckpoint).where(ModelCheckpoint.id == model_id)
            ).one_or_none()
        if row is None:
            raise InvalidRequestError(f"no model with id {model_id} in {self.url}")
        return dict(row._mapping)

    def server_time(self) -> float:
        """Seconds since the epoch on the database server's clock."""
        with translate_errors(self._url), self.engine.connect() as conn:
            return float(conn.execute(select(server_epoch())).scalar_one())


def _owned_running(point_ids: Sequence[int], owner: str) -> tuple[Any, ...]:
    """Conditions selecting the RUNNING points among ``point_ids`` that ``owner`` holds."""
    return (
        Point.id.in_(point_ids),
        Point.status == PointStatus.RUNNING,
        Point.lease_owner == owner,
    )


def _campaign_info(row: Any) -> CampaignInfo:
    campaign = row._mapping
    return CampaignInfo(
        id=campaign["id"],
        name=campaign["name"],
        config=campaign["config"],
        config_hash=campaign["config_hash"],
        status=campaign["status"],
        code_version=campaign["code_version"],
        created_at=campaign["created_at"],
    )
