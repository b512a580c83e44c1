"""The campaign configuration: a YAML file validated by pydantic (unknown keys are errors).

One file says everything a campaign needs: where its database is, the priors it samples from
(architectures and their perturbations, requests, GPU setups), Algorithm 1's knobs (A, the test
share, B, C per dimension, the target MAPE, the high-error rule), budgets, the strategy, the engine
and the measurement protocol. ``experiments/configs/`` holds examples; :func:`load_config` reads
one and turns every problem into one :class:`~llmco2.errors.ConfigFileError` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from featurize.precision import Precision
from gnn.names import CORRECTION_EPOCHS, ROUND_EPOCHS, ROUND_PATIENCE
from llmco2.defaults import DEFAULT_DATABASE_URL
from llmco2.errors import ConfigFileError, InvalidRequestError
from storage.records import sha256_hex
from workers.protocol_settings import ProtocolSettings

if TYPE_CHECKING:
    from gnn.serving import LoadPlan

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]


def _ordered(value: tuple[int, int]) -> tuple[int, int]:
    if value[0] > value[1]:
        raise ValueError(f"range {list(value)} is reversed (low, high)")
    return value


#: A (low, high) range of positive integers, low ≤ high.
IntRange = Annotated[tuple[PositiveInt, PositiveInt], AfterValidator(_ordered)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: Any) -> Any:
        # YAML reads `true` as a boolean and pydantic would take it for 1: no key of a campaign
        # is a yes/no, so a boolean is always a mistake.
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, bool):
                    raise ValueError(f"{key} must be a number or a name, not {str(value).lower()}")
        return data


def _precision_label(label: str) -> str:
    """The canonical label of the precision ``label`` names (ValueError: it names none)."""
    try:
        return Precision.from_label(label).label
    except InvalidRequestError as exc:
        raise ValueError(str(exc)) from None


class PerturbationRanges(_Strict):
    """Relative ± ranges of architecture perturbations (0.25: up to 25 % smaller or larger).

    vLLM's dummy weights make any shape measurable, so the prior covers shapes between and
    around the catalog's. A perturbed shape keeps heads dividing the hidden size and the TP.
    """

    num_layers: NonNegative = 0.25
    hidden_size: NonNegative = 0.0
    intermediate_size: NonNegative = 0.25
    num_heads: NonNegative = 0.0


class ArchitecturePrior(_Strict):
    """𝒜: catalog architectures, the share of draws perturbed, and the weight bit widths."""

    models: list[str] = Field(min_length=1)
    perturbed_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    perturbation: PerturbationRanges = PerturbationRanges()
    #: 0: every perturbed draw is a fresh shape. N > 0: the perturbed draws share N shapes drawn
    #: once from the seed, so on real GPUs their points share engine loads (a vLLM start costs
    #: 1-3 minutes, a point about ten seconds).
    perturbed_variants: Annotated[int, Field(ge=0)] = 0
    weight_bits: list[Literal[4, 8, 16]] = [16]
    #: Whole precisions to draw from instead (labels such as ``w8a8kv8``): activations and KV
    #: cache too, e.g. vLLM's FP8 (W8A8 on Hopper) with or without an FP8 KV cache.
    precisions: list[str] | None = Field(default=None, min_length=1)

    @field_validator("precisions")
    @classmethod
    def _labels_name_precisions(cls, labels: list[str] | None) -> list[str] | None:
        return None if labels is None else [_precision_label(label) for label in labels]

    @model_validator(mode="after")
    def _one_way_to_name_precisions(self) -> ArchitecturePrior:
        if self.precisions is not None and self.weight_bits != [16]:
            raise ValueError("give precisions or weight_bits, not both")
        return self

    def precision_choices(self) -> list[Precision]:
        """The precisions a draw picks from."""
        if self.precisions is not None:
            return [Precision.from_label(label) for label in self.precisions]
        return [Precision(weight_bits=bits) for bits in self.weight_bits]


class RequestPriorConfig(_Strict):
    """ℐ: request lengths from the shipped Azure histogram or a user's trace CSV."""

    trace: Path | None = None
    mix: dict[str, NonNegative] = {"code": 0.5, "conversation": 0.5}
    batch: IntRange = (1, 4)
    max_context: PositiveInt = 4096
    max_generated: PositiveInt | None = 512


class GpuPrior(_Strict):
    """ℋ: GPU types (empty: those the Ray cluster reports) and the TP range."""

    types: list[str] = []
    tp: IntRange = (1, 4)


