"""What a request will cost: energy per phase from the predictor, operational CO2eq from the grid.

The default predictor ships in ``gnn/data/default_predictor.pt`` (see its card,
``gnn/data/DEFAULT_PREDICTOR.md``); another checkpoint can be named. Each answer says whether the
GPU setup and model family were in the predictor's training data, so an extrapolation is never
presented as a measurement-backed number.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from featurize.graphs import build_graphs
from featurize.point import InferencePoint
from gnn.carbon import CarbonIntensity, operational_co2_g
from gnn.training import Predictor


@dataclass(frozen=True)
class EnergyPrediction:
    """Predicted energy and carbon of one request on one GPU setup."""

    gpus: int
    gpu: str
    prefill_j: float
    decode_j: float
    total_j: float
    operational_g: float | None
    extrapolated: bool


@cache
def default_predictor() -> Predictor:
    """The predictor shipped with the package."""
    with resources.as_file(resources.files("gnn").joinpath("data/default_predictor.pt")) as path:
        return Predictor.load(Path(path))


def load_predictor(path: Path | None) -> Predictor:
    """A checkpoint by path, or the shipped default."""
    return default_predictor() if path is None else Predictor.load(path)


def extrapolates(predictor: Predictor, point: InferencePoint) -> bool:
    """Whether the point's GPU setup or model family is outside the training data."""
    setups = set(predictor.metadata.get("setups", []))
    families = {
        name.split("/")[-1].split("-")[0].lower() for name in predictor.metadata.get("models", [])
    }
    family = point.architecture.family.rstrip("0123456789").lower()
    known_family = any(f.startswith(family) for f in families)
    return f"{point.setup.count}x{point.setup.gpu.id}" not in setups or not known_family


def predict_energy(
    predictor: Predictor,
    points: list[InferencePoint],
    intensity: CarbonIntensity | None = None,
    pue: float = 1.0,
) -> list[EnergyPrediction]:
    """Energy (and operational CO2eq when an intensity is given) of each point."""
    energies = predictor.predict(build_graphs(points))
    results = []
    for point, (prefill, decode, total) in zip(points, energies, strict=True):
        co2 = operational_co2_g(float(total), intensity, pue) if intensity is not None else None
        results.append(
            EnergyPrediction(
                gpus=point.setup.count,
                gpu=point.setup.gpu.id,
                prefill_j=float(prefill),
                decode_j=float(decode),
                total_j=float(total),
                operational_g=co2,
                extrapolated=extrapolates(predictor, point),
            )
        )
    return results
