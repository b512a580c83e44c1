"""Energy per request of vLLM serving at a range of loads, on this machine's first GPU.

    PYTHONPATH=/tmp/site:$PWD python experiments/gpu/serving_sweep.py \
        --shapes llama3.1-8b --traces conv,code --concurrency 1,2,4,8,16,32,64 --out $OUT/serving

For every shape: one engine (the product's :class:`workers.engines.vllm_engine.VllmEngine`, its
scheduler admitting up to the largest concurrency), a warm-up run, then every (trace, load) as a
closed loop at each concurrency C and an open loop at each ``--rate`` (and at each
``--rate-fraction`` of the throughput predicted at the largest C), measured as a campaign's
serving points are (:func:`workers.serving.measure_load`: the GPU's NVML energy counter read
between scheduler steps, every 20 ms at most). Loads are sized as a campaign's
(:func:`gnn.serving.plan_loads`): each closed loop serves at least ``max(--min-requests,
--requests-per-slot × C)`` requests, more where the serving prediction expects its steady state
to last less than ``--min-window-s``. Prints a table and appends one JSON line per load to
``serving.jsonl`` under ``--out`` as it goes (a device call cut short keeps what it measured).
Within ``--time-limit`` seconds from its start it begins only what a campaign's time limit would
(:class:`orchestrator.time_limit.TimeLimit`): an engine whose start and first load fit, a load
whose predicted run fits with a margin.
A campaign with a ``serving`` section measures the same loads through Ray, resumably.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from featurize import Precision, resolve_architecture
from featurize.gpus import GpuCatalog
from featurize.point import GpuSetup
from gnn.predict import default_predictor
from gnn.serving import plan_loads
from orchestrator.config import Serving
from orchestrator.time_limit import TimeLimit
from workers.devices import RealClock, detect_gpu_names
from workers.engines import EngineConfig
from workers.engines.vllm_engine import MAX_NUM_SEQS_VARIABLE, VllmEngine
from workers.pool import ServingTask
from workers.protocol_settings import ProtocolSettings
from workers.serving import ServingLoad, measure_load, record_row, serve


def _serving(args: argparse.Namespace) -> Serving:
    """The sweep's loads as a campaign's ``serving`` section names them (checked the same way)."""
    return Serving(
        traces=args.traces.split(","),
        concurrency=args.concurrency,
        rates=args.rate,
        rate_fractions=args.rate_fraction,
        requests_per_slot=args.requests_per_slot,
        min_requests=args.min_requests,
        min_window_s=args.min_window_s,
        max_requests=args.max_requests,
        open_requests=args.open_requests,
        open_window_s=args.open_window_s,
        max_context=args.max_context,
        max_num_seqs=args.max_num_seqs or None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="llama3.1-8b")
    parser.add_argument("--traces", default="conv,code")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--rate", default="", help="open-loop arrival rates per second")
    parser.add_argument("--requests-per-slot", type=int, default=4)
    parser.add_argument("--min-requests", type=int, default=12)
    parser.add_argument(
        "--rate-fraction",
        default="",
        help="open-loop arrival rates as fractions of the predicted throughput at the largest C",
    )
    parser.add_argument(
        "--open-requests", type=int, default=40, help="least requests per open loop"
    )
    parser.add_argument(
        "--open-window-s", type=float, default=12.0, help="seconds of arrivals per open loop"
    )
    parser.add_argument(
        "--max-num-seqs", type=int, default=0, help="scheduler limit (default: largest C, ≥ 32)"
    )
    parser.add_argument("--min-window-s", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--max-context", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=480.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    args.rate = [float(r) for r in args.rate.split(",") if r]
    args.rate_fraction = [float(f) for f in args.rate_fraction.split(",") if f]
    limit = TimeLimit(args.time_limit, ProtocolSettings())
    names = detect_gpu_names()
    if not names:
        raise SystemExit("no NVIDIA GPU here: this script meters GPU energy")
    # The scheduler admits up to the largest concurrency, as a deployment sized for it would.
    serving = _serving(args)
    args.max_num_seqs = serving.scheduler_seqs()
    os.environ[MAX_NUM_SEQS_VARIABLE] = str(args.max_num_seqs)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "serving.jsonl"
    gpu = GpuCatalog.default().get(names[0])
    print(f"{'shape':14s} {'trace':5s} {'load':>7s} {'n':>4s} {'J/req':>8s} {'mJ/tok':>7s}"
          f" {'req/s':>6s} {'run':>5s} {'TTFT50':>7s} {'TPOT50':>7s}", flush=True)  # fmt: skip
    for shape in args.shapes.split(","):
        config = EngineConfig(resolve_architecture(shape), Precision(), 1, gpu, True)
        setup = GpuSetup(gpu, 1)
        loads = [
            (trace, load)
            for trace in serving.traces
            for load in plan_loads(
                default_predictor(), config.architecture, setup, serving.plan(trace, args.seed)
            )
        ]
        # A campaign's rule: start the engine only if its start and first load fit the limit.
        if not loads or not limit(ServingTask(0, config, loads[0][1], args.max_num_seqs), True):
            print(f"time limit: {shape} not started", flush=True)
            continue
        engine = VllmEngine(config)
        start = time.monotonic()
        engine.load()
        load_s = time.monotonic() - start
        if engine.counter_source() is None:
            raise SystemExit("the engine has no energy counters")
        serve(engine.step_engine(), ServingLoad("conv", 8, concurrency=4, seed=99), RealClock())
        for trace, load in loads:
            if not limit(ServingTask(0, config, load, args.max_num_seqs), False):
                print(f"time limit: no time for {shape} {trace} {load.name}", flush=True)
                continue
            record = measure_load(engine, load, args.max_num_seqs)
            row = record_row(record, load, shape=shape, engine_load_s=load_s)
            with log.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            per_request = record.per_request_j or float("nan")
            per_token = 1000 * (record.per_output_token_j or float("nan"))
            ttft = (record.ttft_s or {}).get("p50", 0.0)
            tpot = (record.tpot_s or {}).get("p50", 0.0)
            print(
                f"{shape:14s} {trace:5s} {load.name:>7s} {load.requests:4d} {per_request:8.1f}"
                f" {per_token:7.1f} {record.requests_per_s:6.2f}"
                f" {record.mean_running or 0:5.1f} {ttft:7.3f} {tpot:7.4f}",
                flush=True,
            )
        engine.close()


if __name__ == "__main__":
    main()
