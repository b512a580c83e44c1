"""Export a campaign as a dataset for a predictor team: Parquet, CSV or a PyG dataset.

One row per COMPLETE point with every feature (architecture, precision, request, hardware and
the featurizer's per-phase analytic totals) and every label (energies, latencies, powers, their
spread), failures and infeasible points in a separate file, one row per engine start in
``engine_loads`` (:mod:`storage.engine_loads`: load time, points, time held and measuring; its
totals — duty cycle, median load, points per GPU-hour — in the manifest), the spread of the
campaign's reference point over runs and GPUs (:mod:`storage.reference`), and
``manifest.json`` (schema version, campaign config, code version, row counts, SHA-256 of every
file), and, for a campaign with serving points, one row per measured serving load in
``serving`` (the engine, the load, energy per request, token and request rates, latency
percentiles, each request's timeline). Simulated rows are
left out unless asked for, so real data never mixes with the digital twin's.

The export is written to a temporary folder beside the target and renamed into place, so an
interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from featurize.architecture import LATER_FIELD_DEFAULTS, Architecture
from featurize.gpus import GpuCatalog
from featurize.kernels import PHASES, QUANTITIES, KernelCounts, PointArrays, kernel_counts
from featurize.point import GpuSetup, InferencePoint
from featurize.precision import Precision
from featurize.request import InferenceRequest
from llmco2.outputs import atomic_directory, check_output_folder
from llmco2.version import code_version
from storage.database import current_revision
from storage.engine_loads import as_columns, engine_loads, load_summary
from storage.records import MEASUREMENT_COLUMNS, StoredPoint
from storage.reference import reference_summary
from storage.store import CampaignStore
from storage.store.serving import SERVING_RECORD_COLUMNS

MANIFEST_NAME = "manifest.json"
GRAPHS_NAME = "graphs.pt"


class ExportFormat(StrEnum):
    """Dataset formats."""

    PARQUET = "parquet"
    CSV = "csv"
    PYG = "pyg"


#: Point columns of a dataset: what a stored point holds, but where it is stored and who leased it.
_POINT_FIELDS = tuple(
    name for name in StoredPoint.__dataclass_fields__ if name not in ("campaign_id", "lease_owner")
)
_ARCH_FIELDS = tuple(f for f in Architecture.__dataclass_fields__ if f != "name")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    out_dir: Path
    points: int
    failures: int
    excluded_simulated: int
    files: dict[str, dict[str, Any]]
    #: Serving loads written (``serving.*``).
    serving: int = 0


def _precision(row: dict[str, Any]) -> Precision:
    """The precision of a dataset row.

    Rows exported before experts had their own width lack the column; a column of missing values
    may read back as NaN.
    """
    experts = row.get("expert_weight_bits")
    if experts is not None and math.isnan(float(experts)):
        experts = None
    return Precision(
        int(row["weight_bits"]),
        int(row["activation_bits"]),
        int(row["kv_bits"]),
        None if experts is None else int(experts),
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _point_arrays(
    rows: Sequence[dict[str, Any]], architectures: dict[str, dict[str, Any]], gpus: GpuCatalog
) -> PointArrays | None:
    """The featurizer's input arrays for ``rows``: one point object per engine configuration."""
    if not rows:
        return None
    configs: dict[str, int] = {}
    representatives: list[InferencePoint] = []
    index = np.empty(len(rows), dtype=np.int64)
    for n, row in enumerate(rows):
        position = configs.get(row["config_key"])
        if position is None:
            position = configs[row["config_key"]] = len(representatives)
            representatives.append(
                InferencePoint(
                    Architecture(**architectures[row["config_key"]]),
                    InferenceRequest(1, 1, 1),  # ignored: requests come as arrays
                    GpuSetup(gpus.get(row["gpu_type"]), row["gpu_count"]),
                    _precision(row),
                    row["flash_attention"],
                )
            )
        index[n] = position
    return PointArrays.from_configs(
        representatives,
        index,
        [r["batch_size"] for r in rows],
        [r["prompt_tokens"] for r in rows],
        [r["generated_tokens"] for r in rows],
    )


