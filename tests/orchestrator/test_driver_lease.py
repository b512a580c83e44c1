"""The driver's lease: who holds a campaign, renewal by a heartbeat, takeover of a dead holder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from llmco2.errors import CampaignBusyError
from orchestrator.driver_lease import DriverLease, driver_identity, holder_gone, refuse_if_busy
from storage import CampaignStore


def test_a_holder_is_gone_only_when_its_process_on_this_host_is() -> None:
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    assert holder_gone(f"{host}:{exited.stdout.strip()}")
    assert not holder_gone(driver_identity())  # this process
    assert not holder_gone(f"{host}:1")  # init exists (another user's process counts as alive)
    assert not holder_gone(f"another-host-{host}:{exited.stdout.strip()}")  # cannot be checked
    assert not holder_gone("not an identity")


def test_the_lease_is_renewed_while_held_and_released_after(db_url: str) -> None:
    store = CampaignStore(db_url)
    campaign = store.create_campaign("c", {})
    with DriverLease(store, campaign.id, lease_seconds=0.6, driver="other-host:77") as lease:
        time.sleep(1.5)  # over two lease lengths: only the heartbeat keeps it
        assert store.driver_of(campaign.id) == "other-host:77"
        with pytest.raises(CampaignBusyError):
            store.acquire_driver(campaign.id, "elsewhere:1")
        with pytest.raises(CampaignBusyError, match="is being run by other-host:77 since"):
            refuse_if_busy(CampaignStore(db_url), "c")  # as a second CLI would
        assert not lease.lost.is_set()
    assert store.driver_of(campaign.id) is None
    refuse_if_busy(store, "c")  # free again
    refuse_if_busy(store, "no-such-campaign")  # nothing to hold
    store.close()


def test_a_lease_taken_over_is_reported_lost(db_url: str) -> None:
    store = CampaignStore(db_url)
    campaign = store.create_campaign("c", {})
    with DriverLease(store, campaign.id, lease_seconds=0.4) as lease:
        store.acquire_driver(campaign.id, "elsewhere:1", holder_gone=lambda _h: True)
        deadline = time.monotonic() + 5
        while not lease.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost.is_set()
    assert store.driver_of(campaign.id) == "elsewhere:1"  # its exit left the new holder alone
    store.close()


def test_pid_of_this_process_is_in_the_identity() -> None:
    assert driver_identity() == f"{socket.gethostname()}:{os.getpid()}"
