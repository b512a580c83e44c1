"""Dataset export: Parquet, CSV and PyG, manifest, simulated rows, atomic writes."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import torch

import storage.export as export_module
from featurize.architecture import LATER_FIELD_DEFAULTS
from llmco2.errors import ExportError, UnknownCampaignError
from storage import CampaignStore, MeasurementRecord, StoredPoint
from storage.database import head_revision
from storage.export import export_campaign, read_exported_points
from storage.graph_dataset import ExportedGraphs
from storage.records import MEASUREMENT_COLUMNS, PointSpec, config_key, point_key
from tests.conftest import make_specs


def _engine_start(n: int) -> dict[str, Any]:
    """What a worker records of its engine start: points 2-5 on one, 6-9 on a second, 10-13
    (simulated) on a third."""
    instance = "a" if n < 6 else "b" if n < 10 else "sim"
    first = n in (2, 6, 10)
    return {
        "engine_instance": instance,
        "engine_loaded_at": f"2026-12-04T10:0{n // 4}:00+00:00",
        "engine_load_s": 30.0 if instance == "a" else 20.0,
        # The first result carries the load: held from the start to its end.
        "held_s": 40.0 if first else 5.0,
        "window_s": 4.0,
        # Only the newer start timed its phases.
        "engine_phases": {"actor_start_s": 3.0, "import_s": 7.0, "engine_init_s": 18.0}
        if instance == "a"
        else {},
    }


def fill(store: CampaignStore) -> None:
    """10 real + 4 simulated COMPLETE points, 2 INFEASIBLE, 1 FAILED, 3 PENDING; the first two
    real points measured before engines recorded their starts."""
    campaign = store.create_campaign("exp", {"engine": "vllm", "A": 20})
    ids = store.add_points(campaign.id, make_specs(20, engine="vllm"))
    store.claim(campaign.id, "w", 17)
    for n, point_id in enumerate(ids[:14]):
        simulated = n >= 10
        store.record_result(
            point_id,
            MeasurementRecord(
                engine_name="simulated" if simulated else "vllm",
                simulated=simulated,
                energy_j=10.0 + n,
                prefill_energy_j=1.0 + n,
                decode_energy_j=9.0,
                gpu_energies_j=[10.0 + n],
                latency_s=0.1,
                gpu_names=["NVIDIA H100 80GB HBM3"],
                engine_version="0.24.0",
                extra=None if n < 2 else _engine_start(n),
                gpu_uuids=[f"GPU-{n // 6}"],
                started_at=datetime(2026, 12, 4, 10, n),
                finished_at=datetime(2026, 12, 4, 10, n, 30),
            ),
        )
    store.record_infeasible(ids[14], "needs 90 GB")
    store.record_infeasible(ids[15], "unsupported")
    store.record_failure(ids[16], "crash", "actor died", retryable=False)


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """An empty folder for exports (the SQLite file lives in tmp_path)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


@pytest.fixture
def filled(db_url: str) -> CampaignStore:
    store = CampaignStore(db_url)
    fill(store)
    return store


