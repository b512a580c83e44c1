"""The reference point's spread: one fixed point measured once per campaign run.

Each run of a campaign (a new engine instance, on a real campaign often a new machine) measures
the campaign's reference point (``reason == "reference"``): how far its energy moves between
engine instances and physical GPUs is the noise floor under every accuracy figure of the data.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ReferenceSpread:
    """Energy of the reference point over some of its measurements.

    Attributes:
        measurements: How many.
        mean_j: Mean energy per request.
        min_j: Lowest.
        max_j: Highest.
        cv_percent: Standard deviation ÷ mean (None below two measurements).
    """

    measurements: int
    mean_j: float
    min_j: float
    max_j: float
    cv_percent: float | None

    @classmethod
    def of(cls, energies: Sequence[float]) -> ReferenceSpread:
        """The spread of ``energies`` (at least one)."""
        mean = statistics.fmean(energies)
        cv = 100 * statistics.stdev(energies) / mean if len(energies) > 1 and mean else None
        return cls(len(energies), mean, min(energies), max(energies), cv)


def _first_uuid(value: Any) -> str:
    if isinstance(value, str):
        value = value.split(",")
    return str(value[0]) if value else "unknown"


def reference_summary(
    rows: Iterable[dict[str, Any]], architectures: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The reference point's spread over all its measurements and per GPU (first UUID).

    Args:
        rows: Dataset rows of COMPLETE points (``reason``, ``energy_j``, ``gpu_uuids``,
            ``config_key``, the request and the GPU setup); rows of other reasons are skipped.
        architectures: Architecture of each engine configuration (``config_key``).

    Returns:
        None without a measured reference point, else ``point`` (model and request), ``all``
        (a :class:`ReferenceSpread` as a dict) and ``per_gpu`` (first UUID → spread).
    """
    measured = [r for r in rows if r.get("reason") == "reference" and r.get("energy_j")]
    if not measured:
        return None
    first = measured[0]
    by_gpu: dict[str, list[float]] = {}
    for row in measured:
        by_gpu.setdefault(_first_uuid(row.get("gpu_uuids")), []).append(float(row["energy_j"]))
    return {
        "point": {
            "model_name": architectures.get(first["config_key"], {}).get("name"),
            "batch_size": first.get("batch_size"),
            "prompt_tokens": first.get("prompt_tokens"),
            "generated_tokens": first.get("generated_tokens"),
            "gpu_type": first.get("gpu_type"),
            "gpu_count": first.get("gpu_count"),
        },
        "all": asdict(ReferenceSpread.of([float(r["energy_j"]) for r in measured])),
        "per_gpu": {uuid: asdict(ReferenceSpread.of(e)) for uuid, e in sorted(by_gpu.items())},
    }
