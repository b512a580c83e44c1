"""Measured points with their features and labels, as the training and evaluation code uses them.

A :class:`LabelledData` is read from exported datasets (``points.parquet`` folders) or straight
from a campaign in the store (exported to a temporary folder first, so both paths share one
reader). Rows without a prefill energy (an engine that cannot meter energy) are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featurize.graphs import build_graphs, graph_arrays
from featurize.kernels import KernelCounts, PointArrays, kernel_counts
from featurize.point import InferencePoint
from gnn.names import MIN_TRAINING_ROWS
from gnn.physics import PhysicsInputs
from llmco2.errors import InvalidRequestError


def _first_gpu(uuids: Any) -> str:
    """The first GPU UUID of a row (stored as a list, exported as comma-joined text)."""
    if not uuids:
        return ""
    return str(uuids.split(",")[0] if isinstance(uuids, str) else uuids[0])


def _number(value: Any) -> float:
    return float(value) if value is not None else float("nan")


@dataclass
class LabelledData:
    """Points, their graphs and features, and measured energies (J)."""

    points: list[InferencePoint]
    graphs: list[Any]
    prefill_j: np.ndarray
    decode_j: np.ndarray
    total_j: np.ndarray
    family: np.ndarray
    gpu_type: np.ndarray
    gpu_count: np.ndarray
    model_name: np.ndarray
    global_features: np.ndarray
    arrays: PointArrays
    counts: KernelCounts | None
    simulated: bool
    source: str
    #: Measured prefill and decode latency (s) of every row, ``(N, 2)``; NaN where unknown.
    latency_s: np.ndarray | None = None
    #: The physical GPU of every row (its group's first UUID; "" where unrecorded).
    machine: np.ndarray | None = None
    _physics: PhysicsInputs | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def physics_inputs(self) -> PhysicsInputs:
        """The analytical model's per-phase quantities of every row (computed once)."""
        if self._physics is None:
            counts = self.counts if self.counts is not None else kernel_counts(self.points)
            self._physics = PhysicsInputs.of(counts, self.gpu_type.tolist())
        return self._physics

    @property
    def configuration(self) -> np.ndarray:
        """Every row's configuration: architecture shape, GPU setup and precision."""
        return np.array(
            [
                f"{name} | {setup} | {point.precision.label}"
                for name, setup, point in zip(self.model_name, self.setup, self.points, strict=True)
            ]
        )

    @property
    def energy_j(self) -> np.ndarray:
        """Measured prefill and decode energy, ``(N, 2)``."""
        return np.stack([self.prefill_j, self.decode_j], axis=1)

    @property
    def phase_latency_s(self) -> np.ndarray:
        """Measured prefill and decode latency, ``(N, 2)`` (NaN where not recorded)."""
        if self.latency_s is None:
            return np.full((len(self), 2), np.nan)
        return self.latency_s

    @property
    def size_b(self) -> np.ndarray:
        """Parameters of every row's architecture, in billions."""
        return np.array([p.architecture.total_params / 1e9 for p in self.points])

    @property
    def setup(self) -> np.ndarray:
        """``"{count}x{gpu}"`` of every row."""
        return np.array([f"{c}x{g}" for c, g in zip(self.gpu_count, self.gpu_type, strict=True)])

    def coverage(self) -> dict[str, Any]:
        """What the data spans, for a predictor's metadata (:func:`gnn.predict.extrapolates`).

        GPU setups, models, model families, precisions (``Precision.label``) and the precisions
        measured on each GPU type.
        """
        by_gpu: dict[str, set[str]] = {}
        for gpu, point in zip(self.gpu_type.tolist(), self.points, strict=True):
            by_gpu.setdefault(str(gpu), set()).add(point.precision.label)
        return {
            "setups": sorted(set(self.setup.tolist())),
            "models": sorted(set(self.model_name.tolist())),
            "families": sorted(set(self.family.tolist())),
            "precisions": sorted({p.precision.label for p in self.points}),
            "gpu_precisions": {gpu: sorted(labels) for gpu, labels in sorted(by_gpu.items())},
        }

    @classmethod
    def from_rows(
        cls, rows: Sequence[tuple[InferencePoint, dict[str, Any]]], source: str
    ) -> LabelledData:
        """Build from (point, exported row) pairs.

        Raises:
            InvalidRequestError: Fewer than :data:`~gnn.names.MIN_TRAINING_ROWS` rows with energy
                labels.
        """
        kept = [(p, r) for p, r in rows if r.get("prefill_energy_j") is not None]
        if len(kept) < MIN_TRAINING_ROWS:
            raise InvalidRequestError(
                f"{source} has {len(kept)} points with energy labels; "
                f"at least {MIN_TRAINING_ROWS} are needed"
            )
        points = [p for p, _ in kept]
        prefill = np.array([r["prefill_energy_j"] for _, r in kept], dtype=np.float64)
        total = np.array([r["energy_j"] for _, r in kept], dtype=np.float64)
        if np.any(prefill <= 0) or np.any(total <= 0):
            raise InvalidRequestError(f"{source} has non-positive energies")
        decode = np.maximum(total - prefill, 0.0)  # a 1-token request has no decode
        features = graph_arrays(points)
        latency = np.array(
            [[_number(r.get("prefill_latency_s")), _number(r.get("latency_s"))] for _, r in kept]
        )
        latency[:, 1] -= latency[:, 0]  # decode = whole request − prefill
        return cls(
            points=points,
            graphs=build_graphs(features),
            prefill_j=prefill,
            decode_j=decode,
            total_j=prefill + decode,
            family=np.array([p.architecture.family for p in points]),
            gpu_type=np.array([p.setup.gpu.id for p in points]),
            gpu_count=np.array([p.setup.count for p in points]),
            model_name=np.array([p.architecture.name for p in points]),
            global_features=features.global_features,
            arrays=features.counts.inputs,
            counts=features.counts,
            simulated=any(bool(r["simulated"]) for _, r in kept),
            source=source,
            latency_s=latency,
            machine=np.array([_first_gpu(r.get("gpu_uuids")) for _, r in kept]),
        )

    @classmethod
    def from_exported(
        cls, folders: Sequence[Path], *, include_simulated: bool = False
    ) -> LabelledData:
        """Read exported datasets (folders holding ``points.parquet``).

        Raises:
            ConfigFileError: A folder without a readable ``points.parquet``.
            InvalidRequestError: Too few labelled rows.
        """
        from llmco2.errors import ConfigFileError
        from storage.export import read_exported_points

        for folder in folders:
            if not (Path(folder) / "points.parquet").is_file():
                raise ConfigFileError(f"{str(folder)!r} holds no exported points.parquet")
        try:
            rows = read_exported_points(folders, include_simulated=include_simulated)
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigFileError(
                f"cannot read the dataset in {', '.join(map(str, folders))}: {exc}"
            ) from exc
        return cls.from_rows(rows, ", ".join(str(f) for f in folders))

    @classmethod
    def from_campaign(
        cls, url: str, campaign: str, *, include_simulated: bool = False
    ) -> LabelledData:
        """Read a campaign's COMPLETE points from the store.

        Raises:
            UnknownCampaignError: No such campaign.
            DatabaseError: The database cannot be read.
            InvalidRequestError: Too few labelled rows.
        """
        from storage import CampaignStore

        store = CampaignStore(url, create=False)
        try:
            info = store.get_campaign(campaign)
            rows = [
                (point.inference_point(), labels)
                for point, labels in store.labelled_points(info.id)
                if include_simulated or not labels["simulated"]
            ]
            return cls.from_rows(rows, f"campaign {campaign!r} in {store.url}")
        finally:
            store.close()
