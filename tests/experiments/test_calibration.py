"""The twin's calibration runs on the committed real data and beats the uncalibrated twin."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def test_calibration_on_the_real_dataset_improves_the_twin() -> None:
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
