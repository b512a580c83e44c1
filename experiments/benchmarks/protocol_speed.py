"""Seconds per point and measured energy under shorter measurement windows (GPU only).

    PYTHONPATH=/tmp/site:$PWD python experiments/benchmarks/protocol_speed.py \
        --shape llama3.1-8b --out $OUT

One engine of ``--shape`` (the product's :class:`workers.actors.EngineWorker`, vLLM, dummy
weights, GPU 0) measures a fixed set of requests under each protocol variant in turn: the
campaigns' protocol (``base``: 1 warm-up, 2 windows of ≥ 2 s and ≥ 20 counter updates, for the
request and for its prefill), then windows of ≥ 1 s / 10 updates and ≥ 0.5 s / 5 updates, then the
campaigns' protocol again (``base-again``): the spread between the two ``base`` passes is the
floor against which the shorter windows' energies are judged. A request is warmed up once, in
the first pass, as a campaign's engine warms each request once. Prints a table and writes
``protocol_speed.json`` under ``--out`` after every pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategy_benchmark import CAMPAIGN_PROTOCOL

from featurize import InferenceRequest, Precision, resolve_architecture
from featurize.gpus import GpuCatalog
from workers.actors import EngineWorker
from workers.devices import detect_gpu_names
from workers.engines import EngineConfig
from workers.protocol_settings import DEFAULT_MIN_PERIODS

#: The requests every pass measures: (batch, prompt tokens, generated tokens).
REQUESTS = ((1, 1024, 128), (4, 512, 64), (2, 2048, 16), (8, 256, 200), (1, 4000, 8), (16, 700, 96))

#: Protocol passes: name → (shortest window in seconds, counter updates a window must span).
PASSES: dict[str, tuple[float, int]] = {
    "base": (2.0, DEFAULT_MIN_PERIODS),
    "1s": (1.0, 10),
    "0.5s": (0.5, 5),
    "base-again": (2.0, DEFAULT_MIN_PERIODS),
}


def run_pass(worker: EngineWorker, name: str, window_s: float, periods: int) -> dict[str, Any]:
    """Measure every request of :data:`REQUESTS` with windows of ``window_s`` / ``periods``."""
    protocol = worker.protocol
    assert protocol is not None and protocol.meter is not None
    protocol.settings = dataclasses.replace(
        CAMPAIGN_PROTOCOL, min_window_s=window_s, min_periods=periods
    )
    rows = []
    for number, (batch, prompt, generated) in enumerate(REQUESTS):
        began = time.monotonic()
        result = worker.measure(number, InferenceRequest(batch, prompt, generated))
        record = result.record
        rows.append(
            {
                "request": [batch, prompt, generated],
                "status": result.status,
                "error": result.error_message,
                "seconds": time.monotonic() - began,
                "energy_j": record.energy_j if record else None,
                "prefill_j": record.prefill_energy_j if record else None,
                "cv": record.energy_cv if record else None,
                "noisy": record.noisy if record else None,
            }
        )
    return {"pass": name, "window_s": window_s, "min_periods": periods, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama3.1-8b", help="catalog shape")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = detect_gpu_names()
    if not names:
        raise SystemExit("protocol_speed.py needs a GPU with an energy counter")
    gpu = GpuCatalog.default().get(names[0])
    config = EngineConfig(resolve_architecture(args.shape), Precision(), 1, gpu, True, 0)
    began = time.monotonic()
    worker = EngineWorker("vllm", config, CAMPAIGN_PROTOCOL)
    document: dict[str, Any] = {
        "host": platform.node(),
        "gpu": names,
        "shape": args.shape,
        "load_s": time.monotonic() - began,
        "load_error": worker.load_error,
        "counter_period_s": None,
        "passes": [],
    }
    if worker.protocol is None or worker.protocol.meter is None:
        raise SystemExit(f"engine did not load: {worker.load_error}")
    document["counter_period_s"] = worker.protocol.meter.counter_period()
    print(f"{args.shape}: load {document['load_s']:.0f} s, counter period "
          f"{1000 * document['counter_period_s']:.0f} ms")  # fmt: skip
    for name, (window_s, periods) in PASSES.items():
        document["passes"].append(run_pass(worker, name, window_s, periods))
        (args.out / "protocol_speed.json").write_text(json.dumps(document, indent=1))
    worker.shutdown()
    base = [p for p in document["passes"] if p["pass"].startswith("base")]
    print("pass        s/point  energy vs mean of the base passes (per request)      CV median")
    for entry in document["passes"]:
        ratios = []
        for i, row in enumerate(entry["rows"]):
            energies = [b["rows"][i]["energy_j"] for b in base if b["rows"][i]["energy_j"]]
            if row["energy_j"] and energies:
                ratios.append(100 * (row["energy_j"] / statistics.fmean(energies) - 1))
        seconds = statistics.fmean(r["seconds"] for r in entry["rows"])
        cvs = [100 * r["cv"] for r in entry["rows"] if r["cv"] is not None]
        print(
            f"{entry['pass']:11s} {seconds:7.1f}  "
            + " ".join(f"{r:+5.1f}%" for r in ratios)
            + f"   {statistics.median(cvs) if cvs else float('nan'):.2f} %"
        )


if __name__ == "__main__":
    main()
