"""The Python API: what a request, a request log or a serving deployment costs, from a program.

    import llmco2

    p = llmco2.predict("llama3.1-8b", gpu="H100-SXM", prompt=1024, gen=128, region="FRA")
    p.total_j, p.total_low_j, p.total_high_j, p.latency_s, p.operational_g

    df = llmco2.predict_many(log, model="qwen3-8b", gpu="H200")  # a DataFrame of requests

    d = llmco2.predict("qwen3-8b", gpu="H200", concurrency=16, trace="conv")
    d.per_request_j, d.output_tokens_per_s

The command line's ``predict`` is a layer over the same functions (:func:`request_points`,
:func:`carbon_grid`); each raises the package's typed errors (:mod:`llmco2.errors`) before any
work when its input is wrong. Nothing here imports the predictor, torch or the featurizer until
it is called.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from llmco2.errors import InfeasibleConfigError, InvalidRequestError

if TYPE_CHECKING:
    import pandas as pd

    from featurize.architecture import Architecture
    from featurize.gpus import Gpu
    from featurize.models import CatalogModel
    from featurize.point import InferencePoint
    from featurize.precision import Precision
    from gnn.carbon import CarbonIntensity
    from gnn.predict import EnergyPredictor
    from llmco2.price_grid import PriceGrid

__all__ = [
    "DeploymentPrediction",
    "Prediction",
    "Predictor",
    "carbon_grid",
    "gpus",
    "models",
    "predict",
    "predict_many",
    "regions",
    "request_points",
]

#: What a request is when the caller says nothing: the CLI's defaults too.
DEFAULT_GPU = "H100-SXM"
DEFAULT_PROMPT = 1024
DEFAULT_GEN = 128
#: Years of hardware life that embodied carbon is spread over.
DEFAULT_LIFETIME_YEARS = 5.0
#: Points a side of a deployment's grid (``predict_many(..., grid=True)``), the longest request
#: of a model without a context window, and the grids a predictor keeps.
DEPLOYMENT_GRID_POINTS = 64
DEPLOYMENT_GRID_LENGTH = 131_072
DEPLOYMENT_GRIDS_KEPT = 64
#: Names a request table's prompt and generated-token columns go by (the Azure trace's among
#: them): :func:`predict_many` and :func:`llmco2.request_log.predict_log` read the same ones.
PROMPT_COLUMNS = ("prompt", "prompt_tokens", "ContextTokens", "context_tokens", "input_tokens")
GEN_COLUMNS = ("gen", "generated_tokens", "GeneratedTokens", "output_tokens", "completion_tokens")
#: Columns of a request table that :func:`predict_many` reads, with the names it also accepts.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "prompt": PROMPT_COLUMNS,
    "gen": GEN_COLUMNS,
    "batch": ("batch", "batch_size"),
    "model": ("model",),
    "gpu": ("gpu",),
    "tp": ("tp", "gpus"),
}


@dataclass(frozen=True)
class Prediction:
    """Energy, latency and carbon of one request on one GPU setup.

    Attributes:
        model: The architecture's name.
        gpu: GPU catalog id.
        gpus: GPUs of the tensor-parallel group.
        batch: Sequences of the request.
        prompt: Prompt tokens of each sequence.
        gen: Generated tokens of each sequence.
        precision: Bit widths (``Precision.label``, e.g. ``bf16``).
        prefill_j: Energy of the prefill, all GPUs (J).
        decode_j: Energy of the decode (J).
        total_j: Their sum (J).
        total_low_j: Lower bound of the interval of ``total_j`` (None without one).
        total_high_j: Its upper bound.
        interval_level: The interval's nominal coverage (0.8: its 10-90 % quantiles).
        latency_s: Predicted latency of the request (s).
        latency_source: Where the latency comes from.
        operational_g: Operational CO2eq (g), None without a carbon intensity.
        embodied_g: Embodied CO2eq of the hardware time the request takes (g).
        extrapolated: Whether the setup, model family, precision or GPU type lies outside the
            predictor's measurements.
        carbon_intensity_g_per_kwh: The grid intensity used (None without one).
        carbon_intensity_source: Where it came from.
        pue: The data centre's power usage effectiveness applied to operational CO2eq.
    """

    model: str
    gpu: str
    gpus: int
    batch: int
    prompt: int
    gen: int
    precision: str
    prefill_j: float
    decode_j: float
    total_j: float
    total_low_j: float | None
    total_high_j: float | None
    interval_level: float | None
    latency_s: float
    latency_source: str
    operational_g: float | None
    embodied_g: float
    extrapolated: bool
    carbon_intensity_g_per_kwh: float | None
    carbon_intensity_source: str | None
    pue: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        # Every field is a number, a string, a flag or None: no deep copy needed.
        return {f.name: getattr(self, f.name) for f in _PREDICTION_FIELDS}


_PREDICTION_FIELDS = dataclasses.fields(Prediction)


@dataclass(frozen=True)
class DeploymentPrediction:
    """Mean cost of a request served by a continuously batching deployment at its load.

    Attributes:
        model: The architecture's name.
        gpu: GPU catalog id.
        gpus: GPUs of the tensor-parallel group.
        trace: Where the request lengths come from (``conv``, ``code`` or a CSV file).
        concurrency: Requests in flight (closed loop), or None for an open loop.
        rate_per_s: Poisson arrivals per second (open loop), or None.
        per_request_j: Energy per request at steady state, all GPUs (J).
        per_request_low_j: Lower bound of its interval (None without one).
        per_request_high_j: Its upper bound.
        interval_level: The interval's nominal coverage.
        per_output_token_j: Energy per generated token (J).
        per_input_token_j: Energy per prompt token (J).
        requests_per_s: Throughput in requests.
        output_tokens_per_s: Throughput in generated tokens.
        ttft_s: Time to first token percentiles (``p50``, ``p90``, ``p99``; s).
        tpot_s: Time per output token percentiles (s).
        operational_g: Operational CO2eq per request (g), None without a carbon intensity.
        embodied_g: Embodied CO2eq per request (g).
    """

    model: str
    gpu: str
    gpus: int
    trace: str
    concurrency: int | None
    rate_per_s: float | None
    per_request_j: float
    per_request_low_j: float | None
    per_request_high_j: float | None
    interval_level: float | None
    per_output_token_j: float | None
    per_input_token_j: float | None
    requests_per_s: float
    output_tokens_per_s: float
    ttft_s: dict[str, float]
    tpot_s: dict[str, float]
    operational_g: float | None
    embodied_g: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


class Predictor:
    """A trained predictor: the shipped default, or a checkpoint written by ``llmco2 train``."""

    def __init__(self, model: EnergyPredictor) -> None:
        self.model = model
        self._grids: dict[tuple[Any, ...], PriceGrid] = {}
        self._grids_lock = threading.Lock()

    @classmethod
    def default(cls) -> Predictor:
        """The predictor shipped with the package (one instance, its grids shared by callers)."""
        return _shipped_predictor()

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """A checkpoint (``.npz`` or torch) written by ``llmco2 train``.

        Raises:
            ConfigFileError: No file there, or not a predictor.
        """
        from gnn.predict import load_predictor

        return cls(load_predictor(Path(path).expanduser()))

    def price_grid(
        self,
        architecture: Architecture,
        window: int | None,
        gpu: Gpu,
        tp: int,
        batch: int,
        precision: Precision,
    ) -> PriceGrid:
        """This predictor's grid of one deployment over every length it serves, built once.

        The axes run from 1 to the context window (``DEPLOYMENT_GRID_LENGTH`` without one), with
        ``DEPLOYMENT_GRID_POINTS`` a side; the latest ``DEPLOYMENT_GRIDS_KEPT`` grids are kept.
        """
        from llmco2.price_grid import PriceGrid, grid_axis

        key = (architecture, window, gpu.id, tp, batch, precision.label)
        with self._grids_lock:
            if key in self._grids:
                self._grids[key] = self._grids.pop(key)  # most recently used last
                return self._grids[key]
            axis = grid_axis(1, (window or DEPLOYMENT_GRID_LENGTH) - 1, DEPLOYMENT_GRID_POINTS)
            built = PriceGrid.build(self, architecture, gpu, tp, batch, precision, axis, axis)
            self._grids[key] = built
            while len(self._grids) > DEPLOYMENT_GRIDS_KEPT:
                self._grids.pop(next(iter(self._grids)))
            return built

    @property
    def trained_on(self) -> list[str]:
        """The GPU setups of its training data (``"1xH200"``, ...)."""
        return list(self.model.metadata.get("setups", []))


@functools.lru_cache(maxsize=1)
def _shipped_predictor() -> Predictor:
    from gnn.predict import default_predictor

    return Predictor(default_predictor())


def as_predictor(predictor: Predictor | str | Path | None) -> Predictor:
    """A :class:`Predictor` from one, a checkpoint's path, or None (the shipped one)."""
    if predictor is None:
        return Predictor.default()
    if isinstance(predictor, Predictor):
        return predictor
    return Predictor.load(predictor)