class Priors(_Strict):
    """The three priors of Algorithm 1."""

    architectures: ArchitecturePrior
    requests: RequestPriorConfig = RequestPriorConfig()
    gpus: GpuPrior = GpuPrior()


class Radius(_Strict):
    """C: how far a neighbour may lie from its high-error point, per dimension (± absolute)."""

    prompt_tokens: Annotated[int, Field(ge=0)] = 10
    generated_tokens: Annotated[int, Field(ge=0)] = 1
    batch_size: Annotated[int, Field(ge=0)] = 0
    num_layers: Annotated[int, Field(ge=0)] = 1
    intermediate_size: Annotated[int, Field(ge=0)] = 0
    gpu_count: Annotated[int, Field(ge=0)] = 0


class HighErrorRule(_Strict):
    """Which test points are high-error: the worst fraction, or those above a relative error."""

    rule: Literal["top_fraction", "above"] = "top_fraction"
    value: Annotated[float, Field(gt=0)] = 0.1


class Sampling(_Strict):
    """Algorithm 1's sampling knobs."""

    initial: PositiveInt = Field(
        default=200, description="A: points sampled before the first training"
    )
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    neighbours: PositiveInt = Field(default=100, description="B: neighbours per high-error point")
    radius: Radius = Radius()
    high_error: HighErrorRule = HighErrorRule()
    per_round: PositiveInt | None = Field(default=None, description="most new points per round")
    points_per_engine: PositiveInt | None = Field(
        default=None,
        description=(
            "least points each engine configuration of a round measures: requests from the "
            "request prior fill up the chosen ones (an engine start costs minutes, a point seconds)"
        ),
    )
    resident_engines: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description=(
            "most engines kept loaded from one round to the next, for points the next round "
            "chooses on them (they hold their GPUs meanwhile; the cost-aware strategy counts "
            "no start for them, so its choice depends on which engines are loaded)"
        ),
    )


class Budget(_Strict):
    """When to stop if the target MAPE is not reached."""

    measurements: PositiveInt | None = None
    rounds: PositiveInt = 10
    gpu_hours: Annotated[float, Field(gt=0)] | None = None


class Reference(_Strict):
    """A fixed point every run of a campaign measures once (the noise floor of its data).

    Each driver run (each ``campaign run``, on a real campaign often a new device call on
    another machine) starts the reference's engine and measures its request: the spread of its
    energy across runs and GPU UUIDs is what no predictor can beat. The engine fill
    (``sampling.points_per_engine``) fills its engine like any other, unless ``fill`` says how
    many other requests its engine measures: a campaign whose every run starts the reference's
    engine would otherwise spend most of its points on that one shape. With ``every: gpu`` a run
    measures it only where some GPU of its cluster has no reference measurement yet: the
    device calls of one session on one machine (minutes apart) pay for its engine once, a new
    machine still gets its own.
    """

    model: str = Field(min_length=1, description="catalog model or architecture config file")
    precision: str = "w16a16kv16"
    tp: PositiveInt = 1
    batch: PositiveInt = 1
    prompt_tokens: PositiveInt = 1024
    generated_tokens: PositiveInt = 128
    fill: NonNegativeInt | None = Field(
        default=None,
        description="requests its engine measures besides the reference (default: the engine "
        "fill, sampling.points_per_engine)",
    )
    every: Literal["run", "gpu"] = Field(
        default="run",
        description="measure it every run, or once per physical GPU: a run whose cluster's "
        "GPUs (NVML UUIDs) all have a reference measurement already skips it",
    )

    @field_validator("precision")
    @classmethod
    def _label_names_a_precision(cls, label: str) -> str:
        return _precision_label(label)


def _trace_name(trace: str) -> str:
    """``conv`` or ``code`` for the shipped traces, else the trace file's path as given."""
    from workers.serving import TRACE_CLASSES

    named = TRACE_CLASSES.get(trace)
    if named is not None:
        return "conv" if named == "conversation" else named
    if not trace.strip():
        raise ValueError("a trace is conv, code or a request CSV file")
    return trace