def _feature_columns(arrays: PointArrays | None) -> tuple[dict[str, Any], KernelCounts | None]:
    """The featurizer's per-phase totals and roofline times of every row."""
    if arrays is None:
        return {}, None
    counts = kernel_counts(arrays)
    totals = counts.totals()
    roof = counts.roofline()
    memory = (counts.memory_bytes * counts.present[:, None, :]).sum(axis=2)
    columns: dict[str, Any] = {}
    for ph, phase in enumerate(PHASES):
        for name in ("flops", "weight_bytes", "kv_read_bytes", "network_bytes"):
            columns[f"{phase.value}_{name}"] = totals[:, ph, QUANTITIES.index(name)]
        columns[f"{phase.value}_memory_bytes"] = memory[:, ph]
        columns[f"{phase.value}_roofline_time_s"] = roof.time[:, ph].sum(axis=1)
    return columns, counts


def _table(
    rows: Sequence[dict[str, Any]],
    architectures: dict[str, dict[str, Any]],
    extra: dict[str, Any],
    label_fields: bool,
) -> pa.Table:
    columns: dict[str, Any] = {}
    names = [f for f in _POINT_FIELDS if f not in ("architecture", "id")]
    columns["point_id"] = [r["id"] for r in rows]
    for name in names:
        columns[name] = [r[name] for r in rows]
    # A shape stored before a field existed has that field's earlier value.
    shapes = {key: {**LATER_FIELD_DEFAULTS, **arch} for key, arch in architectures.items()}
    for name in _ARCH_FIELDS:
        per_config = {key: shape[name] for key, shape in shapes.items()}
        columns[f"arch_{name}"] = [per_config[r["config_key"]] for r in rows]
    columns.update(extra)
    if label_fields:
        for name in MEASUREMENT_COLUMNS:
            values = [r[name] for r in rows]
            if name in ("gpu_names", "gpu_uuids"):
                values = [",".join(v) if v else None for v in values]
            columns[name] = values
    return pa.table(columns)


#: Serving point columns of a dataset, in order (the architecture goes out as ``arch_*``).
_SERVING_POINT_FIELDS = (
    "model_name", "family", "weight_bits", "activation_bits", "kv_bits", "expert_weight_bits",
    "flash_attention", "gpu_type", "gpu_count", "engine", "trace", "trace_sha256",
    "concurrency", "rate_per_s", "requests", "max_context", "seed", "max_num_seqs",
    "round_index", "gpu_seconds",
)  # fmt: skip
#: Measurement columns of a serving dataset (the percentile dicts go out one column each).
_SERVING_RESULT_FIELDS = tuple(
    name
    for name in SERVING_RECORD_COLUMNS
    if name not in ("ttft_s", "tpot_s", "max_num_seqs", "requests", "extra")
)


def _serving_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """One row per measured serving load: its engine, its load and what it cost.

    ``engine_max_num_seqs`` is the scheduler the engine really had; ``timeline`` and
    ``engine_settings`` are JSON text.
    """
    columns: dict[str, Any] = {"serving_point_id": [r["id"] for r in rows]}
    for name in _SERVING_POINT_FIELDS:
        columns[name] = [r[name] for r in rows]
    for name in _ARCH_FIELDS:
        columns[f"arch_{name}"] = [
            {**LATER_FIELD_DEFAULTS, **r["architecture"]}[name] for r in rows
        ]
    columns["engine_max_num_seqs"] = [r["engine_max_num_seqs"] for r in rows]
    for name in _SERVING_RESULT_FIELDS:
        values = [r[name] for r in rows]
        if name in ("gpu_names", "gpu_uuids"):
            values = [",".join(v) if v else None for v in values]
        columns[name] = values
    for name in ("ttft_s", "tpot_s"):
        for q in ("p50", "p90", "p99"):
            columns[f"{name.removesuffix('_s')}_{q}_s"] = [
                (json.loads(r[name]) if isinstance(r[name], str) else r[name] or {}).get(q)
                for r in rows
            ]
    return pa.table(columns)