def carbon_grid(region: str | None, intensity: float | None, pue: float) -> CarbonIntensity | None:
    """The grid carbon intensity a prediction uses: a region's, a given one, or none.

    Raises:
        InvalidRequestError: Both a region and an intensity, a negative intensity or a PUE
            below 1.
        UnknownRegionError: A region the table does not know.
    """
    from gnn.carbon import CarbonIntensity, check_pue, lookup_intensity

    if region is not None and intensity is not None:
        raise InvalidRequestError("give a region or a carbon intensity, not both")
    check_pue(pue)
    if region is not None:
        return lookup_intensity(region)
    return CarbonIntensity(float(intensity), "given") if intensity is not None else None


def as_precision(precision: Precision | str | None) -> Precision:
    """Bit widths from a :class:`~featurize.precision.Precision`, its label, or None (bf16)."""
    from featurize.precision import Precision

    if precision is None:
        return Precision()
    if isinstance(precision, str):
        return Precision.from_label(precision)
    return precision


def request_points(
    architecture: Architecture,
    window: int | None,
    gpu: Gpu,
    counts: Sequence[int],
    batch: int,
    prompt: int,
    gen: int,
    precision: Precision,
) -> tuple[list[InferencePoint], list[tuple[int, str]]]:
    """The inference points of a request on each GPU count, and the counts it does not fit.

    Raises:
        InvalidRequestError: A request out of range, or longer than the model's context window.
    """
    from featurize import GpuSetup, InferencePoint, InferenceRequest, check_fits

    request = InferenceRequest(batch, prompt, gen)
    if window is not None and prompt + gen > window:
        raise InvalidRequestError(
            f"prompt {prompt:,} + {gen:,} generated tokens exceed the context window of "
            f"{architecture.name} ({window:,} tokens)"
        )
    points, skipped = [], []
    for count in counts:
        point = InferencePoint(architecture, request, GpuSetup(gpu, count), precision)
        try:
            check_fits(point)
        except InfeasibleConfigError as exc:
            skipped.append((count, str(exc)))
            continue
        points.append(point)
    return points, skipped


