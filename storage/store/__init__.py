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

The store is one class made of one part per concern: connections and transactions
(:mod:`storage.store.base`), campaigns and their driver's lease (:mod:`storage.store.campaigns`),
points and measurements (:mod:`storage.store.points`), serving points and their
measurements (:mod:`storage.store.serving`) on the lease both share
(:mod:`storage.store.leases`), rounds and trained models
(:mod:`storage.store.rounds`).
"""

from __future__ import annotations

from storage.store.base import server_epoch
from storage.store.campaigns import DEFAULT_DRIVER_LEASE_SECONDS, CampaignOperations
from storage.store.leases import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS
from storage.store.points import PointOperations
from storage.store.rounds import RoundOperations
from storage.store.serving import ServingOperations

__all__ = [
    "DEFAULT_DRIVER_LEASE_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_ATTEMPTS",
    "CampaignStore",
    "server_epoch",
]


class CampaignStore(CampaignOperations, PointOperations, ServingOperations, RoundOperations):
    """All reads and writes of campaigns, points, serving points, measurements, rounds, models.

    Args:
        url: SQLAlchemy URL (``sqlite:///llmco2.db`` by default).
        create: Create the schema in a database that has none of llmco2's tables.
    """
