"""The GPU-to-GPU spread of one configuration's energy (the noise floor of accuracy figures)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gnn.dataset import LabelledData
from gnn.evaluation import evaluate
from gnn.noise_floor import machine_spread
from gnn.report import write_report
from tests.conftest import twin_labels, twin_points


def test_the_spread_of_known_gpu_offsets_is_recovered() -> None:
    rng = np.random.default_rng(0)
    offsets = {"GPU-a": 0.05, "GPU-b": 0.0, "GPU-c": -0.05}
    machine, configuration, ratios = [], [], []
    for config in ("llama", "qwen", "gemma"):
        for gpu, offset in offsets.items():
            for _ in range(6):
                machine.append(gpu)
                configuration.append(config)
                # A model error shared by the configuration must not count as spread.
                ratios.append(offset + {"llama": 0.1, "qwen": -0.2, "gemma": 0.0}[config])
                ratios[-1] += rng.normal(0, 1e-4)
    spread = machine_spread(np.array(machine), np.array(configuration), np.array(ratios))
    assert spread is not None
    assert spread.sigma == pytest.approx(0.05, rel=0.01)  # pooled over k - 1 = 2 per config
    assert (spread.configurations, spread.gpus, spread.points) == (3, 3, 54)
    assert spread.offsets["GPU-a"] == pytest.approx(0.05, abs=1e-3)
    assert spread.floor_mape == pytest.approx(5.0 * math.sqrt(2 / math.pi), rel=0.01)
    assert spread.spread_pct == pytest.approx(100 * math.expm1(spread.sigma))


def test_gpus_without_enough_points_unknown_gpus_and_unpredicted_points_are_left_out() -> None:
    machine = np.array(["GPU-a", "GPU-a", "GPU-b", "", "", "GPU-c", "GPU-c"])
    configuration = np.array(["x"] * 7)
    ratios = np.array([0.1, 0.1, 0.5, 0.9, 0.9, np.nan, np.nan])
    # GPU-b has one point, "" is unknown, GPU-c was not predicted: one GPU is left, no spread.
    assert machine_spread(machine, configuration, ratios) is None
    both = machine_spread(machine, configuration, ratios, min_points=1)
    assert both is not None and both.gpus == 2 and both.sigma == pytest.approx(0.2 * math.sqrt(2))


def _data_on_three_gpus() -> LabelledData:
    """Twin points, each measured on one of three GPUs that draw -4, 0 and +4 % energy."""
    points = twin_points(90, seed=3)
    rows = []
    for number, (point, row) in enumerate(zip(points, twin_labels(points), strict=True)):
        factor = math.exp((number % 3 - 1) * 0.04)
        rows.append(
            (
                point,
                {
                    **row,
                    "energy_j": float(row["energy_j"]) * factor,  # type: ignore[arg-type]
                    "prefill_energy_j": float(row["prefill_energy_j"]) * factor,  # type: ignore[arg-type]
                    "gpu_uuids": f"GPU-{number % 3},GPU-extra",
                },
            )
        )
    return LabelledData.from_rows(rows, "twin on three GPUs")


def test_evaluate_measures_the_noise_floor_and_reports_it(tmp_path: Path, twin_data: Any) -> None:
    data = _data_on_three_gpus()
    assert set(data.machine.tolist()) == {"GPU-0", "GPU-1", "GPU-2"}  # type: ignore[union-attr]
    result = evaluate(data, ["llmcarbon", "physics"], ["random"], folds=3)
    assert result.noise_floor is not None
    method, spread = result.noise_floor
    assert method == "physics"  # the better of the two on random configurations
    assert 2.5 < spread.spread_pct < 6.0  # about the 4 % put in, through the model's residuals
    assert spread.offsets["GPU-2"] > 0 > spread.offsets["GPU-0"]
    stored = result.to_dict()["noise_floor"]
    assert stored["method"] == "physics" and stored["floor_mape"] == spread.floor_mape
    text = (write_report(result, tmp_path / "report", "test") / "report.md").read_text()
    assert f"**{spread.spread_pct:.1f} %**" in text and "| GPU-2 |" in text

    # Data without recorded GPUs (the twin's rows) has no floor, and the report says why.
    without = evaluate(twin_data, ["physics"], ["random"], folds=3)
    assert without.noise_floor is None and without.to_dict()["noise_floor"] is None
    text = (write_report(without, tmp_path / "bare", "test") / "report.md").read_text()
    assert "Not measured: it needs the random split" in text


def test_each_row_knows_its_gpu_from_the_store_and_from_an_export(
    sqlite_url: str, tmp_path: Path
) -> None:
    from storage import CampaignStore, MeasurementRecord, PointSpec
    from storage.export import export_campaign

    points = twin_points(12, seed=2)
    store = CampaignStore(sqlite_url)
    campaign = store.create_campaign("gpus", {"engine": "vllm"})
    store.add_points(campaign.id, [PointSpec(p, "vllm") for p in points])
    for number, stored in enumerate(store.claim(campaign.id, "test", len(points))):
        store.record_result(
            stored.id,
            MeasurementRecord(
                engine_name="vllm", simulated=False, energy_j=10.0 + number,
                prefill_energy_j=2.0, decode_energy_j=8.0 + number, latency_s=1.0,
                gpu_uuids=[f"GPU-{number % 2}", "GPU-second"],
            ),
        )  # fmt: skip
    export_campaign(store, "gpus", "parquet", tmp_path / "export")
    store.close()
    for data in (
        LabelledData.from_campaign(sqlite_url, "gpus"),
        LabelledData.from_exported([tmp_path / "export"]),
    ):
        assert data.machine is not None
        assert sorted(data.machine.tolist()) == ["GPU-0"] * 6 + ["GPU-1"] * 6