@overload
def predict(
    model: str,
    *,
    gpu: str = ...,
    tp: int = ...,
    batch: int = ...,
    prompt: int = ...,
    gen: int = ...,
    precision: Precision | str | None = ...,
    region: str | None = ...,
    intensity: float | None = ...,
    pue: float = ...,
    lifetime_years: float = ...,
    concurrency: None = ...,
    rate: None = ...,
    trace: str = ...,
    requests: int | None = ...,
    max_num_seqs: int | None = ...,
    predictor: Predictor | str | Path | None = ...,
    grid: bool = ...,
) -> Prediction: ...


@overload
def predict(
    model: str,
    *,
    gpu: str = ...,
    tp: int = ...,
    batch: int = ...,
    prompt: int = ...,
    gen: int = ...,
    precision: Precision | str | None = ...,
    region: str | None = ...,
    intensity: float | None = ...,
    pue: float = ...,
    lifetime_years: float = ...,
    concurrency: int,
    rate: None = ...,
    trace: str = ...,
    requests: int | None = ...,
    max_num_seqs: int | None = ...,
    predictor: Predictor | str | Path | None = ...,
    grid: bool = ...,
) -> DeploymentPrediction: ...


@overload
def predict(
    model: str,
    *,
    gpu: str = ...,
    tp: int = ...,
    batch: int = ...,
    prompt: int = ...,
    gen: int = ...,
    precision: Precision | str | None = ...,
    region: str | None = ...,
    intensity: float | None = ...,
    pue: float = ...,
    lifetime_years: float = ...,
    concurrency: None = ...,
    rate: float,
    trace: str = ...,
    requests: int | None = ...,
    max_num_seqs: int | None = ...,
    predictor: Predictor | str | Path | None = ...,
    grid: bool = ...,
) -> DeploymentPrediction: ...


