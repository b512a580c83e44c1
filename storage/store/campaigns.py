"""Campaigns in the store: create or resume by name, the driver's lease, the status."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, func, literal, select, update

from llmco2.errors import CampaignConflictError, UnknownCampaignError
from llmco2.version import code_version
from storage.models import Campaign
from storage.records import CampaignInfo, CampaignStatus, DriverLeaseInfo, sha256_hex
from storage.store.base import StoreBase, server_epoch

#: Default lease of a campaign's driver: it renews it several times within (see orchestrator).
DEFAULT_DRIVER_LEASE_SECONDS = 60.0


class CampaignOperations(StoreBase):
    """Reads and writes of the ``campaigns`` table."""

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
        with self._transaction() as conn:
            inserted = (
                conn.execute(
                    self._insert(Campaign)
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
            info = _campaign_info(conn.execute(select(Campaign).where(Campaign.name == name)).one())
            if info.config_hash != config_hash:
                if not (replace_config and load_if_exists):
                    raise CampaignConflictError(
                        f"campaign {name!r} exists with a different configuration "
                        f"(hash {info.config_hash[:12]} vs {config_hash[:12]}); choose a new "
                        "name (--new-name) or continue it with the new configuration (--force)"
                    )
                conn.execute(
                    update(Campaign)
                    .where(Campaign.id == info.id)
                    .values(config=config, config_hash=config_hash)
                )
                return dataclasses.replace(info, config=config, config_hash=config_hash)
        if not load_if_exists and not inserted:
            raise CampaignConflictError(f"campaign {name!r} exists already")
        return info

    def get_campaign(self, name: str) -> CampaignInfo:
        """The campaign called ``name``.

        Raises:
            UnknownCampaignError: With the known names, when none is called so.
        """
        with self._reading() as conn:
            row = conn.execute(select(Campaign).where(Campaign.name == name)).one_or_none()
            if row is None:
                known = list(conn.execute(select(Campaign.name).order_by(Campaign.name)).scalars())
        if row is None:
            listing = ", ".join(repr(n) for n in known[:10]) if known else "none"
            raise UnknownCampaignError(
                f"no campaign {name!r} in {self.url} (campaigns there: {listing})"
            )
        return _campaign_info(row)

    def list_campaigns(self) -> list[CampaignInfo]:
        """All campaigns, oldest first."""
        with self._reading() as conn:
            rows = conn.execute(select(Campaign).order_by(Campaign.id)).all()
        return [_campaign_info(row) for row in rows]

    def set_campaign_status(self, campaign_id: int, status: CampaignStatus) -> None:
        """Mark a campaign ACTIVE, COMPLETE or STOPPED."""
        with self._transaction() as conn:
            conn.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(status=status, updated_at=func.now())
            )

    # The driver's lease --------------------------------------------------------------------
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
        with self._transaction() as conn:
            lease = _driver_lease(conn, campaign_id, for_update=True)
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
        with self._transaction() as conn:
            result = conn.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id, Campaign.driver == driver)
                .values(driver_lease_expires_at=server_epoch() + literal(float(lease_seconds)))
            )
        return bool(result.rowcount)

    def release_driver(self, campaign_id: int, driver: str) -> bool:
        """Give the lease up (a driver's clean end); False when ``driver`` did not hold it."""
        with self._transaction() as conn:
            result = conn.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id, Campaign.driver == driver)
                .values(driver=None, driver_since=None, driver_lease_expires_at=None)
            )
        return bool(result.rowcount)

    def driver_lease(self, campaign_id: int) -> DriverLeaseInfo | None:
        """The driver whose lease on the campaign has not ended, if any."""
        with self._reading() as conn:
            return _driver_lease(conn, campaign_id)

    def driver_of(self, campaign_id: int) -> str | None:
        """The id of the driver whose lease on the campaign has not ended, if any."""
        lease = self.driver_lease(campaign_id)
        return lease.driver if lease is not None else None


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


def _campaign_info(row: Any) -> CampaignInfo:
    campaign = row._mapping
    return CampaignInfo(**{name: campaign[name] for name in CampaignInfo.__dataclass_fields__})