def _write_table(table: pa.Table, folder: Path, stem: str, fmt: ExportFormat) -> Path:
    if fmt is ExportFormat.CSV:
        path = folder / f"{stem}.csv"
        pa_csv.write_csv(table, path)
    else:
        path = folder / f"{stem}.parquet"
        pq.write_table(table, path, compression="zstd")
    return path


def _write_graphs(rows: Sequence[dict[str, Any]], counts: KernelCounts | None, path: Path) -> None:
    import torch

    from featurize.graphs import build_graphs
    from storage.graph_dataset import ExportedGraphs

    graphs = build_graphs(counts) if counts is not None else []
    for graph, row in zip(graphs, rows, strict=True):
        labels = [row["prefill_energy_j"], row["decode_energy_j"], row["energy_j"]]
        graph.y = torch.tensor(
            [[np.nan if v is None else float(v) for v in labels]], dtype=torch.float32
        )
        graph.point_id = torch.tensor([row["id"]])
    ExportedGraphs.save(graphs, str(path))


def export_campaign(
    store: CampaignStore,
    campaign_name: str,
    fmt: ExportFormat | str,
    out_dir: Path,
    *,
    include_simulated: bool = False,
    overwrite: bool = False,
    gpus: GpuCatalog | None = None,
) -> ExportResult:
    """Write a campaign's dataset to ``out_dir``.

    Raises:
        UnknownCampaignError: No campaign of that name.
        ExportError: The target is a file, a non-empty folder llmco2 did not write (or one it
            wrote, without ``overwrite``), or cannot be written.
        DatabaseError: The database cannot be read.
    """
    fmt = ExportFormat(fmt)
    out_dir = check_output_folder(out_dir, overwrite=overwrite, what="export folder")
    campaign = store.get_campaign(campaign_name)
    # JSON lists of numbers go out as the JSON text they are stored as.
    rows = store.dataset_rows(campaign.id, json_as_text=("gpu_energies_j",))
    complete, failed, architectures = rows.complete, rows.failed, rows.architectures
    excluded = 0
    if not include_simulated:
        kept = [r for r in complete if not r["simulated"]]
        excluded = len(complete) - len(kept)
        complete = kept
    catalog = gpus if gpus is not None else GpuCatalog.default()
    features, counts = _feature_columns(_point_arrays(complete, architectures, catalog))
    serving = store.serving_rows(campaign.id, json_as_text=("timeline", "engine_settings"))
    serving_counts = store.serving_status_counts(campaign.id)
    excluded_serving = 0
    if not include_simulated:
        kept_serving = [r for r in serving if not r["simulated"]]
        excluded_serving = len(serving) - len(kept_serving)
        serving = kept_serving
    # Counted where the campaign has serving points at all.
    serving_summary = (
        {
            "serving": len(serving),
            "serving_excluded_simulated": excluded_serving,
            "serving_failures": serving_counts["FAILED"] + serving_counts["INFEASIBLE"],
        }
        if any(serving_counts.values())
        else {}
    )
    load_rows = store.engine_load_rows(campaign.id)
    loads, unrecorded = engine_loads(
        r for r in load_rows if include_simulated or not r["simulated"]
    )

    with atomic_directory(out_dir, overwrite=overwrite, what="export folder") as staging:
        table_format = ExportFormat.PARQUET if fmt is ExportFormat.PYG else fmt
        written = [
            _write_table(
                _table(complete, architectures, features, True), staging, "points", table_format
            ),
            _write_table(
                _table(failed, architectures, {}, False), staging, "failures", table_format
            ),
            _write_table(pa.table(as_columns(loads)), staging, "engine_loads", table_format),
        ]
        if serving:
            written.append(_write_table(_serving_table(serving), staging, "serving", table_format))
        if fmt is ExportFormat.PYG:
            _write_graphs(complete, counts, staging / GRAPHS_NAME)
            written.append(staging / GRAPHS_NAME)
        rows_of = {"points": len(complete), "graphs": len(complete), "engine_loads": len(loads),
                   "failures": len(failed), "serving": len(serving)}  # fmt: skip
        files = {
            path.name: {
                "sha256": _sha256(path),
                "bytes": path.stat().st_size,
                "rows": rows_of[path.name.split(".")[0]],
            }
            for path in written
        }
        from featurize.graphs import FEATURE_SCHEMA_VERSION

        manifest = {
            "format": fmt.value,
            "schema_revision": current_revision(store.engine),
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "code_version": code_version(),
            "exported_at": datetime.now(UTC).isoformat(),
            "database": store.url,
            "campaign": {
                "name": campaign.name,
                "config": campaign.config,
                "config_hash": campaign.config_hash,
                "code_version": campaign.code_version,
                "status": campaign.status,
            },
            "include_simulated": include_simulated,
            "counts": {
                "points": len(complete),
                "failures": len(failed),
                "excluded_simulated": excluded,
                **serving_summary,
            },
            "engine_loads": load_summary(loads, unrecorded),
            "reference": reference_summary(complete, architectures),
            "files": files,
            "load": {
                "parquet": "pyarrow.parquet.read_table('points.parquet')",
                "pyg": "storage.graph_dataset.ExportedGraphs('<this folder>')",
                "serving": "pyarrow.parquet.read_table('serving.parquet')",
            },
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return ExportResult(out_dir, len(complete), len(failed), excluded, files, len(serving))


def read_exported_points(
    folders: Sequence[Path], gpus: GpuCatalog | None = None, *, include_simulated: bool = False
) -> list[tuple[InferencePoint, dict[str, Any]]]:
    """The rows of exported ``points.parquet`` files, each with its rebuilt inference point.

    The inverse of the export's point columns, for tools that learn from a dataset (the twin's
    calibration, the default predictor's training). Simulated rows are skipped unless asked for.
    """
    catalog = gpus if gpus is not None else GpuCatalog.default()
    result = []
    for folder in folders:
        for row in pq.read_table(Path(folder) / "points.parquet").to_pylist():
            if row["simulated"] and not include_simulated:
                continue
            point = InferencePoint(
                _architecture(row),
                InferenceRequest(row["batch_size"], row["prompt_tokens"], row["generated_tokens"]),
                GpuSetup(catalog.get(row["gpu_type"]), row["gpu_count"]),
                _precision(row),
                row["flash_attention"],
            )
            result.append((point, row))
    return result


def _architecture(row: dict[str, Any]) -> Architecture:
    """The architecture of a dataset row (its ``model_name`` and ``arch_*`` columns)."""
    return Architecture(
        name=row["model_name"],
        # Datasets exported before a field existed lack its column: theirs is the value every
        # shape had then.
        **{
            f: row.get(f"arch_{f}", LATER_FIELD_DEFAULTS[f])
            if f in LATER_FIELD_DEFAULTS
            else row[f"arch_{f}"]
            for f in _ARCH_FIELDS
        },
    )


@dataclass(frozen=True)
class ExportedServingLoad:
    """A row of an exported ``serving`` table with the deployment it was measured on.

    Attributes:
        architecture: The model shape.
        setup: GPU type and count.
        precision: Its bit widths.
        row: Every column of the row (the load: ``trace``, ``concurrency``, ``rate_per_s``,
            ``requests``, ``max_context``, ``seed``; ``engine_max_num_seqs``; the results).
    """

    architecture: Architecture
    setup: GpuSetup
    precision: Precision
    row: dict[str, Any]


def read_exported_serving(
    folders: Sequence[Path], gpus: GpuCatalog | None = None, *, include_simulated: bool = False
) -> list[ExportedServingLoad]:
    """The serving loads of exported datasets (folders without a ``serving`` table add none).

    Simulated rows are skipped unless asked for.
    """
    catalog = gpus if gpus is not None else GpuCatalog.default()
    loads = []
    for folder in folders:
        path = Path(folder) / "serving.parquet"
        if not path.is_file():
            continue
        for row in pq.read_table(path).to_pylist():
            if row["simulated"] and not include_simulated:
                continue
            setup = GpuSetup(catalog.get(row["gpu_type"]), row["gpu_count"])
            loads.append(ExportedServingLoad(_architecture(row), setup, _precision(row), row))
    return loads
