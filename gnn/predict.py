"""What a request will cost: energy per phase from the predictor, CO2eq from the grid and the chips.

Energy comes from the GNN; latency, which the GNN does not predict, from the simulated twin
(calibrated on the real H200 data, datasheet-derived for other GPUs), and it sets the share of
the hardware's lifetime charged as embodied carbon (:mod:`gnn.embodied`).

The default predictor ships in ``gnn/data/default_predictor.pt`` (see its card,
``gnn/data/DEFAULT_PREDICTOR.md``); another checkpoint can be named. Each answer says whether the
GPU setup and model family were in the predictor's training data, so an extrapolation is never
presented as a measurement-backed number.
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
from gnn.carbon import CarbonIntensity, operational_co2_g
from gnn.embodied import EmbodiedAssumptions, embodied_co2_g
from gnn.portable import PortablePredictor


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


class EnergyPredictor(Protocol):
    """What ``predict`` needs: a torch :class:`~gnn.training.Predictor` or its portable copy."""

    metadata: dict[str, Any]

    def predict_points(self, points: Sequence[InferencePoint]) -> np.ndarray:
        """Energy (J) of each point: columns prefill, decode, total."""


@cache
def default_predictor() -> PortablePredictor:
    """The predictor shipped with the package (its NumPy copy: no torch import)."""
    with resources.as_file(resources.files("gnn").joinpath("data/default_predictor.npz")) as path:
        return PortablePredictor.load(Path(path))


def load_predictor(path: Path | None) -> EnergyPredictor:
    """A predictor by path (``.npz`` portable or a torch checkpoint), or the shipped default."""
    if path is None:
        return default_predictor()
    if path.suffix == ".npz":
        return PortablePredictor.load(path)
    from gnn.training import Predictor

    return Predictor.load(path)


def extrapolates(predictor: EnergyPredictor, point: InferencePoint) -> bool:
    """Whether the point's GPU setup or model family is outside the training data."""
    setups = set(predictor.metadata.get("setups", []))
    families = {
        name.split("/")[-1].split("-")[0].lower() for name in predictor.metadata.get("models", [])
    }
    family = point.architecture.family.rstrip("0123456789").lower()
    known_family = any(f.startswith(family) for f in families)
    return f"{point.setup.count}x{point.setup.gpu.id}" not in setups or not known_family


def twin_latency_s(points: list[InferencePoint]) -> list[float]:
    """Modelled latency (s) of each point from the simulated twin of its GPU type."""
    from workers.engines.simulated import TwinInputs, TwinParameters, twin_costs

    latencies = np.zeros(len(points))
    by_gpu: dict[str, list[int]] = {}
    for index, point in enumerate(points):
        by_gpu.setdefault(point.setup.gpu.id, []).append(index)
    for rows in by_gpu.values():  # one vectorised twin evaluation per GPU type
        group = [points[i] for i in rows]
        costs = twin_costs(TwinInputs.of(group), TwinParameters.for_gpu(group[0].setup.gpu))
        latencies[rows] = costs[:, 0] + costs[:, 1]
    return [float(v) for v in latencies]


def predict_energy(
    predictor: EnergyPredictor,
    points: list[InferencePoint],
    intensity: CarbonIntensity | None = None,
    pue: float = 1.0,
    embodied: EmbodiedAssumptions | None = None,
) -> list[EnergyPrediction]:
    """Energy, latency, embodied and (given an intensity) operational CO2eq of each point."""
    energies = predictor.predict_points(points)
    latencies = twin_latency_s(points)
    results = []
    for point, (prefill, decode, total), latency in zip(points, energies, latencies, strict=True):
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
            )
        )
    return results
