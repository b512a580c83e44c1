"""Several processes writing one campaign: exactly-once results, disjoint claims."""

from __future__ import annotations

import multiprocessing
import random

import pytest

from storage import CampaignStore, MeasurementRecord
from tests.conftest import make_specs


def _measure_until_empty(url: str, owner: str, seed: int) -> tuple[list[int], int, int]:
    """Claim and 'measure' until nothing is pending, re-delivering random results (like Ray).

    Returns the ids this process claimed, how many of its records were stored, and how many
    duplicate deliveries it made.
    """
    store = CampaignStore(url)
    campaign = store.get_campaign("concurrent")
    rng = random.Random(seed)
    claimed: list[int] = []
    stored = duplicates = 0
    while batch := store.claim(campaign.id, owner, rng.randint(1, 8)):
        for point in batch:
            claimed.append(point.id)
            record = MeasurementRecord("simulated", True, energy_j=float(point.id), repeats=3)
            stored += store.record_result(point.id, record)
            if rng.random() < 0.3:
                duplicates += 1
                stored += store.record_result(point.id, record)  # at-least-once delivery
            other = rng.choice(claimed)
            stored += store.record_result(other, record)
    store.close()
    return claimed, stored, duplicates


def run_workers(url: str, processes: int, points: int) -> tuple[CampaignStore, int]:
    store = CampaignStore(url)
    campaign = store.create_campaign("concurrent", {"points": points})
    store.add_points(campaign.id, make_specs(points))
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(
            _measure_until_empty, [(url, f"worker-{n}", n) for n in range(processes)]
        )
    claims = [set(claimed) for claimed, _, _ in results]
    assert sum(len(c) for c in claims) == len(set().union(*claims)) == points  # disjoint
    assert sum(stored for _, stored, _ in results) == points  # every result stored once
    assert sum(dup for _, _, dup in results) > 0  # duplicates really happened
    return store, campaign.id


def test_eight_processes_into_postgresql_exactly_once(postgres_url: str) -> None:
    store, campaign_id = run_workers(postgres_url, processes=8, points=800)
    assert store.measurement_count(campaign_id) == 800
    assert store.status_counts(campaign_id)["COMPLETE"] == 800
    assert store.status_counts(campaign_id)["PENDING"] == 0


@pytest.mark.parametrize("processes", [4])
def test_several_processes_share_one_sqlite_file(sqlite_url: str, processes: int) -> None:
    # SQLite allows many readers and one writer at a time; WAL and the busy timeout make the
    # other writers wait instead of failing.
    store, campaign_id = run_workers(sqlite_url, processes=processes, points=200)
    assert store.measurement_count(campaign_id) == 200
    assert store.status_counts(campaign_id)["COMPLETE"] == 200


def _open_new_database(url: str, start_at: float) -> str:
    """Wait for the common start time, then open the store (creating the schema) and write."""
    import time

    time.sleep(max(0.0, start_at - time.time()))
    store = CampaignStore(url)
    try:
        campaign = store.create_campaign(f"c-{multiprocessing.current_process().pid}", {})
        store.add_points(campaign.id, make_specs(2))
        return str(store.status_counts(campaign.id)["PENDING"])
    finally:
        store.close()


def test_eight_processes_creating_one_new_database_all_succeed(db_url: str) -> None:
    import time

    context = multiprocessing.get_context("spawn")
    with context.Pool(8) as pool:
        # The processes start their imports at different times: a common wall-clock start
        # makes them create the schema at the same moment.
        start_at = time.time() + 8.0
        results = pool.starmap(_open_new_database, [(db_url, start_at)] * 8)
    assert results == ["2"] * 8
    store = CampaignStore(db_url, create=False)
    assert len(store.list_campaigns()) == 8
    store.close()
