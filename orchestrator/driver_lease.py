"""The lease a campaign driver holds on its campaign, renewed by a heartbeat thread.

Two drivers of one campaign would measure and train the same round twice: the second is refused
at once while the first one's lease lasts. A driver that died on this host (its process is gone)
is taken over at once; one on another host, or one that hangs, when its lease ends.
"""

from __future__ import annotations

import os
import socket
import threading
from types import TracebackType

from storage import CampaignStore
from storage.store import DEFAULT_DRIVER_LEASE_SECONDS

#: Renewals per lease: a driver whose database is slow for a while still keeps it.
RENEWALS_PER_LEASE = 4


def driver_identity() -> str:
    """``HOST:PID`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` (``HOST:PID``) was a process of this host that no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's process cannot be checked from here
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False


def refuse_if_busy(store: CampaignStore, name: str) -> None:
    """Fail at once when a live driver holds campaign ``name`` (before Ray or training start).

    Raises:
        CampaignBusyError: Another driver holds it.
    """
    campaign = next((c for c in store.list_campaigns() if c.name == name), None)
    if campaign is None:
        return
    lease = store.driver_lease(campaign.id)
    if lease is not None and lease.held_against(driver_identity(), holder_gone):
        raise lease.busy_error()


class DriverLease:
    """Hold a campaign's driver lease while the ``with`` block runs.

    Raises:
        CampaignBusyError: On entry, when another driver holds the campaign.
    """

    def __init__(
        self,
        store: CampaignStore,
        campaign_id: int,
        lease_seconds: float = DEFAULT_DRIVER_LEASE_SECONDS,
        driver: str | None = None,
    ) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.lease_seconds = lease_seconds
        self.driver = driver or driver_identity()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DriverLease:
        self.store.acquire_driver(
            self.campaign_id, self.driver, self.lease_seconds, holder_gone=holder_gone
        )
        self._thread = threading.Thread(target=self._renew, name="llmco2-driver-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        interval = self.lease_seconds / RENEWALS_PER_LEASE
        while not self._stop.wait(interval):
            try:
                if not self.store.renew_driver(self.campaign_id, self.driver, self.lease_seconds):
                    self.lost.set()
                    return
            except Exception:  # a database hiccup: the next renewal tries again
                continue

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.store.release_driver(self.campaign_id, self.driver)