def predict(
    model: str,
    *,
    gpu: str = DEFAULT_GPU,
    tp: int = 1,
    batch: int = 1,
    prompt: int = DEFAULT_PROMPT,
    gen: int = DEFAULT_GEN,
    precision: Precision | str | None = None,
    region: str | None = None,
    intensity: float | None = None,
    pue: float = 1.0,
    lifetime_years: float = DEFAULT_LIFETIME_YEARS,
    concurrency: int | None = None,
    rate: float | None = None,
    trace: str = "conv",
    requests: int | None = None,
    max_num_seqs: int | None = None,
    predictor: Predictor | str | Path | None = None,
    grid: bool = False,
) -> Prediction | DeploymentPrediction:
    """Energy, latency and CO2eq of a request, or of a deployment's requests at a load.

    Args:
        model: A catalog name or alias (``llmco2.models()``), or a Hugging Face ``config.json``
            (or its folder).
        gpu: A GPU catalog id or name (``llmco2.gpus()``).
        tp: GPUs of the tensor-parallel group.
        batch: Sequences of the request (a single request only).
        prompt: Prompt tokens of each sequence.
        gen: Generated tokens of each sequence.
        precision: Bit widths: a :class:`~featurize.precision.Precision` or its label
            (``"bf16"``, ``"w8a8kv8"``, ...); bf16 by default.
        region: A country (ISO alpha-3) or cloud region for the grid's carbon intensity
            (``llmco2.regions()``).
        intensity: Or the intensity itself (gCO2eq/kWh).
        pue: Power usage effectiveness of the data centre (≥ 1).
        lifetime_years: Hardware lifetime that embodied carbon is spread over.
        concurrency: Serving: requests in flight (closed loop). Returns a
            :class:`DeploymentPrediction`.
        rate: Serving: Poisson arrivals per second (open loop), instead of ``concurrency``.
        trace: Serving: request lengths from ``conv``, ``code`` or a CSV file of requests.
        requests: Serving: requests replayed (default max(200, 8 × C); 400 at a rate).
        max_num_seqs: Serving: sequences the engine runs at once (vLLM's default, 256).
        predictor: A :class:`Predictor` or a checkpoint's path; the shipped one by default.
        grid: A single request read off its deployment's grid of predictions
            (:meth:`Predictor.price_grid`, as ``predict_many(..., grid=True)``), for callers
            asking many questions of few deployments.

    Raises:
        UnknownModelError, UnknownGpuError, UnknownRegionError: Names nothing here knows.
        InvalidRequestError: Out-of-range or conflicting arguments.
        InfeasibleConfigError: The model does not fit the GPUs.
        ConfigFileError: A model config, trace or checkpoint that cannot be read.
    """
    from featurize import resolve_model
    from featurize.gpus import GpuCatalog
    from gnn.embodied import EmbodiedAssumptions

    carbon = carbon_grid(region, intensity, pue)
    embodied = EmbodiedAssumptions(lifetime_years=lifetime_years)
    bits = as_precision(precision)
    architecture, window = resolve_model(model)
    target = GpuCatalog.default().get(gpu)
    chosen = as_predictor(predictor)
    if concurrency is not None or rate is not None:
        if batch != 1:
            raise InvalidRequestError(
                "batch is for a single request: a serving load's requests come from its trace"
            )
        return _predict_deployment(
            chosen, architecture, window, target, tp, bits, concurrency, rate, trace, requests,
            max_num_seqs, carbon, pue, embodied,
        )  # fmt: skip
    points, skipped = request_points(architecture, window, target, [tp], batch, prompt, gen, bits)
    if skipped:
        raise InfeasibleConfigError(skipped[0][1])
    if grid:
        return _grid_prediction(chosen, points[0], window, carbon, pue, embodied)
    return price_points(chosen, points, carbon, pue, embodied)[0]


