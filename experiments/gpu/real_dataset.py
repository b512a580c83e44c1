"""GPU job: measure real points with vLLM through the project's own workers and store.

Runs on a machine with NVIDIA GPUs (the lent GPU, with the bundle of ``../shared/gpu``):
samples requests from the shipped Azure prior for each model, adds them to a campaign in a SQLite
database (idempotent: a rerun continues where the last stopped), measures the pending points of
each engine configuration on one Ray actor (vLLM, dummy weights, NVML), records every result,
optionally re-measures a few points on a second engine instance (the instance spread), and stops
dispatching before ``--max-seconds``. Prints a table and writes ``summary.json`` and a copy of
the database under ``--out``.

    PYTHONPATH=/tmp/site:$PWD python experiments/gpu/real_dataset.py --models qwen2-1.5b \
        --points 36 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from featurize import GpuSetup, InferencePoint, Precision, check_fits, resolve_architecture
from featurize.gpus import GpuCatalog
from featurize.priors import RequestPrior
from llmco2.errors import InfeasibleConfigError
from orchestrator.campaign import store_result
from storage import CampaignStore, PointSpec, config_key
from workers.actors import WorkerResult
from workers.cluster import connect, disconnect
from workers.devices import detect_gpu_names
from workers.engines import EngineConfig
from workers.pool import PointTask, measure_tasks
from workers.protocol import ProtocolSettings

SETTINGS = ProtocolSettings(warmups=1, windows=2, min_window_s=2.0, min_requests=2)


def sample_specs(
    model: str,
    count: int,
    gpu_name: str,
    tp: int,
    seed: int,
    max_gen: int,
    engine: str,
    batch_sizes: tuple[int, int] = (1, 2),
) -> list[PointSpec]:
    arch = resolve_architecture(model)
    setup = GpuSetup(GpuCatalog.default().get(gpu_name), tp)
    rng = np.random.default_rng(seed)
    specs: list[PointSpec] = []
    for request in RequestPrior.azure().sample(
        count * 3, rng, mix={"code": 0.5, "conversation": 0.5}, batch_sizes=batch_sizes,
        max_context=4096,
    ):  # fmt: skip
        if request.generated_tokens > max_gen:
            continue
        point = InferencePoint(arch, request, setup, Precision())
        try:
            check_fits(point)
        except InfeasibleConfigError:
            continue
        specs.append(PointSpec(point, engine, reason="initial", strategy="azure-prior"))
        if len(specs) == count:
            break
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", required=True, help="comma-separated MODEL[:TP][@SEED_OFFSET] entries"
    )
    parser.add_argument("--points", type=int, default=36, help="points per model")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-gen", type=int, default=512)
    parser.add_argument("--db", default="sqlite:////tmp/llmco2-real.db")
    parser.add_argument("--campaign", default="real-v1")
    parser.add_argument("--max-seconds", type=float, default=480.0)
    parser.add_argument(
        "--spread",
        type=int,
        default=0,
        help="points of the first model re-measured on a 2nd engine instance, run concurrently",
    )
    parser.add_argument("--batches", default="1,2", help="batch size range MIN,MAX")
    parser.add_argument("--init-db", type=Path, help="SQLite file copied to --db if it is missing")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--engine", default="vllm", help="simulated: a dry run on any machine")
    parser.add_argument("--gpu", default=None, help="GPU type for a simulated dry run")
    args = parser.parse_args()
    started = time.monotonic()

    database = args.db.removeprefix("sqlite:///")
    if args.init_db is not None and not Path(database).exists():
        shutil.copy(args.init_db, database)
    low, high = (int(b) for b in args.batches.split(","))
    batch_sizes = (low, high)
    connect()
    names = detect_gpu_names() or ([args.gpu] if args.gpu else [])
    if not names:
        raise SystemExit("no GPU found (use --engine simulated --gpu NAME for a dry run)")
    gpu = GpuCatalog.default().get(names[0])
    store = CampaignStore(args.db)
    campaign = store.create_campaign(
        args.campaign,
        {"engine": args.engine, "prior": "azure-2023", "protocol": SETTINGS.__dict__, "version": 1},
    )
    summary: dict[str, Any] = {"gpu": names, "models": {}, "spread": []}
    results: list[WorkerResult] = []
    timings: list[dict[str, float]] = []
    owner = f"real-dataset-{int(time.time())}"
    tasks: list[PointTask] = []
    claimed_ids: list[int] = []
    for position, item in enumerate(args.models.split(",")):
        # MODEL[:TP][@K]: K (default: the entry's position) offsets the request seed, so one
        # model's requests can be the same at every TP across separate runs.
        entry, _, seed_text = item.partition("@")
        model, _, tp_text = entry.partition(":")
        tp = int(tp_text or args.tp)
        offset = int(seed_text) if seed_text else position
        specs = sample_specs(
            model, args.points, names[0], tp, args.seed + offset, args.max_gen, args.engine,
            batch_sizes,
        )  # fmt: skip
        store.add_points(campaign.id, specs)
        ckey = config_key(specs[0].point, args.engine)
        claimed = store.claim(campaign.id, owner, len(specs), lease_seconds=3600, config_key=ckey)
        claimed_ids += [p.id for p in claimed]
        config = EngineConfig(resolve_architecture(model), Precision(), tp, gpu, True, args.seed)
        tasks += [PointTask(p.id, config, p.inference_point().request) for p in claimed]
    # The instance spread: the first points of the first configuration again, on a second
    # engine instance running beside the others; negative ids keep its results out of the store.
    first_config = tasks[0].config
    second = EngineConfig(
        first_config.architecture, Precision(), first_config.tp, gpu, True, args.seed + 1000
    )
    again = [t for t in tasks if t.config == first_config][: args.spread]
    spread_tasks = [PointTask(-t.point_id, second, t.request) for t in again]
    spread_results: list[WorkerResult] = []
    # Configurations run concurrently as far as the GPUs allow (TP 1 models side by side).
    done: set[int] = set()
    stream = measure_tasks(
        args.engine, tasks[:1] + spread_tasks + tasks[1:], SETTINGS, num_cpus=1, timings=timings
    )
    for result in stream:
        if result.point_id < 0:
            spread_results.append(result)
            continue
        store_result(store, result)
        results.append(result)
        done.add(result.point_id)
        energy = result.record.energy_j if result.record is not None else None
        print(f"point {result.point_id}: {result.status} {energy} {result.error_message or ''}")
        if time.monotonic() - started > args.max_seconds:
            stream.close()  # stops the actors
            break
    store.release([i for i in claimed_ids if i not in done], owner)
    summary["counts"] = store.status_counts(campaign.id)
    for result in spread_results:
        point_id = -result.point_id
        first = store.get_measurement(point_id)
        if result.record is None or first is None:
            summary.setdefault("spread_failures", []).append(
                {"point_id": point_id, "status": result.status,
                 "kind": result.error_kind, "message": result.error_message}
            )  # fmt: skip
            continue
        request = next(t.request for t in again if t.point_id == point_id)
        summary["spread"].append(
            {
                "point_id": point_id,
                "model": first_config.architecture.name,
                "tp": first_config.tp,
                "request": [request.batch_size, request.prompt_tokens, request.generated_tokens],
                "first_j": first.energy_j,
                "second_j": result.record.energy_j,
                "first_prefill_j": first.prefill_energy_j,
                "second_prefill_j": result.record.prefill_energy_j,
            }
        )
    disconnect()

    complete = [r.record for r in results if r.record is not None]
    cvs = [r.energy_cv for r in complete if r.energy_cv is not None]
    periods = [r.counter_period_s for r in complete if r.counter_period_s]
    held = sum(t["held_s"] for t in timings)
    window = sum(t["window_s"] for t in timings)
    summary.update(
        {
            "measured": len(complete),
            "results": {
                s: sum(r.status == s for r in results)
                for s in ("COMPLETE", "FAILED", "INFEASIBLE")
            },
            "cv_median": statistics.median(cvs) if cvs else None,
            "cv_max": max(cvs) if cvs else None,
            "noisy": sum(r.noisy for r in complete),
            "counter_period_s": statistics.median(periods) if periods else None,
            "held_s": held,
            "window_s": window,
            "duty_cycle": window / held if held else None,
            "actors": timings,
            "engine_version": complete[0].engine_version if complete else None,
            "driver": complete[0].driver_version if complete else None,
            "wall_s": time.monotonic() - started,
            "failures": [
                {"point": r.point_id, "kind": r.error_kind, "message": r.error_message}
                for r in results if r.status != "COMPLETE"
            ],
        }
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    store.close()
    shutil.copy(database, args.out / "real.db")
    print(f"GPU {names}: {summary['results']}, median CV {summary['cv_median']}, "
          f"counter period {summary['counter_period_s']}, duty cycle {summary['duty_cycle']}, "
          f"noisy {summary['noisy']}, spread {summary['spread']}")  # fmt: skip


if __name__ == "__main__":
    main()
