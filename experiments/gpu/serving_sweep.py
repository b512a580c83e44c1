"""Energy per request of vLLM serving at a range of loads, on this machine's first GPU.

    PYTHONPATH=/tmp/site:$PWD python experiments/gpu/serving_sweep.py \
        --shapes llama3.1-8b --traces conv,code --concurrency 1,2,4,8,16,32,64 --out $OUT/serving

For every shape: one engine (the product's :class:`workers.engines.vllm_engine.VllmEngine`, its
scheduler admitting up to the largest concurrency), a warm-up run, then every (trace, load) as a
closed loop at each concurrency C and an open loop at each ``--rate`` (and at each
``--rate-fraction`` of the throughput predicted at the largest C), driven by
:func:`workers.serving.serve` with the GPU's NVML energy counter read between scheduler steps
(every 20 ms at most). Each closed loop serves at least ``max(--min-requests, --requests-per-slot
× C)`` requests, more where the serving prediction expects its steady state to last less than
``--min-window-s``. Prints a table and appends one JSON line per load to ``serving.jsonl``
under ``--out`` as it goes (a device call cut short keeps what it measured); stops starting new
loads after ``--time-limit`` seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featurize import Precision, resolve_architecture
from featurize.gpus import GpuCatalog
from featurize.point import GpuSetup
from gnn.predict import default_predictor
from gnn.serving import predict_serving
from workers.devices import RealClock, detect_gpu_names
from workers.engines import EngineConfig
from workers.engines.vllm_engine import VllmEngine
from workers.serving import ServingLoad, serve, summarise


def _loads(args: argparse.Namespace, trace: str, shape: str, setup: GpuSetup) -> list[ServingLoad]:
    """The sweep's loads of one shape: closed loops sized so that their steady state lasts.

    A closed loop at C serves at least ``--requests-per-slot`` × C requests, and enough for
    ``--min-window-s`` seconds of steady state at the throughput the serving prediction
    (:func:`gnn.serving.predict_serving`) expects of it: short requests at low concurrency
    finish a dozen in under a second, a few dozen NVML counter updates.
    """
    predictor = default_predictor()
    architecture = resolve_architecture(shape)
    closed = []
    for c in args.concurrency:
        least = max(args.min_requests, args.requests_per_slot * c)
        probe = ServingLoad(
            trace, least, concurrency=c, max_context=args.max_context, seed=args.seed
        )
        expected = predict_serving(
            predictor, architecture, setup, probe, max_num_seqs=args.max_num_seqs
        ).result.requests_per_s
        # The window is the run less its ramp-up and drain: about C requests' worth of each.
        wanted = math.ceil(args.min_window_s * expected) + c
        closed.append(
            ServingLoad(
                trace,
                min(max(least, wanted), args.max_requests),
                concurrency=c,
                max_context=args.max_context,
                seed=args.seed,
            )
        )
    # Open loops at a fraction of what the deployment serves at its largest concurrency, so that
    # one fraction means the same utilisation for a small and a large shape.
    rates = list(args.rate)
    if args.rate_fraction:
        capacity = predict_serving(
            predictor,
            architecture,
            setup,
            max(closed, key=lambda c: c.concurrency or 0),
            max_num_seqs=args.max_num_seqs,
        ).result.requests_per_s
        rates += [round(f * capacity, 2) for f in args.rate_fraction]
    opened = [
        ServingLoad(
            trace,
            max(args.open_requests, math.ceil(r * args.open_window_s)),
            rate_per_s=r,
            max_context=args.max_context,
            seed=args.seed,
        )
        for r in rates
    ]
    return closed + opened


def _joules_of(counters: Any) -> Callable[[], float]:
    def joules() -> float:
        return float(sum(counters.energy_mj())) / 1000.0

    return joules


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
    began = time.monotonic()
    names = detect_gpu_names()
    if not names:
        raise SystemExit("no NVIDIA GPU here: this script meters GPU energy")
    # The scheduler admits up to the largest concurrency, as a deployment sized for it would.
    args.max_num_seqs = args.max_num_seqs or max([*args.concurrency, 32])
    os.environ["LLMCO2_MAX_NUM_SEQS"] = str(args.max_num_seqs)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "serving.jsonl"
    gpu = GpuCatalog.default().get(names[0])
    print(f"{'shape':14s} {'trace':5s} {'load':>7s} {'n':>4s} {'J/req':>8s} {'mJ/tok':>7s}"
          f" {'req/s':>6s} {'run':>5s} {'TTFT50':>7s} {'TPOT50':>7s}", flush=True)  # fmt: skip
    for shape in args.shapes.split(","):
        engine = VllmEngine(EngineConfig(resolve_architecture(shape), Precision(), 1, gpu, True))
        start = time.monotonic()
        engine.load()
        load_s = time.monotonic() - start
        counters = engine.counter_source()
        if counters is None:
            raise SystemExit("the engine has no energy counters")

        joules = _joules_of(counters)

        serve(engine.step_engine(), ServingLoad("conv", 8, concurrency=4, seed=99), RealClock())
        for trace in args.traces.split(","):
            for load in _loads(args, trace, shape, GpuSetup(gpu, 1)):
                if time.monotonic() - began > args.time_limit:
                    print("time limit: no further loads", flush=True)
                    engine.close()
                    return
                requests, energy = serve(engine.step_engine(), load, RealClock(), joules)
                result = summarise(requests, energy, load.concurrency)
                row: dict[str, Any] = {
                    "shape": shape,
                    "trace": trace,
                    "concurrency": load.concurrency,
                    "rate_per_s": load.rate_per_s,
                    "requests": load.requests,
                    "seed": load.seed,
                    "max_context": load.max_context,
                    "max_num_seqs": args.max_num_seqs,
                    "result": result.to_dict(),
                    "timeline": [
                        [
                            r.prompt_tokens,
                            r.generated_tokens,
                            r.arrival_s,
                            r.admitted_s,
                            r.first_token_s,
                            r.finish_s,
                        ]
                        for r in requests
                    ],
                    "engine_load_s": load_s,
                    "engine": engine.version,
                    "engine_settings": engine.settings,
                    "gpu_names": counters.names,
                    "gpu_uuids": counters.uuids,
                    "driver": counters.driver_version,
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                with log.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                name = f"C={load.concurrency}" if load.closed else f"λ={load.rate_per_s:g}"
                per_request = result.per_request_j or float("nan")
                per_token = 1000 * (result.per_output_token_j or float("nan"))
                print(
                    f"{shape:14s} {trace:5s} {name:>7s} {load.requests:4d} {per_request:8.1f}"
                    f" {per_token:7.1f} {result.requests_per_s:6.2f}"
                    f" {result.mean_running or 0:5.1f} {result.ttft_s.get('p50', 0):7.3f}"
                    f" {result.tpot_s.get('p50', 0):7.4f}",
                    flush=True,
                )
        engine.close()


if __name__ == "__main__":
    main()