def _grid_prediction(
    predictor: Predictor,
    point: InferencePoint,
    window: int | None,
    carbon: CarbonIntensity | None,
    pue: float,
    embodied: Any,
) -> Prediction:
    """One request (already checked) read off its deployment's grid, exactly if it cannot be."""
    import numpy as np

    from gnn.carbon import operational_co2_g
    from gnn.embodied import embodied_co2_g
    from llmco2.price_grid import price_exactly

    request, setup = point.request, point.setup
    architecture, batch, bits = point.architecture, request.batch_size, point.precision
    price_grid = predictor.price_grid(architecture, window, setup.gpu, setup.count, batch, bits)
    values = price_grid.read_one(request.prompt_tokens, request.generated_tokens)
    if values is None:  # next to a length pair that does not fit: asked exactly
        values = price_exactly(
            predictor, architecture, setup.gpu, setup.count, batch, bits,
            np.array([request.prompt_tokens]), np.array([request.generated_tokens]),
        ).values[0]  # fmt: skip
    prefill, decode, latency, low, high = (float(v) for v in values)
    total = prefill + decode
    return Prediction(
        model=point.architecture.name,
        gpu=setup.gpu.id,
        gpus=setup.count,
        batch=request.batch_size,
        prompt=request.prompt_tokens,
        gen=request.generated_tokens,
        precision=point.precision.label,
        prefill_j=prefill,
        decode_j=decode,
        total_j=total,
        total_low_j=None if math.isnan(low) else low,
        total_high_j=None if math.isnan(high) else high,
        interval_level=price_grid.interval_level,
        latency_s=latency,
        latency_source=price_grid.latency_source,
        operational_g=operational_co2_g(total, carbon, pue) if carbon is not None else None,
        embodied_g=embodied_co2_g(setup.gpu, setup.count, latency, embodied),
        extrapolated=price_grid.extrapolated,
        carbon_intensity_g_per_kwh=carbon.g_per_kwh if carbon is not None else None,
        carbon_intensity_source=carbon.source if carbon is not None else None,
        pue=pue,
    )