class Serving(_Strict):
    """Serving points: each engine configuration a round loads also serves these loads.

    A load is a trace served as a closed loop at a concurrency or an open loop at an arrival
    rate (continuous batching, as a deployment serves); each is measured once per engine
    configuration, on the engine its points loaded, and stored as a serving point. A trace file
    is read by the workers at its absolute path: on a cluster of several machines it must lie
    at that path on each.
    """

    traces: list[Annotated[str, AfterValidator(_trace_name)]] = Field(
        default=["conv", "code"], min_length=1
    )
    concurrency: list[Annotated[int, Field(ge=1, le=1024)]] = [1, 2, 4, 8, 16, 32, 64]
    rates: list[Annotated[float, Field(gt=0)]] = []
    rate_fractions: list[Annotated[float, Field(gt=0, le=2)]] = []
    requests_per_slot: Annotated[int, Field(ge=2)] = 4
    min_requests: Annotated[int, Field(ge=2)] = 12
    min_window_s: Annotated[float, Field(gt=0)] = 5.0
    max_requests: PositiveInt = 2000
    open_requests: Annotated[int, Field(ge=10)] = 40
    open_window_s: Annotated[float, Field(gt=0)] = 12.0
    max_context: Annotated[int, Field(ge=2)] = 4096
    #: Sequences the engine's scheduler runs at once (default: the largest concurrency, ≥ 32).
    max_num_seqs: PositiveInt | None = None
    #: Most engine configurations of a round that serve the loads (None: every one).
    engines_per_round: PositiveInt | None = None

    @model_validator(mode="after")
    def _has_loads(self) -> Serving:
        if not self.concurrency and not self.rates and not self.rate_fractions:
            raise ValueError("give concurrency, rates or rate_fractions")
        if self.rate_fractions and not self.concurrency:
            raise ValueError("rate_fractions are of the throughput at the largest concurrency")
        if self.max_requests < 2 * max(self.concurrency, default=1):
            raise ValueError(
                f"max_requests ({self.max_requests}) is below twice the largest concurrency"
            )
        return self

    def scheduler_seqs(self) -> int:
        """Sequences the engine's scheduler runs at once."""
        return self.max_num_seqs or max([*self.concurrency, 32])

    def plan(self, trace: str, seed: int) -> LoadPlan:
        """The loads of one trace (sized per engine by :func:`gnn.serving.plan_loads`)."""
        from gnn.serving import LoadPlan

        # The section's own knobs are the plan's, by name; lists go in as tuples.
        knobs = self.model_dump(exclude={"traces", "max_num_seqs", "engines_per_round"})
        knobs = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
        return LoadPlan(trace=trace, seed=seed, max_num_seqs=self.scheduler_seqs(), **knobs)


#: The predictor a campaign trains each round: ``llmco2``, the analytical model with the GNN's
#: correction (what `predict` ships), or ``gnn``, the paper's LLMCO2 GNN alone.
RoundPredictor = Literal["llmco2", "gnn"]
ROUND_PREDICTORS: tuple[str, ...] = get_args(RoundPredictor)


class Training(_Strict):
    """The predictor trained in each round."""

    predictor: RoundPredictor = "llmco2"
    #: Early-stopped training of the pure GNN (and of llmco2's corrections with
    #: ``correction_epochs`` 0).
    epochs: PositiveInt = ROUND_EPOCHS
    patience: PositiveInt = ROUND_PATIENCE
    #: Epochs of llmco2's correction networks on every row (see :class:`gnn.training.TrainConfig`).
    correction_epochs: Annotated[int, Field(ge=0)] = CORRECTION_EPOCHS
    ensemble: Annotated[int, Field(ge=1, le=16)] = 1


_PROTOCOL = ProtocolSettings()


class Protocol(_Strict):
    """Measurement protocol knobs, defaults from :class:`workers.protocol.ProtocolSettings`."""

    warmups: Annotated[int, Field(ge=0)] = _PROTOCOL.warmups
    windows: Annotated[int, Field(ge=1)] = _PROTOCOL.windows
    min_window_s: Annotated[float, Field(gt=0)] = _PROTOCOL.min_window_s
    min_periods: PositiveInt = _PROTOCOL.min_periods
    min_requests: PositiveInt = _PROTOCOL.min_requests
    cv_threshold: Annotated[float, Field(gt=0)] = _PROTOCOL.cv_threshold


#: Keys added after campaigns were stored, with their defaults: left out of the fingerprint at
#: that default, so a campaign stored before the key existed still continues.
ADDED_LATER: dict[tuple[str, ...], Any] = {
    ("priors", "architectures", "perturbed_variants"): 0,
    ("training", "predictor"): "llmco2",
    ("priors", "architectures", "precisions"): None,
    ("training", "correction_epochs"): CORRECTION_EPOCHS,
    ("sampling", "points_per_engine"): None,
    ("sampling", "resident_engines"): 0,
    ("reference",): None,
    ("reference", "fill"): None,
    ("reference", "every"): "run",
    ("protocol", "min_periods"): _PROTOCOL.min_periods,
    ("serving",): None,
}


