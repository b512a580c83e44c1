"""Benchmark: exporting a campaign of N measured points (default 100,000) to Parquet and CSV.

Builds the campaign once (points through ``CampaignStore.add_points``; measurements bulk-inserted
directly, since only the export is timed), then times ``export_campaign`` per format. Prints a
table and writes JSON.

    python experiments/benchmarks/export_throughput.py [--rows 100000] [--db URL] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select

from featurize import (
    GpuCatalog,
    GpuSetup,
    InferencePoint,
    InferenceRequest,
    catalog_models,
)
from storage import CampaignStore, PointSpec, PointStatus, mask_url
from storage.export import export_campaign
from storage.models import Measurement, Point

DEFAULT_OUT = Path(__file__).parent / "results" / "export_throughput.json"


def build(store: CampaignStore, rows: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    archs = [m.architecture for m in catalog_models() if m.architecture.num_heads % 2 == 0]
    gpus = [GpuCatalog.builtin().get(name) for name in ("H100-SXM", "H200", "A100-80GB")]
    campaign = store.create_campaign("export-benchmark", {"rows": rows, "seed": seed})
    specs = []
    seen = set()
    while len(specs) < rows:
        arch = archs[rng.integers(len(archs))]
        request = InferenceRequest(
            int(rng.integers(1, 5)), int(rng.integers(1, 8192)), int(rng.integers(1, 1024))
        )
        setup = GpuSetup(gpus[rng.integers(len(gpus))], int(rng.choice([1, 2])))
        key = (arch.name, request, setup.gpu.id, setup.count)
        if key in seen:
            continue
        seen.add(key)
        specs.append(PointSpec(InferencePoint(arch, request, setup), "vllm"))
    start = time.perf_counter()
    ids = store.add_points(campaign.id, specs)
    energies = rng.lognormal(4.0, 1.5, size=len(ids))
    with store.engine.begin() as conn:
        for chunk in range(0, len(ids), 5000):
            part = ids[chunk : chunk + 5000]
            conn.execute(
                insert(Measurement),
                [
                    {
                        "point_id": point_id,
                        "energy_j": float(e),
                        "prefill_energy_j": float(e) * 0.1,
                        "decode_energy_j": float(e) * 0.9,
                        "gpu_energies_j": [float(e)],
                        "latency_s": float(e) / 400,
                        "repeats": 3,
                        "noisy": False,
                        "engine_name": "vllm",
                        "engine_version": "0.24.0",
                        "simulated": False,
                    }
                    for point_id, e in zip(part, energies[chunk : chunk + 5000], strict=True)
                ],
            )
        conn.execute(
            Point.__table__.update()
            .where(Point.campaign_id == campaign.id)
            .values(status=PointStatus.COMPLETE)
        )
        assert conn.execute(select(Point.id).limit(1)).first() is not None
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", default=None, help="database URL (default: a temporary SQLite)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = CampaignStore(url)
        setup_s = build(store, args.rows, args.seed)
        timings = {}
        for fmt in ("parquet", "csv"):
            start = time.perf_counter()
            result = export_campaign(store, "export-benchmark", fmt, Path(tmp) / f"out-{fmt}")
            timings[fmt] = time.perf_counter() - start
            assert result.points == args.rows
        store.close()

    print(f"export benchmark: {args.rows} rows, {mask_url(url)}, {os.cpu_count()} CPUs")
    print(f"{'format':<10}{'seconds':>10}{'rows/s':>12}")
    for fmt, seconds in timings.items():
        print(f"{fmt:<10}{seconds:>10.2f}{args.rows / seconds:>12,.0f}")
    print(f"(setup: add_points + bulk measurements {setup_s:.1f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "export_throughput",
                "rows": args.rows,
                "database": "sqlite (temporary file)" if args.db is None else mask_url(url),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "export_seconds": timings,
                "rows_per_second": {k: args.rows / v for k, v in timings.items()},
                "setup_seconds": setup_s,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