def price_points(
    predictor: Predictor,
    points: list[InferencePoint],
    grid: CarbonIntensity | None,
    pue: float,
    embodied: Any,
) -> list[Prediction]:
    """One :class:`Prediction` per inference point, all through the predictor at once."""
    from gnn.predict import predict_energy

    results = predict_energy(predictor.model, points, grid, pue, embodied)
    return [
        Prediction(
            model=point.architecture.name,
            gpu=r.gpu,
            gpus=r.gpus,
            batch=point.request.batch_size,
            prompt=point.request.prompt_tokens,
            gen=point.request.generated_tokens,
            precision=point.precision.label,
            prefill_j=r.prefill_j,
            decode_j=r.decode_j,
            total_j=r.total_j,
            total_low_j=r.total_low_j,
            total_high_j=r.total_high_j,
            interval_level=r.interval_level,
            latency_s=r.latency_s,
            latency_source=r.latency_source,
            operational_g=r.operational_g,
            embodied_g=r.embodied_g,
            extrapolated=r.extrapolated,
            carbon_intensity_g_per_kwh=grid.g_per_kwh if grid is not None else None,
            carbon_intensity_source=grid.source if grid is not None else None,
            pue=pue,
        )
        for point, r in zip(points, results, strict=True)
    ]


def _predict_deployment(
    predictor: Predictor,
    architecture: Architecture,
    window: int | None,
    gpu: Gpu,
    tp: int,
    precision: Precision,
    concurrency: int | None,
    rate: float | None,
    trace: str,
    requests: int | None,
    max_num_seqs: int | None,
    grid: CarbonIntensity | None,
    pue: float,
    embodied: Any,
) -> DeploymentPrediction:
    from featurize import GpuSetup
    from orchestrator.serving_commands import (
        ServingRequestSpec,
        predict_deployment,
        serving_loads,
    )
    from workers.serving import DEFAULT_MAX_CONTEXT

    limit = min(window or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
    spec = ServingRequestSpec(concurrency, rate, None, trace, requests, max_num_seqs, limit)
    (row,) = predict_deployment(
        predictor.model, architecture, GpuSetup(gpu, tp), precision, serving_loads(spec),
        spec.sequences, grid, pue, embodied,
    )  # fmt: skip
    return DeploymentPrediction(
        model=architecture.name,
        gpu=gpu.id,
        gpus=tp,
        trace=trace,
        **{f.name: row[f.name] for f in dataclasses.fields(DeploymentPrediction) if f.name in row},
    )


def predict_many(
    requests: pd.DataFrame | Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
    *,
    model: str | None = None,
    gpu: str | None = None,
    tp: int | None = None,
    precision: Precision | str | None = None,
    region: str | None = None,
    intensity: float | None = None,
    pue: float = 1.0,
    lifetime_years: float = DEFAULT_LIFETIME_YEARS,
    predictor: Predictor | str | Path | None = None,
    grid: bool = False,
) -> pd.DataFrame:
    """Predict every request of a table at once: one row of results per row of requests.

    ``requests`` is a DataFrame, a mapping of columns (``{"prompt": [...], "gen": [...]}``) or
    rows of mappings. Each row gives its prompt and generated tokens (``prompt``/``gen``, or
    ``prompt_tokens``/``generated_tokens``, or the Azure trace's ``ContextTokens``/
    ``GeneratedTokens``) and optionally ``batch``, ``model``, ``gpu`` and ``tp``; the keyword
    arguments fill what the rows leave out. Every row is checked before any is predicted, and
    all of them go through the predictor in one call.

    With ``grid=True`` each deployment (model, GPU setup, batch, precision) is asked once on a
    grid of request lengths spanning its context window (:meth:`Predictor.price_grid`: about a
    second the first time, kept by the predictor) and its rows are read off it by interpolation,
    tens of thousands a second, within a fraction of a percent of the exact answer
    (``experiments/benchmarks/service_benchmark.py`` measures it); rows the grid cannot answer
    are predicted exactly.

    Returns:
        The requests' columns (model, gpu, tp, batch, prompt, gen) and :class:`Prediction`'s
        fields, in the rows' order.

    Raises:
        InvalidRequestError: A row without token counts or with values out of range (naming the
            row), or no rows.
        UnknownModelError, UnknownGpuError, UnknownRegionError: Names nothing here knows.
        InfeasibleConfigError: A row whose model does not fit its GPUs (naming the row).
    """
    import pandas as pd

    from featurize import resolve_model
    from featurize.gpus import GpuCatalog
    from gnn.embodied import EmbodiedAssumptions

    if isinstance(requests, pd.DataFrame):
        table = requests
    elif isinstance(requests, Mapping):
        table = pd.DataFrame(dict(requests))
    else:
        table = pd.DataFrame([dict(row) for row in requests])
    if table.empty:
        raise InvalidRequestError("no requests to predict")
    columns = {key: _column(table, names) for key, names in _COLUMNS.items()}
    for key in ("prompt", "gen"):
        if columns[key] is None:
            raise InvalidRequestError(
                f"the requests have no {key} token column (one of {', '.join(_COLUMNS[key])})"
            )
    for key, given in (("model", model), ("gpu", gpu)):
        if columns[key] is None and given is None:
            raise InvalidRequestError(f"give {key}= or a {key!r} column")
    carbon = carbon_grid(region, intensity, pue)
    embodied = EmbodiedAssumptions(lifetime_years=lifetime_years)
    bits = as_precision(precision)
    catalog = GpuCatalog.default()
    resolved: dict[str, tuple[Architecture, int | None]] = {}
    points: list[InferencePoint] = []
    defaults = {"model": model, "gpu": gpu, "tp": 1 if tp is None else tp, "batch": 1}
    if grid:
        gridded = _predict_on_grids(
            table, columns, defaults, bits, carbon, pue, embodied, as_predictor(predictor)
        )
        if gridded is not None:
            return gridded
    for index, values in enumerate(table.to_dict("records")):
        row = {
            key: defaults.get(key) if column is None or _empty(values[column]) else values[column]
            for key, column in columns.items()
        }
        try:
            name = str(row["model"])
            if name not in resolved:
                resolved[name] = resolve_model(name)
            architecture, window = resolved[name]
            count, batch, prompt, gen = (
                _count(row[key], key) for key in ("tp", "batch", "prompt", "gen")
            )
            found, skipped = request_points(
                architecture, window, catalog.get(str(row["gpu"])), [count], batch, prompt, gen,
                bits,
            )  # fmt: skip
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"request row {index}: {exc}") from None
        if skipped:
            raise InfeasibleConfigError(f"request row {index}: {skipped[0][1]}")
        points.extend(found)
    predictions = price_points(as_predictor(predictor), points, carbon, pue, embodied)
    out = pd.DataFrame([p.to_dict() for p in predictions])
    return out.rename(columns={"gpus": "tp"})