def check_manifest(folder: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    for name, info in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == info["sha256"]
    return manifest


def test_parquet_export_has_features_labels_and_a_manifest(
    filled: CampaignStore, exports: Path
) -> None:
    out = exports / "dataset"
    result = export_campaign(filled, "exp", "parquet", out)
    assert (result.points, result.failures, result.excluded_simulated) == (10, 3, 4)
    table = pq.read_table(out / "points.parquet").to_pylist()
    assert len(table) == 10
    row = table[0]
    assert row["energy_j"] == 10.0 and row["prefill_energy_j"] == 1.0
    assert row["arch_hidden_size"] == 896 and row["gpu_type"] == "H100-SXM"
    assert row["prefill_flops"] > 0 and row["decode_memory_bytes"] > row["prefill_memory_bytes"]
    assert row["simulated"] is False and row["gpu_names"] == "NVIDIA H100 80GB HBM3"
    assert json.loads(row["gpu_energies_j"]) == [10.0]
    failures = pq.read_table(out / "failures.parquet").to_pylist()
    assert sorted(f["status"] for f in failures) == ["FAILED", "INFEASIBLE", "INFEASIBLE"]
    assert {f["error_message"] for f in failures} >= {"needs 90 GB", "actor died"}
    manifest = check_manifest(out)
    assert manifest["counts"] == {"points": 10, "failures": 3, "excluded_simulated": 4}
    assert manifest["schema_revision"] == head_revision()
    assert manifest["campaign"]["config"] == {"engine": "vllm", "A": 20}
    assert "code_version" in manifest


def test_engine_starts_export_one_row_each_with_their_totals(
    filled: CampaignStore, exports: Path
) -> None:
    out = exports / "dataset"
    export_campaign(filled, "exp", "parquet", out)
    loads = pq.read_table(out / "engine_loads.parquet").to_pylist()
    assert [(r["engine_instance"], r["points"]) for r in loads] == [("a", 4), ("b", 4)]
    first = loads[0]
    assert (first["load_s"], first["held_s"], first["window_s"]) == (30.0, 55.0, 16.0)
    assert first["duty_cycle"] == pytest.approx(16 / 55)
    assert first["tp"] == 1 and first["gpu_type"] == "H100-SXM"
    assert json.loads(first["gpu_uuids"]) == ["GPU-0"]
    assert first["loaded_at"] == "2026-12-04T10:00:00+00:00"
    assert first["first_measured_at"].startswith("2026-12-04T10:02:00")
    assert first["last_measured_at"].startswith("2026-12-04T10:05:30")
    phases = ("actor_start_s", "import_s", "engine_init_s", "idle_power_s")
    assert [first[p] for p in phases] == [3.0, 7.0, 18.0, None]
    assert [loads[1][p] for p in phases] == [None] * 4
    manifest = check_manifest(out)
    assert manifest["files"]["engine_loads.parquet"]["rows"] == 2
    summary = manifest["engine_loads"]
    assert summary["loads"] == 2 and summary["points"] == 8
    assert summary["points_without_engine_record"] == 2
    assert summary["median_load_s"] == 25.0
    assert summary["duty_cycle"] == pytest.approx(32 / 110)
    assert summary["points_per_gpu_hour"] == pytest.approx(8 / (110 / 3600))
    assert summary["median_phase_s"] == {"actor_start_s": 3.0, "import_s": 7.0,
                                         "engine_init_s": 18.0}  # fmt: skip
    # The twin's engine start comes with its rows only.
    export_campaign(filled, "exp", "csv", exports / "all", include_simulated=True)
    table = pa_csv.read_csv(exports / "all" / "engine_loads.csv")
    assert table.column("engine_instance").to_pylist() == ["a", "b", "sim"]


def test_dataset_columns_come_from_the_records(filled: CampaignStore, exports: Path) -> None:
    out = exports / "dataset"
    export_campaign(filled, "exp", "parquet", out)
    columns = set(pq.read_table(out / "points.parquet").column_names)
    measured = set(MEASUREMENT_COLUMNS)
    # Every measurement field but the audit records, every stored point field but where it is
    # stored and who leased it; the architecture goes out one column per field.
    assert measured <= columns and "prefill_latency_s" in measured
    assert not columns & {"gpu_state_before", "gpu_state_after", "extra"}
    point_fields = set(StoredPoint.__dataclass_fields__) - {"campaign_id", "lease_owner"}
    assert point_fields - {"id", "architecture"} <= columns
    assert {"point_id", "model_name", "family", "arch_hidden_size"} <= columns
    assert not columns & {"campaign_id", "lease_owner", "architecture"}
    failures = set(pq.read_table(out / "failures.parquet").column_names)
    assert point_fields - {"id", "architecture"} <= failures and not failures & measured


def test_exported_points_read_back(filled: CampaignStore, exports: Path) -> None:
    export_campaign(filled, "exp", "parquet", exports / "d")
    original = {spec.point.request: spec.point for spec in make_specs(20, engine="vllm")}
    read = read_exported_points([exports / "d"])
    assert (
        len(read) == 10 and len(read_exported_points([exports / "d"], include_simulated=True)) == 10
    )
    for point, row in read:
        assert point.request in original
        assert point.architecture.replace(name="x") == original[point.request].architecture.replace(
            name="x"
        )
        assert point.setup.gpu.id == "H100-SXM" and row["energy_j"] > 0


REAL_DATA = Path(__file__).resolve().parents[2] / "experiments" / "data"


def test_the_keys_of_the_real_datasets_are_what_the_code_computes_today() -> None:
    # A field added to the architecture must not change the key of a point measured before it:
    # a resumed campaign would measure it again under a new key.
    folders = sorted(p.parent for p in REAL_DATA.glob("*/points.parquet"))
    assert folders, "the real datasets are part of the repository"
    rows = read_exported_points(folders)
    assert len(rows) > 300
    runs = sum(row["reason"] == "reference" for _, row in rows)
    for point, row in rows:
        assert config_key(point, row["engine"]) == row["config_key"], row["model_name"]
        if row["reason"] == "reference":
            # A reference point is measured once per run, each time under a key of its own.
            keys = {PointSpec(point, row["engine"], replicate=n).row()["key"] for n in range(runs)}
            assert row["key"] in keys, row["model_name"]
        else:
            assert point_key(point, row["engine"]) == row["key"], row["model_name"]


def test_shapes_stored_before_later_fields_existed_export_with_their_earlier_values(
    filled: CampaignStore, exports: Path
) -> None:
    import sqlalchemy as sa

    with filled.engine.begin() as connection:
        rows = connection.execute(sa.text("SELECT id, architecture FROM points")).all()
        for point_id, stored in rows:
            shape = json.loads(stored) if isinstance(stored, str) else dict(stored)
            for field in LATER_FIELD_DEFAULTS:
                shape.pop(field, None)
            connection.execute(
                sa.text("UPDATE points SET architecture = :a WHERE id = :i"),
                {"a": json.dumps(shape), "i": point_id},
            )
    export_campaign(filled, "exp", "parquet", exports / "old")
    table = pq.read_table(exports / "old" / "points.parquet")
    assert table.num_rows == 10
    for field, default in LATER_FIELD_DEFAULTS.items():
        assert set(table.column(f"arch_{field}").to_pylist()) == {default}


def test_simulated_rows_only_on_request(filled: CampaignStore, exports: Path) -> None:
    result = export_campaign(filled, "exp", "csv", exports / "all", include_simulated=True)
    assert result.points == 14
    table = pa_csv.read_csv(exports / "all" / "points.csv")
    assert table.num_rows == 14 and sum(table.column("simulated").to_pylist()) == 4
    check_manifest(exports / "all")


def test_pyg_export_loads_in_one_line(filled: CampaignStore, exports: Path) -> None:
    export_campaign(filled, "exp", "pyg", exports / "graphs")
    dataset = ExportedGraphs(exports / "graphs")
    assert len(dataset) == 10
    graph = dataset[0]
    assert graph.y.shape == (1, 3)
    assert torch.allclose(graph.y, torch.tensor([[1.0, 9.0, 10.0]]))
    assert graph.x.shape[1] > 0 and graph.edge_index.shape[0] == 2
    check_manifest(exports / "graphs")


def test_a_users_folder_is_never_replaced(filled: CampaignStore, exports: Path) -> None:
    out = exports / "dataset"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ExportError, match="llmco2 did not write"):
            export_campaign(filled, "exp", "parquet", out, overwrite=overwrite)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in exports.iterdir()] == ["dataset"]  # no temporary folders left


def test_an_llmco2_export_needs_overwrite_to_be_replaced(
    filled: CampaignStore, exports: Path
) -> None:
    out = exports / "dataset"
    export_campaign(filled, "exp", "parquet", out)
    first = (out / "manifest.json").read_text()
    with pytest.raises(ExportError, match="not empty"):
        export_campaign(filled, "exp", "parquet", out)
    assert (out / "manifest.json").read_text() == first
    export_campaign(filled, "exp", "csv", out, overwrite=True)
    assert (out / "points.csv").exists() and not (out / "points.parquet").exists()
    assert [p.name for p in exports.iterdir()] == ["dataset"]


def test_an_interrupted_export_leaves_nothing(
    filled: CampaignStore, exports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "_write_graphs", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        export_campaign(filled, "exp", "pyg", exports / "graphs")
    assert list(exports.iterdir()) == []


def test_unknown_campaign(filled: CampaignStore, exports: Path) -> None:
    with pytest.raises(UnknownCampaignError, match="'exp'"):
        export_campaign(filled, "nope", "parquet", exports / "x")
    assert list(exports.iterdir()) == []