class CampaignConfig(_Strict):
    """A whole campaign."""

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")]
    database: str = DEFAULT_DATABASE_URL
    engine: str = "simulated"
    #: A name of :data:`orchestrator.strategies.STRATEGIES`.
    strategy: str = "focused"
    seed: int = 0
    target_mape: Annotated[float, Field(gt=0)] = 5.0
    priors: Priors
    sampling: Sampling = Sampling()
    budget: Budget = Budget()
    training: Training = Training()
    protocol: Protocol = Protocol()
    max_attempts: PositiveInt = 3
    reference: Reference | None = None
    serving: Serving | None = None

    @model_validator(mode="after")
    def _strategy_is_known_and_has_what_it_needs(self) -> CampaignConfig:
        # Imported here: the strategies read the config's sampling sections.
        from orchestrator.strategies import STRATEGIES

        chosen = STRATEGIES.get(self.strategy)
        if chosen is None:
            raise ValueError(
                f"strategy: unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}"
            )
        if chosen.needs_ensemble and self.training.ensemble < 2:
            raise ValueError(f"strategy {self.strategy!r} needs training.ensemble ≥ 2")
        return self

    @model_validator(mode="after")
    def _budget_covers_round_zero(self) -> CampaignConfig:
        budget = self.budget.measurements
        if budget is not None and budget < self.sampling.initial:
            raise ValueError(
                f"budget.measurements ({budget}) is below sampling.initial "
                f"({self.sampling.initial}), which round 0 measures whatever the budget"
            )
        return self

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the campaign's meaning (stored with it; a rerun must match it).

        The database URL is where the campaign lives, not what it is, so it is left out; keys
        added after campaigns were stored are left out at their defaults, so those campaigns
        still continue.
        """
        data = self.model_dump(mode="json", exclude={"database"})
        for (*parents, key), default in ADDED_LATER.items():
            section: Any = data
            for parent in parents:
                section = section.get(parent) if isinstance(section, dict) else None
            if isinstance(section, dict) and key in section and section[key] == default:
                del section[key]
        return data

    def config_hash(self) -> str:
        """SHA-256 of :meth:`fingerprint`, as the campaign store records it."""
        return sha256_hex(self.fingerprint())


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if error["type"] == "missing":
        return f"missing key {where!r}"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


def parse_config(data: Any, source: str = "config") -> CampaignConfig:
    """Validate an already-parsed mapping.

    Raises:
        ConfigFileError: The first problem, in one line.
    """
    if not isinstance(data, dict):
        raise ConfigFileError(f"{source}: a campaign config is a mapping of keys, not {data!r}")
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigFileError(f"{source}: {_first_error(exc)}{extra}") from None


class _DuplicateKeyError(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the last would win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKeyError(
                    f"key {key!r} appears twice (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _trace_file(config_path: Path, trace: str) -> str:
    """A serving trace as the workers read it: a file's absolute path, checked to be one."""
    if trace in ("conv", "code"):
        return trace
    file = Path(trace)
    if not file.is_absolute():
        file = (config_path.parent / file).resolve()
    if not file.is_file():
        raise ConfigFileError(f"{str(config_path)!r}: serving trace {str(file)!r} does not exist")
    from featurize.priors import read_trace

    read_trace(file)  # a malformed file is refused here, not on a GPU
    return str(file)


def load_config(path: Path) -> CampaignConfig:
    """Read and validate a campaign YAML file.

    Raises:
        ConfigFileError: Missing or unreadable file, malformed YAML, unknown keys, bad values.
    """
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"no campaign config at {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"cannot read {str(path)!r}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKeyError as exc:
        raise ConfigFileError(f"{str(path)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigFileError(f"{str(path)!r} is not valid YAML{where}") from None
    config = parse_config(data, str(path))
    if config.serving is not None:
        traces = [_trace_file(path, trace) for trace in config.serving.traces]
        serving = config.serving.model_copy(update={"traces": traces})
        config = config.model_copy(update={"serving": serving})
    if config.priors.requests.trace is not None:
        trace = config.priors.requests.trace
        if not trace.is_absolute():
            trace = (path.parent / trace).resolve()
        if not trace.is_file():
            raise ConfigFileError(f"{str(path)!r}: request trace {str(trace)!r} does not exist")
        requests = config.priors.requests.model_copy(update={"trace": trace})
        priors = config.priors.model_copy(update={"requests": requests})
        config = config.model_copy(update={"priors": priors})
    return config
