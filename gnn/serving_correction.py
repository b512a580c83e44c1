"""The serving twin's correction, learned from real serving measurements, and its evaluation.

The twin (:mod:`gnn.serving`) prices a serving engine's steps with the predictor's costs of
uniform batches of a few sequences; physics carries those to batches of a hundred, and a few
coefficients learned from serving measurements correct what it misses
(:class:`workers.serving_twin.StepCorrection`: the decode cost's drift with batch size and with
the KV cache's share of a step's reads, the cost of prefills joining a running batch, and the
host time of a step that a small model's forward pass no longer hides).

A closed loop's steps do not depend on how long they take (a request enters when another
finishes), so each measured load is replayed once with its steps recorded
(:class:`ReplayedLoad`), and any correction's energy per request and throughput are then sums
over the recorded steps of its steady-state window: the fit is a small least-squares problem.
Open loops depend on time and are replayed in full when they are predicted; they are not fitted.

:func:`held_out_predictions` judges the correction as the predictor is judged: each shape's loads
(or each concurrency's) predicted by a correction fitted without them. Their spread gives the
shipped correction's interval (:class:`ServingCorrection`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featurize import resolve_architecture
from featurize.architecture import Architecture
from featurize.gpus import GpuCatalog
from featurize.point import GpuSetup
from featurize.precision import Precision
from gnn.predict import EnergyPredictor
from llmco2.errors import ConfigFileError, InvalidRequestError
from workers.serving import ServingLoad, serve, steady_window
from workers.serving_twin import ServingTwin, StepCorrection

if TYPE_CHECKING:
    from storage.export import ExportedServingLoad

__all__ = [
    "INTERVAL_LEVEL",
    "ReplayedLoad",
    "ServingCorrection",
    "ServingObservation",
    "TwinFactory",
    "default_serving_correction",
    "fit_step_correction",
    "held_out_predictions",
    "predict_observation",
    "read_observations",
    "replay",
    "replay_closed_loops",
    "twin_factory",
]

#: Nominal coverage of the shipped interval on energy per request.
INTERVAL_LEVEL = 0.8
#: Weight of the log throughput error beside the log energy error in the fit: throughput is what
#: tells host time (which costs little energy) from GPU time.
THROUGHPUT_WEIGHT = 0.5
#: Ridge penalty on the log scales: a handful of shapes must not bend them far.
RIDGE = 0.05
#: Bounds of the fitted parameters, in :data:`_PARAMETER_UNITS` (log scales; ms; µs).
_BOUNDS = (
    np.array([-1.0, -0.3, -1.0, -1.0, -1.0, 0.0, 0.0]),
    np.array([1.0, 0.3, 1.0, 1.0, 1.0, 20.0, 200.0]),
)
_PARAMETER_UNITS = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1e-3, 1e-6])
#: Log-scale parameters, which the ridge pulls towards zero.
_LOG_SCALES = 5
#: Host time per step (ms) and per sequence (µs) the fit starts from.
_HOST_STARTS = ((0.5, 1.0), (2.0, 1.0), (4.0, 1.0), (8.0, 1.0), (1.0, 40.0), (4.0, 40.0))


@dataclass(frozen=True)
class ServingObservation:
    """One measured serving load: what was served on which GPUs, and what it cost.

    Attributes:
        shape: The model (an id, alias or shape file :func:`featurize.resolve_architecture` reads).
        trace: The trace the request lengths were drawn from.
        concurrency: Requests in flight of a closed loop (None for an open loop).
        rate_per_s: Arrival rate of an open loop (None for a closed loop).
        requests: Requests served.
        seed: Seed of the drawn lengths and arrivals.
        max_context: Prompt plus output tokens a request had at most.
        max_num_seqs: The engine's limit on sequences running at once.
        gpu: GPU name as NVML gives it.
        gpu_count: GPUs of the engine.
        measured_j: Energy per request at steady state (J).
        measured_tokens_per_s: Output tokens per second at steady state.
        architecture: The model shape itself, where ``shape`` only names it (a campaign's
            serving point: any shape, perturbed ones too); None to resolve ``shape``.
        precision: Its bit widths, where known (None: the caller's, bf16 by default).
    """

    shape: str
    trace: str
    concurrency: int | None
    rate_per_s: float | None
    requests: int
    seed: int
    max_context: int
    max_num_seqs: int
    gpu: str
    gpu_count: int
    measured_j: float
    measured_tokens_per_s: float
    architecture: Architecture | None = None
    precision: Precision | None = None

    @classmethod
    def from_export(cls, served: ExportedServingLoad) -> ServingObservation | None:
        """One row of a campaign's exported ``serving`` table (None without a steady state)."""
        row = served.row
        if row["per_request_j"] is None:
            return None
        return cls(
            shape=str(row["model_name"]),
            trace=str(row["trace"]),
            concurrency=row["concurrency"],
            rate_per_s=row["rate_per_s"],
            requests=int(row["requests"]),
            seed=int(row["seed"]),
            max_context=int(row["max_context"]),
            max_num_seqs=int(row["engine_max_num_seqs"] or row["max_num_seqs"]),
            gpu=str(row["gpu_type"]),
            gpu_count=int(row["gpu_count"]),
            measured_j=float(row["per_request_j"]),
            measured_tokens_per_s=float(row["output_tokens_per_s"]),
            architecture=served.architecture,
            precision=served.precision,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ServingObservation | None:
        """One line of a serving sweep's ``serving.jsonl`` (None for a load without a steady state).

        Raises:
            KeyError, TypeError, ValueError: A row without the sweep's fields.
        """
        result = row["result"]
        if result["per_request_j"] is None:
            return None
        return cls(
            shape=row["shape"],
            trace=row["trace"],
            concurrency=row["concurrency"],
            rate_per_s=row["rate_per_s"],
            requests=int(row["requests"]),
            seed=int(row["seed"]),
            max_context=int(row["max_context"]),
            max_num_seqs=int(row["engine_settings"]["max_num_seqs"]),
            gpu=row["gpu_names"][0],
            gpu_count=len(row["gpu_names"]),
            measured_j=float(result["per_request_j"]),
            measured_tokens_per_s=float(result["output_tokens_per_s"]),
        )

    @property
    def load(self) -> ServingLoad:
        """The load, drawn again with the same seed: the same request lengths."""
        return ServingLoad(
            self.trace,
            self.requests,
            concurrency=self.concurrency,
            rate_per_s=self.rate_per_s,
            max_context=self.max_context,
            seed=self.seed,
        )

    @property
    def name(self) -> str:
        """``shape trace C=…`` or ``… λ=…``."""
        load = f"C={self.concurrency}" if self.concurrency is not None else f"λ={self.rate_per_s:g}"
        return f"{self.shape} {self.trace} {load}"


def read_observations(paths: Iterable[Path]) -> list[ServingObservation]:
    """Every load with a steady state in serving sweep files and exported campaign datasets.

    Sweep files are JSON lines; datasets are export folders with a ``serving`` table. A load
    that never reached one has no energy per request to fit or to compare with: it is
    left out. Simulated rows of a dataset are left out too.

    Raises:
        ConfigFileError: A missing or unreadable file, or a line that is not a sweep row (with
            its file and line number).
    """
    from storage.export import read_exported_serving

    observations = []
    for path in paths:
        if path.is_dir():
            if not (path / "serving.parquet").is_file():
                raise ConfigFileError(f"no serving.parquet in the dataset {str(path)!r}")
            for served in read_exported_serving([path]):
                observation = ServingObservation.from_export(served)
                if observation is not None:
                    observations.append(observation)
            continue
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigFileError(
                f"cannot read serving measurements {str(path)!r}: {error}"
            ) from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                observation = ServingObservation.from_row(json.loads(line))
            except (ValueError, KeyError, TypeError, IndexError) as error:
                raise ConfigFileError(
                    f"{path}:{number}: not a serving measurement ({type(error).__name__}: {error})"
                ) from None
            if observation is not None:
                observations.append(observation)
    if not observations:
        raise ConfigFileError("no serving measurements in the files given")
    return observations


def _setup_of(observation: ServingObservation, catalog: GpuCatalog) -> GpuSetup:
    return GpuSetup(catalog.get(observation.gpu), observation.gpu_count)


@dataclass(frozen=True)
class ReplayedLoad:
    """A closed loop replayed on the uncorrected twin, its steps kept for refitting.

    Attributes:
        observation: The measured load.
        steps: ``(N, 9)`` per step: decode s, decode J, prefill s, prefill J, sequences
            decoding, sequences in the step, KV share of the decode's reads, and the seconds and
            joules of the prefill that joining prompts take (uncorrected).
        in_window: ``(N,)`` whether each step ends inside the steady-state window.
        window_requests: Requests that finished in the window.
        window_tokens: Their output tokens.
        idle_w: The GPUs' static power (W).
    """

    observation: ServingObservation
    steps: np.ndarray
    in_window: np.ndarray
    window_requests: int
    window_tokens: int
    idle_w: float

    def predicted(self, correction: StepCorrection) -> tuple[float, float]:
        """Energy per request (J) and output tokens per second under ``correction``."""
        s = self.steps[self.in_window]
        seconds, joules = correction.apply(
            s[:, 0], s[:, 1], s[:, 2], s[:, 3], s[:, 4], s[:, 5], s[:, 6], self.idle_w,
            joining_s=s[:, 7], joining_j=s[:, 8],
        )  # fmt: skip
        return float(joules.sum()) / self.window_requests, self.window_tokens / float(seconds.sum())


TwinFactory = Callable[[ServingObservation, StepCorrection, bool], ServingTwin]


def twin_factory(predictor: EnergyPredictor, precision: Precision | None = None) -> TwinFactory:
    """Twins of observed deployments on ``predictor``'s costs (step costs cached per setup)."""
    from gnn.serving import step_costs

    catalog = GpuCatalog.default()
    cache: dict[tuple[Architecture, Precision, str, int, int, int], Any] = {}

    def make(
        observation: ServingObservation, correction: StepCorrection, record: bool
    ) -> ServingTwin:
        setup = _setup_of(observation, catalog)
        architecture = observation.architecture or resolve_architecture(observation.shape)
        bits = observation.precision or precision or Precision()
        key = (architecture, bits, setup.gpu.id, setup.count, observation.max_num_seqs,
               observation.max_context)  # fmt: skip
        if key not in cache:
            cache[key] = step_costs(
                predictor, architecture, setup, bits, observation.max_num_seqs,
                observation.max_context,
            )  # fmt: skip
        return ServingTwin(cache[key], observation.max_num_seqs, correction, record)

    return make


def replay(make_twin: TwinFactory, observation: ServingObservation) -> ReplayedLoad:
    """Replay a closed loop on the uncorrected twin and keep its steps.

    Raises:
        InvalidRequestError: An open loop (its steps depend on their times) or a load without a
            steady state on the twin.
    """
    if observation.concurrency is None:
        raise InvalidRequestError("only closed loops are replayed for fitting")
    twin = make_twin(observation, StepCorrection(), True)
    requests, _ = serve(twin, observation.load, twin.clock)
    window = steady_window(requests, observation.concurrency)
    if window is None:
        raise InvalidRequestError(f"{observation.name} has no steady state on the twin")
    start, end = window
    inside = [r for r in requests if r.finish_s is not None and start < r.finish_s <= end]
    steps = np.array(
        [
            (
                s.decode_s,
                s.decode_j,
                s.prefill_s,
                s.prefill_j,
                s.decoding,
                s.sequences,
                s.kv_share,
                s.joining_s,
                s.joining_j,
            )
            for s in twin.steps
        ],
        dtype=np.float64,
    )
    ends = np.array([s.end_s for s in twin.steps])
    return ReplayedLoad(
        observation,
        steps,
        (ends > start + 1e-12) & (ends <= end + 1e-12),
        len(inside),
        sum(r.generated_tokens for r in inside),
        twin.costs.idle_w,
    )


def _correction_of(parameters: np.ndarray) -> StepCorrection:
    values = parameters * _PARAMETER_UNITS
    return StepCorrection(*(float(v) for v in values))


def fit_step_correction(replayed: Sequence[ReplayedLoad]) -> StepCorrection:
    """The correction that best matches the replayed loads' measured energy and throughput.

    Least squares on the log errors of energy per request and (weighted by
    :data:`THROUGHPUT_WEIGHT`) of output tokens per second, with a ridge (:data:`RIDGE`) on the
    log scales and the host times bounded below by zero.

    Raises:
        InvalidRequestError: No loads to fit.
    """
    if not replayed:
        raise InvalidRequestError("a serving correction needs measured closed loops")
    from scipy.optimize import least_squares

    measured = np.array(
        [(r.observation.measured_j, r.observation.measured_tokens_per_s) for r in replayed]
    )

    def residuals(parameters: np.ndarray) -> np.ndarray:
        correction = _correction_of(parameters)
        predicted = np.array([r.predicted(correction) for r in replayed])
        errors = np.log(predicted / measured)
        ridge = math.sqrt(RIDGE) * parameters[:_LOG_SCALES]
        return np.concatenate([errors[:, 0], THROUGHPUT_WEIGHT * errors[:, 1], ridge])

    # A host time shorter than every step's forward pass has no gradient (the step is the
    # longer of the two), so the fit starts from several host times and keeps the best.
    fits = [
        least_squares(
            residuals,
            np.array([0.0, 0.0, 0.0, 0.0, 0.0, host_ms, per_sequence_us]),
            bounds=_BOUNDS,
            x_scale=[0.1, 0.05, 0.1, 0.1, 0.1, 1.0, 10.0],
        )
        for host_ms, per_sequence_us in _HOST_STARTS
    ]
    return _correction_of(min(fits, key=lambda fit: fit.cost).x)


@dataclass(frozen=True)
class HeldOutPrediction:
    """One load predicted by a correction fitted without its group."""

    observation: ServingObservation
    group: str
    predicted_j: float
    predicted_tokens_per_s: float

    @property
    def error_pct(self) -> float:
        """Signed error of the predicted energy per request (%)."""
        return 100.0 * (self.predicted_j / self.observation.measured_j - 1.0)


def predict_observation(
    make_twin: TwinFactory, observation: ServingObservation, correction: StepCorrection
) -> tuple[float, float]:
    """Energy per request and output tokens per second of a load replayed in full."""
    result = make_twin(observation, correction, False).replay(observation.load)
    assert result.per_request_j is not None  # replay() refuses a load without a steady state
    return result.per_request_j, result.output_tokens_per_s


def _group_of(observation: ServingObservation, split: str) -> str:
    if split == "shape":
        return observation.shape
    if split == "gpu":
        return GpuCatalog.default().get(observation.gpu).id
    if split == "concurrency":
        return (
            f"C={observation.concurrency}" if observation.concurrency is not None else "open loop"
        )
    raise InvalidRequestError(f"unknown split {split!r}: shape, concurrency or gpu")


def replay_closed_loops(
    make_twin: TwinFactory, observations: Sequence[ServingObservation]
) -> dict[int, ReplayedLoad]:
    """The closed loops among ``observations``, replayed (:func:`replay`), by their index."""
    return {
        index: replay(make_twin, o)
        for index, o in enumerate(observations)
        if o.concurrency is not None
    }


def held_out_predictions(
    make_twin: TwinFactory,
    observations: Sequence[ServingObservation],
    split: str,
    replayed: dict[int, ReplayedLoad] | None = None,
) -> list[HeldOutPrediction]:
    """Every load predicted by a correction fitted on the other groups' closed loops.

    Args:
        make_twin: Twins on the predictor's costs (:func:`twin_factory`).
        observations: The measured loads.
        split: ``shape`` (leave one shape out), ``concurrency`` (leave one concurrency out;
            open loops form their own group) or ``gpu`` (leave one GPU type out).
        replayed: :func:`replay_closed_loops` of ``observations``, if already at hand.

    Raises:
        InvalidRequestError: An unknown split, or a group whose complement has no closed loop.
    """
    if replayed is None:
        replayed = replay_closed_loops(make_twin, observations)
    groups = [_group_of(o, split) for o in observations]
    fitted: dict[str, StepCorrection] = {}
    predictions = []
    for index, observation in enumerate(observations):
        group = groups[index]
        if group not in fitted:
            fitted[group] = fit_step_correction(
                [r for i, r in replayed.items() if groups[i] != group]
            )
        energy, tokens = predict_observation(make_twin, observation, fitted[group])
        predictions.append(HeldOutPrediction(observation, group, energy, tokens))
    return predictions


@dataclass(frozen=True)
class ServingCorrection:
    """The shipped serving correction: step coefficients, interval and provenance.

    Attributes:
        step: The step coefficients, fitted on every measured closed loop.
        interval_log: ``(low, high)`` log factors of the interval of energy per request: the
            :data:`INTERVAL_LEVEL` central quantiles of the leave-one-shape-out log errors.
        interval_level: Nominal coverage of the interval.
        provenance: Where the coefficients come from (files, loads, shapes, GPUs, date).
    """

    step: StepCorrection = field(default_factory=StepCorrection)
    interval_log: tuple[float, float] | None = None
    interval_level: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def interval_of(self, per_request_j: float) -> tuple[float, float] | None:
        """The interval around a predicted energy per request (None without one)."""
        if self.interval_log is None:
            return None
        low, high = self.interval_log
        return per_request_j * math.exp(low), per_request_j * math.exp(high)

    @classmethod
    def fitted(
        cls,
        make_twin: TwinFactory,
        observations: Sequence[ServingObservation],
        provenance: dict[str, Any],
    ) -> tuple[ServingCorrection, list[HeldOutPrediction]]:
        """Fit on every closed loop; the interval from the leave-one-shape-out errors.

        Returns:
            The correction and the held-out predictions its interval came from.
        """
        replayed = replay_closed_loops(make_twin, observations)
        held_out = held_out_predictions(make_twin, observations, "shape", replayed)
        logs = np.log([p.predicted_j / p.observation.measured_j for p in held_out])
        tail = (1.0 - INTERVAL_LEVEL) / 2.0
        # The interval covers the measurement: measured = predicted × exp(−log error).
        low, high = -np.quantile(logs, 1.0 - tail), -np.quantile(logs, tail)
        step = fit_step_correction(list(replayed.values()))
        summary = {
            "loads": len(observations),
            "shapes": sorted({o.shape for o in observations}),
            "gpus": sorted({GpuCatalog.default().get(o.gpu).id for o in observations}),
            "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **provenance,
        }
        return cls(step, (float(low), float(high)), INTERVAL_LEVEL, summary), held_out

    def save(self, path: Path) -> None:
        """Write the correction as JSON."""
        payload = asdict(self)
        payload["step"] = self.step.to_dict()
        path.write_text(json.dumps(payload, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> ServingCorrection:
        """Read a correction written by :meth:`save`.

        Raises:
            ConfigFileError: A missing file or one that is not a serving correction.
        """
        try:
            payload = json.loads(path.read_text())
            interval = payload["interval_log"]
            return cls(
                StepCorrection(**payload["step"]),
                None if interval is None else (float(interval[0]), float(interval[1])),
                payload["interval_level"],
                dict(payload["provenance"]),
            )
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            raise ConfigFileError(
                f"{str(path)!r} is not a serving correction ({type(error).__name__}: {error})"
            ) from None


@lru_cache(maxsize=1)
def default_serving_correction() -> ServingCorrection:
    """The correction shipped with the package (identity if none is shipped), read once."""
    resource = resources.files("gnn").joinpath("data/serving_correction.json")
    if not resource.is_file():
        return ServingCorrection()
    with resources.as_file(resource) as path:
        return ServingCorrection.load(Path(path))
