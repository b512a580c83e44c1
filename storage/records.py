"""Plain data that goes in and out of the campaign store.

These dataclasses are what drivers and Ray actors pass around (they pickle cheaply); the ORM
models in :mod:`storage.models` never leave the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from featurize.architecture import Architecture
from featurize.gpus import GpuCatalog
from featurize.point import GpuSetup, InferencePoint
from featurize.precision import Precision
from featurize.request import InferenceRequest
from llmco2.errors import CampaignBusyError


class PointStatus(StrEnum):
    """Lifecycle of a point."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    INFEASIBLE = "INFEASIBLE"


#: Statuses a point never leaves.
FINISHED_STATUSES = (PointStatus.COMPLETE, PointStatus.FAILED, PointStatus.INFEASIBLE)
#: Statuses a point may still change from.
OPEN_STATUSES = (PointStatus.PENDING, PointStatus.RUNNING)


class CampaignStatus(StrEnum):
    """Lifecycle of a campaign."""

    ACTIVE = "ACTIVE"
    COMPLETE = "COMPLETE"
    STOPPED = "STOPPED"


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_hex(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def engine_config_identity(point: InferencePoint, engine: str) -> dict[str, Any]:
    """What one engine instance serves: architecture, precision, attention, GPUs, engine."""
    return {
        "architecture": point.architecture.identity(),
        "precision": point.precision.identity(),
        "flash_attention": point.flash_attention,
        "gpu_type": point.setup.gpu.id,
        "gpu_count": point.setup.count,
        "engine": engine,
    }


def config_key(point: InferencePoint, engine: str) -> str:
    """Hash of the engine configuration of ``point``."""
    return sha256_hex(engine_config_identity(point, engine))


def point_key(point: InferencePoint, engine: str) -> str:
    """The deterministic key of a point: engine configuration plus the request."""
    identity = engine_config_identity(point, engine)
    identity["request"] = dataclasses.asdict(point.request)
    return sha256_hex(identity)


@dataclass(frozen=True)
class PointSpec:
    """A point to add to a campaign, with why it was sampled.

    Attributes:
        point: What to measure.
        engine: Engine name (``vllm``, ``transformers``, ``simulated``).
        round_index: Round of Algorithm 1 that sampled it.
        reason: ``initial``, ``selected`` (by the strategy, a neighbour of
            ``parent_point_id`` where it has one), ``engine_fill`` (another request of an engine
            the round loads anyway) or ``reference`` (the campaign's fixed reference point).
        parent_point_id: The high-error point this one neighbours.
        strategy: Name of the sampling strategy.
        split: ``train`` or ``test``.
        replicate: Which measurement of a point measured again on purpose (the reference point,
            once per run): part of the key, so repeats are rows of their own.
    """

    point: InferencePoint
    engine: str
    round_index: int = 0
    reason: str = "initial"
    parent_point_id: int | None = None
    strategy: str | None = None
    split: str = "train"
    replicate: int | None = None

    def row(self) -> dict[str, Any]:
        """Column values of the ``points`` row."""
        p = self.point
        key = point_key(p, self.engine)
        if self.replicate is not None:
            key = sha256_hex({"point": key, "replicate": self.replicate})
        return {
            "key": key,
            "config_key": config_key(p, self.engine),
            "architecture": p.architecture.to_dict(),
            "model_name": p.architecture.name,
            "family": p.architecture.family,
            "weight_bits": p.precision.weight_bits,
            "activation_bits": p.precision.activation_bits,
            "kv_bits": p.precision.kv_bits,
            "expert_weight_bits": p.precision.expert_weight_bits,
            "flash_attention": p.flash_attention,
            "batch_size": p.request.batch_size,
            "prompt_tokens": p.request.prompt_tokens,
            "generated_tokens": p.request.generated_tokens,
            "gpu_type": p.setup.gpu.id,
            "gpu_count": p.setup.count,
            "engine": self.engine,
            "round_index": self.round_index,
            "reason": self.reason,
            "parent_point_id": self.parent_point_id,
            "strategy": self.strategy,
            "split": self.split,
        }


@dataclass(frozen=True)
class StoredPoint:
    """A point as read back from the store."""

    id: int
    campaign_id: int
    key: str
    config_key: str
    architecture: dict[str, Any]
    weight_bits: int
    activation_bits: int
    kv_bits: int
    flash_attention: bool
    batch_size: int
    prompt_tokens: int
    generated_tokens: int
    gpu_type: str
    gpu_count: int
    engine: str
    round_index: int
    reason: str
    split: str
    status: str
    attempts: int
    parent_point_id: int | None = None
    strategy: str | None = None
    lease_owner: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    model_name: str | None = None
    family: str | None = None
    expert_weight_bits: int | None = None

    def inference_point(self, catalog: GpuCatalog | None = None) -> InferencePoint:
        """Rebuild the :class:`InferencePoint` (GPU looked up in ``catalog``, default catalog)."""
        gpus = catalog if catalog is not None else GpuCatalog.default()
        return InferencePoint(
            architecture=Architecture(**self.architecture),
            request=InferenceRequest(self.batch_size, self.prompt_tokens, self.generated_tokens),
            setup=GpuSetup(gpus.get(self.gpu_type), self.gpu_count),
            precision=Precision(
                self.weight_bits, self.activation_bits, self.kv_bits, self.expert_weight_bits
            ),
            flash_attention=self.flash_attention,
        )


@dataclass
class MeasurementRecord:
    """The result of measuring one point (energies in J, times in s, powers in W).

    Energy fields are None where the engine cannot meter energy (vLLM on a CPU).
    """

    engine_name: str
    simulated: bool
    energy_j: float | None = None
    prefill_energy_j: float | None = None
    decode_energy_j: float | None = None
    gpu_energies_j: list[float] | None = None
    latency_s: float | None = None
    prefill_latency_s: float | None = None
    decode_latency_per_token_s: float | None = None
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    repeats: int = 1
    energy_std_j: float | None = None
    energy_cv: float | None = None
    counter_period_s: float | None = None
    noisy: bool = False
    gpu_names: list[str] | None = None
    gpu_uuids: list[str] | None = None
    driver_version: str | None = None
    gpu_state_before: dict[str, Any] | None = None
    gpu_state_after: dict[str, Any] | None = None
    engine_version: str | None = None
    extra: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def columns(self) -> dict[str, Any]:
        """Column values of the ``measurements`` row."""
        return dataclasses.asdict(self)


#: The measurement fields a dataset holds: all but the audit records (GPU state before and
#: after, the engine's extras), which stay in the database.
MEASUREMENT_COLUMNS = tuple(
    name
    for name in MeasurementRecord.__dataclass_fields__
    if name not in ("gpu_state_before", "gpu_state_after", "extra")
)


@dataclass(frozen=True)
class DatasetRows:
    """A campaign's finished points as a dataset reads them.

    Attributes:
        complete: One dict per COMPLETE point: its :class:`StoredPoint` fields but the
            architecture, then its :data:`MEASUREMENT_COLUMNS`.
        failed: One dict per FAILED or INFEASIBLE point, with the same point fields.
        architectures: The architecture of each engine configuration (``config_key``).
    """

    complete: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    architectures: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class CampaignInfo:
    """A campaign's identity and configuration."""

    id: int
    name: str
    config: dict[str, Any]
    config_hash: str
    status: str
    code_version: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class DriverLeaseInfo:
    """Who runs a campaign: the driver holding its lease, since when, for how long still."""

    campaign: str
    driver: str
    since: datetime | None
    remaining_s: float

    def held_against(self, driver: str, holder_gone: Callable[[str], bool]) -> bool:
        """Whether this lease keeps ``driver`` out (another holder that is not known gone)."""
        return self.driver != driver and not holder_gone(self.driver)

    def busy_error(self) -> CampaignBusyError:
        """The error that refuses a second driver."""
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} (database clock)" if self.since else ""
        return CampaignBusyError(
            f"campaign {self.campaign!r} is being run by {self.driver}{since}; its lease ends in "
            f"{self.remaining_s:.0f} s unless that driver renews it"
        )


@dataclass(frozen=True)
class RoundRecord:
    """One round of Algorithm 1."""

    round_index: int
    strategy: str
    points_selected: int
    train_points: int | None = None
    test_points: int | None = None
    mape: float | None = None
    eba5: float | None = None
    eba10: float | None = None
    eba30: float | None = None
    duty_cycle: float | None = None
    gpu_hours: float | None = None
    model_id: int | None = None
