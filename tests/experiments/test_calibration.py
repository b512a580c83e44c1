"""The twin's calibration runs on the committed real data and beats the uncalibrated twin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "workers" / "data" / "twin_params.json"


def test_calibration_on_the_real_dataset_improves_the_twin(tmp_path: Path) -> None:
    shipped = PARAMS.read_bytes()
    result = subprocess.run(
        [
            sys.executable,
            "experiments/calibration/calibrate_twin.py",
            "experiments/data/real-v1",
            "--gpu",
            "H200",
            "--iterations",
            "600",
            "--dry-run",
            "--report",
            str(tmp_path / "twin"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = {
        line.split()[0]: [float(v) for v in line.split()[1:]]
        for line in result.stdout.splitlines()
        if re.match(r"^(default|calibrated)\s", line)
    }
    points = pq.read_metadata(ROOT / "experiments/data/real-v1/points.parquet").num_rows
    assert f"{points} real points on H200" in result.stdout
    assert rows["calibrated"][1] < rows["default"][1]  # energy MAPE
    assert rows["calibrated"][1] < 10.0
    # The report says how far the twin is from the real data, also out of sample.
    report = (tmp_path / "twin" / "report.md").read_text()
    assert "| calibrated, 5-fold out of sample |" in report and "| family |" in report
    results = json.loads((tmp_path / "twin" / "results.json").read_text())
    assert results["points"] == points and len(results["out_of_sample"]) == 3
    assert 0 < results["out_of_sample"][1] < results["default"][1]
    assert PARAMS.read_bytes() == shipped  # --dry-run leaves the shipped parameters alone
