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


def engine_identity(
    architecture: Architecture,
    precision: Precision,
    flash_attention: bool,
    setup: GpuSetup,
    engine: str,
) -> dict[str, Any]:
    """What one engine instance serves: architecture, precision, attention, GPUs, engine."""
    return {
        "architecture": architecture.identity(),
        "precision": precision.identity(),
        "flash_attention": flash_attention,
        "gpu_type": setup.gpu.id,
        "gpu_count": setup.count,
        "engine": engine,
    }


def engine_config_identity(point: InferencePoint, engine: str) -> dict[str, Any]:
    """The :func:`engine_identity` of the engine that measures ``point``."""
    return engine_identity(
        point.architecture, point.precision, point.flash_attention, point.setup, engine
    )


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
            **_engine_columns(p.architecture, p.precision, p.flash_attention, p.setup, self.engine),
            "batch_size": p.request.batch_size,
            "prompt_tokens": p.request.prompt_tokens,
            "generated_tokens": p.request.generated_tokens,
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


def _engine_columns(
    architecture: Architecture,
    precision: Precision,
    flash_attention: bool,
    setup: GpuSetup,
    engine: str,
) -> dict[str, Any]:
    """The columns points and serving points share: what their engine is."""
    return {
        "config_key": sha256_hex(
            engine_identity(architecture, precision, flash_attention, setup, engine)
        ),
        "architecture": architecture.to_dict(),
        "model_name": architecture.name,
        "family": architecture.family,
        "weight_bits": precision.weight_bits,
        "activation_bits": precision.activation_bits,
        "kv_bits": precision.kv_bits,
        "expert_weight_bits": precision.expert_weight_bits,
        "flash_attention": flash_attention,
        "gpu_type": setup.gpu.id,
        "gpu_count": setup.count,
        "engine": engine,
    }


@dataclass(frozen=True)
class ServingPointSpec:
    """An engine configuration serving one load, to add to a campaign.

    The load is a trace (``conv``, ``code`` or a request file) served as a closed loop at a
    concurrency or an open loop at an arrival rate (see :class:`workers.serving.ServingLoad`).

    Attributes:
        architecture: The model shape.
        precision: Its bit widths.
        setup: GPU type and count (tensor parallel).
        flash_attention: Whether attention is fused.
        engine: Engine name.
        trace: ``conv``, ``code`` or a trace file's path.
        concurrency: Requests in flight of a closed loop (None: open loop).
        rate_per_s: Arrival rate of an open loop (None: closed loop).
        requests: Requests the run serves.
        max_context: Most prompt plus output tokens of a drawn request.
        seed: Seed of the drawn lengths and arrivals.
        max_num_seqs: Sequences the engine's scheduler runs at once.
        trace_sha256: Content hash of a trace file (part of the key: an edited file is a new
            load).
        round_index: Round of Algorithm 1 whose engines it rides on.
    """

    architecture: Architecture
    precision: Precision
    setup: GpuSetup
    flash_attention: bool
    engine: str
    trace: str
    concurrency: int | None
    rate_per_s: float | None
    requests: int
    max_context: int
    seed: int
    max_num_seqs: int
    trace_sha256: str | None = None
    round_index: int = 0

    def row(self) -> dict[str, Any]:
        """Column values of the ``serving_points`` row."""
        engine = _engine_columns(
            self.architecture, self.precision, self.flash_attention, self.setup, self.engine
        )
        load = {
            "trace": self.trace,
            "trace_sha256": self.trace_sha256,
            "concurrency": self.concurrency,
            "rate_per_s": self.rate_per_s,
            "requests": self.requests,
            "max_context": self.max_context,
            "seed": self.seed,
            "max_num_seqs": self.max_num_seqs,
        }
        identity = engine_identity(
            self.architecture, self.precision, self.flash_attention, self.setup, self.engine
        )
        # A trace file is known by its content: where it lies is not what was measured.
        named = {**load, "trace": self.trace if self.trace_sha256 is None else "file"}
        return {
            "key": sha256_hex({**identity, "serving": named}),
            **engine,
            **load,
            "round_index": self.round_index,
        }


@dataclass(frozen=True)
class StoredServingPoint:
    """A serving point as read back from the store."""

    id: int
    campaign_id: int
    key: str
    config_key: str
    architecture: dict[str, Any]
    model_name: str
    family: str
    weight_bits: int
    activation_bits: int
    kv_bits: int
    expert_weight_bits: int | None
    flash_attention: bool
    gpu_type: str
    gpu_count: int
    engine: str
    trace: str
    trace_sha256: str | None
    concurrency: int | None
    rate_per_s: float | None
    requests: int
    max_context: int
    seed: int
    max_num_seqs: int
    round_index: int
    status: str
    attempts: int
    lease_owner: str | None = None
    error_kind: str | None = None
    error_message: str | None = None

    def engine_parts(
        self, catalog: GpuCatalog | None = None
    ) -> tuple[Architecture, Precision, GpuSetup]:
        """The engine's architecture, precision and GPU setup (GPU looked up in ``catalog``)."""
        gpus = catalog if catalog is not None else GpuCatalog.default()
        precision = Precision(
            self.weight_bits, self.activation_bits, self.kv_bits, self.expert_weight_bits
        )
        return (
            Architecture(**self.architecture),
            precision,
            GpuSetup(gpus.get(self.gpu_type), self.gpu_count),
        )


@dataclass
class ServingRecord:
    """What serving one load cost (see :class:`workers.serving.ServingResult` for the fields).

    Energy fields are None where the engine cannot meter energy (vLLM on a CPU).
    """

    engine_name: str
    simulated: bool
    window_requests: int
    total_s: float
    requests: int
    output_tokens: int
    requests_per_s: float
    output_tokens_per_s: float
    per_request_j: float | None = None
    per_output_token_j: float | None = None
    per_input_token_j: float | None = None
    window_s: float | None = None
    window_energy_j: float | None = None
    total_energy_j: float | None = None
    mean_running: float | None = None
    ttft_s: dict[str, float] | None = None
    tpot_s: dict[str, float] | None = None
    timeline: list[list[float | None]] | None = None
    max_num_seqs: int | None = None
    gpu_names: list[str] | None = None
    gpu_uuids: list[str] | None = None
    driver_version: str | None = None
    engine_version: str | None = None
    engine_settings: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def columns(self) -> dict[str, Any]:
        """Column values of the ``serving_measurements`` row."""
        return dataclasses.asdict(self)


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
