"""What a request will cost: energy per phase from the predictor, CO2eq from the grid and the chips.

Energy, its interval and latency come from the llmco2 predictor (:mod:`gnn.hybrid`: the
analytical model corrected by the GNN, latency trained on measured latencies); a plain GNN
checkpoint (from older releases) predicts energy only, and its latency then comes from the
simulated twin. Latency sets the share of the hardware's lifetime charged as embodied carbon
(:mod:`gnn.embodied`).

The default predictor ships in ``gnn/data/default_predictor.npz`` (see its card,
``gnn/data/DEFAULT_PREDICTOR.md``); another checkpoint can be named. Each answer says whether the
GPU setup and model family were in the predictor's training data, and whether its GPU type has
measured coefficients, so an extrapolation is never presented as a measurement-backed number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from featurize.point import InferencePoint
from featurize.precision import Precision
from gnn.carbon import CarbonIntensity, operational_co2_g
from gnn.embodied import EmbodiedAssumptions, embodied_co2_g
from gnn.hybrid import HybridPredictor, load_any


@dataclass(frozen=True)
class EnergyPrediction:
    """Predicted energy and carbon of one request on one GPU setup."""

    gpus: int
    gpu: str
    prefill_j: float
    decode_j: float
    total_j: float
    latency_s: float
    operational_g: float | None
    embodied_g: float
    extrapolated: bool
    #: The interval's bounds of total energy (None for a predictor without one).
    total_low_j: float | None = None
    total_high_j: float | None = None
    #: Nominal coverage of that interval (e.g. 0.8 for its 10-90 % quantiles).
    interval_level: float | None = None
    #: Where the latency came from: ``"measured latencies"`` or ``"simulated twin"``.
    latency_source: str = "simulated twin"


class EnergyPredictor(Protocol):
    """What ``predict`` needs: a torch :class:`~gnn.training.Predictor` or its portable copy."""

    metadata: dict[str, Any]

    def predict_points(self, points: Sequence[InferencePoint]) -> np.ndarray:
        """Energy (J) of each point: columns prefill, decode, total."""


@cache
def default_predictor() -> HybridPredictor:
    """The predictor shipped with the package (its NumPy copy: no torch import)."""
    with resources.as_file(resources.files("gnn").joinpath("data/default_predictor.npz")) as path:
        return HybridPredictor.load(Path(path))


def load_predictor(path: Path | None) -> EnergyPredictor:
    """A predictor by path (llmco2 or plain GNN, ``.npz`` or torch), or the shipped default.

    Raises:
        ConfigFileError: The file is missing or not a predictor.
    """
    if path is None:
        return default_predictor()
    if not path.is_file():
        from llmco2.errors import ConfigFileError

        raise ConfigFileError(f"no predictor at {str(path)!r}")
    return load_any(path)


def extrapolates(predictor: EnergyPredictor, point: InferencePoint) -> bool:
    """Whether the point lies outside the predictor's training data.

    That is: its GPU setup, model family or precision was not measured (the precision on its GPU
    type, where the metadata says which were), or its GPU type has no fitted coefficients in the
    analytical model.
    """
    if isinstance(predictor, HybridPredictor) and not predictor.gpu_measured(point.setup.gpu.id):
        return True
    setups = set(predictor.metadata.get("setups", []))
    family = point.architecture.family
    if "families" in predictor.metadata:
        known_family = family in predictor.metadata["families"]
    else:
        # Predictors trained before their metadata listed families: the families their model
        # names start with ("Qwen/Qwen2-7B" -> qwen2, "google/gemma-2-9b" -> gemma, which
        # gemma2 extends).
        named = {
            name.split("/")[-1].split("-")[0].lower()
            for name in predictor.metadata.get("models", [])
        }
        known_family = any(family.startswith(prefix) for prefix in named)
    # Predictors trained before their metadata listed precisions learnt from 16-bit data only.
    precisions = predictor.metadata.get("precisions", [Precision().label])
    by_gpu = predictor.metadata.get("gpu_precisions")
    if by_gpu is not None:
        precisions = by_gpu.get(point.setup.gpu.id, [])
    return (
        f"{point.setup.count}x{point.setup.gpu.id}" not in setups
        or not known_family
        or point.precision.label not in precisions
    )


def twin_latency_s(points: list[InferencePoint]) -> list[float]:
    """Modelled latency (s) of each point from the simulated twin of its GPU type."""
    from workers.engines.simulated import twin_costs_of

    costs = twin_costs_of(points)
    return [float(v) for v in costs[:, 0] + costs[:, 1]]


def predict_energy(
    predictor: EnergyPredictor,
    points: list[InferencePoint],
    intensity: CarbonIntensity | None = None,
    pue: float = 1.0,
    embodied: EmbodiedAssumptions | None = None,
) -> list[EnergyPrediction]:
    """Energy, latency, embodied and (given an intensity) operational CO2eq of each point."""
    low: list[float | None] = [None] * len(points)
    high: list[float | None] = [None] * len(points)
    level = None
    if isinstance(predictor, HybridPredictor):
        detailed = predictor.predict_detailed(points)
        energies = detailed.energy_j
        latencies = [float(v) for v in detailed.latency_s.sum(axis=1)]
        sources = [
            "measured latencies (analytical time × learned correction)"
            if predictor.gpu_measured(p.setup.gpu.id)
            else "analytical time (no measurements of this GPU type: datasheet-prior efficiencies)"
            for p in points
        ]
        if predictor.interval is not None:
            low = [float(v) for v in detailed.low_j[:, 2]]
            high = [float(v) for v in detailed.high_j[:, 2]]
            level = predictor.interval.level
    else:
        energies = predictor.predict_points(points)
        latencies = twin_latency_s(points)
        sources = ["simulated twin"] * len(points)
    results = []
    for index, (point, (prefill, decode, total), latency) in enumerate(
        zip(points, energies, latencies, strict=True)
    ):
        co2 = operational_co2_g(float(total), intensity, pue) if intensity is not None else None
        results.append(
            EnergyPrediction(
                gpus=point.setup.count,
                gpu=point.setup.gpu.id,
                prefill_j=float(prefill),
                decode_j=float(decode),
                total_j=float(total),
                latency_s=latency,
                operational_g=co2,
                embodied_g=embodied_co2_g(point.setup.gpu, point.setup.count, latency, embodied),
                extrapolated=extrapolates(predictor, point),
                total_low_j=low[index],
                total_high_j=high[index],
                interval_level=level,
                latency_source=sources[index],
            )
        )
    return results