def _predict_on_grids(
    table: pd.DataFrame,
    columns: dict[str, str | None],
    defaults: dict[str, Any],
    bits: Precision,
    carbon: CarbonIntensity | None,
    pue: float,
    embodied: Any,
    predictor: Predictor,
) -> pd.DataFrame | None:
    """:func:`predict_many`'s rows read off their deployments' grids.

    None where a row needs the exact path's checks (a value out of range, past the context window
    or not fitting): the exact path then names the row.
    """
    import numpy as np
    import pandas as pd

    from featurize import resolve_model
    from featurize.gpus import GpuCatalog
    from gnn.carbon import operational_co2_g
    from gnn.embodied import embodied_co2_g
    from llmco2.price_grid import price_lengths

    n = len(table)
    given = {}
    for key, column in columns.items():
        if column is None:
            given[key] = pd.Series([defaults[key]] * n)
        else:
            cells = table[column].reset_index(drop=True)
            given[key] = cells.where(cells.notna(), defaults.get(key))
    numbers = {}
    for key in ("tp", "batch", "prompt", "gen"):
        values = pd.to_numeric(given[key], errors="coerce").to_numpy(dtype=np.float64)
        if not (np.isfinite(values) & (values >= 1) & (values == np.round(values))).all():
            return None
        numbers[key] = values.astype(np.int64)
    if given["model"].isna().any() or given["gpu"].isna().any():
        return None
    keys = pd.DataFrame(
        {"model": given["model"].astype(str), "gpu": given["gpu"].astype(str),
         "tp": numbers["tp"], "batch": numbers["batch"]}
    )  # fmt: skip
    catalog = GpuCatalog.default()
    prompts, gens = numbers["prompt"], numbers["gen"]
    values = np.full((n, 5), np.nan)
    text: dict[str, np.ndarray] = {
        k: np.empty(n, dtype=object) for k in ("model", "gpu", "latency_source")
    }
    extrapolated = np.zeros(n, dtype=bool)
    level = np.full(n, np.nan)
    per_second = np.zeros(n)
    groups: dict[Any, Any] = keys.groupby(["model", "gpu", "tp", "batch"], sort=False).indices
    for group, rows in groups.items():
        name, gpu_name, count, batch = str(group[0]), str(group[1]), int(group[2]), int(group[3])
        architecture, window = resolve_model(name)
        target = catalog.get(gpu_name)
        p, g = prompts[rows], gens[rows]
        if window is not None and bool((p + g > window).any()):
            return None
        price_grid = predictor.price_grid(architecture, window, target, count, batch, bits)
        priced = price_lengths(
            predictor, architecture, target, count, batch, bits, p, g, price_grid
        )
        if np.isnan(priced.values[:, 0]).any():
            return None
        values[rows] = priced.values
        text["model"][rows], text["gpu"][rows] = architecture.name, target.id
        text["latency_source"][rows] = priced.latency_source
        extrapolated[rows] = priced.extrapolated
        level[rows] = np.nan if priced.interval_level is None else priced.interval_level
        per_second[rows] = embodied_co2_g(target, count, 1.0, embodied)
    total = values[:, 0] + values[:, 1]
    operational = total * operational_co2_g(1.0, carbon, pue) if carbon is not None else None
    out = pd.DataFrame(
        {
            "model": text["model"], "gpu": text["gpu"], "tp": numbers["tp"],
            "batch": numbers["batch"], "prompt": prompts, "gen": gens, "precision": bits.label,
            "prefill_j": values[:, 0], "decode_j": values[:, 1], "total_j": total,
            "total_low_j": values[:, 3], "total_high_j": values[:, 4], "interval_level": level,
            "latency_s": values[:, 2], "latency_source": text["latency_source"],
            "operational_g": operational, "embodied_g": per_second * values[:, 2],
            "extrapolated": extrapolated,
            "carbon_intensity_g_per_kwh": None if carbon is None else carbon.g_per_kwh,
            "carbon_intensity_source": None if carbon is None else carbon.source,
            "pue": pue,
        }
    )  # fmt: skip
    for column in ("total_low_j", "total_high_j", "interval_level", "operational_g"):
        if out[column].isna().all():  # as the exact path: None where a prediction has none
            out[column] = pd.Series([None] * n, dtype=object)
    return out


def _empty(value: Any) -> bool:
    """Whether a table cell holds nothing (None, or NaN where a column has gaps)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _count(value: Any, what: str) -> int:
    """A whole number from a table cell.

    Raises:
        InvalidRequestError: An empty cell, or one that is not a whole number.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{what} must be a whole number, got {value!r}") from None
    if not number.is_integer():
        raise InvalidRequestError(f"{what} must be a whole number, got {value!r}")
    return int(number)


def _column(table: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in table.columns:
            return str(name)
    return None


def models() -> list[CatalogModel]:
    """The built-in LLM architectures: id, aliases, context window and architecture."""
    from featurize import catalog_models

    return list(catalog_models())


def gpus() -> list[Gpu]:
    """The GPU catalog with its datasheet figures."""
    from featurize.gpus import GpuCatalog

    return list(GpuCatalog.default())


def regions() -> dict[str, float]:
    """Grid carbon intensity (gCO2eq/kWh) of every country and cloud region ``region=`` takes."""
    from gnn.carbon import lookup_intensity, region_names

    return {name: lookup_intensity(name).g_per_kwh for name in region_names()}
