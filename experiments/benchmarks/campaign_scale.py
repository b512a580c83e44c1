"""Benchmark: the paper-scale simulated campaign (A = 50,000, ≥ 16 actors) end to end, by stage.

Runs (or continues) ``experiments/configs/paper-scale.yaml`` with the campaign driver on a local
Ray, ``--workers`` simulated actors, on SQLite, and prints where the time went — sampling,
measuring (dispatch to the actors and waiting for them), storing, featurising (building the
graphs for training), training, testing, selecting — with the rounds' MAPE, then writes JSON.

    python experiments/benchmarks/campaign_scale.py [--config experiments/configs/paper-scale.yaml]
        [--workers 16] [--initial N] [--db sqlite:///scale.db] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from orchestrator.campaign import CampaignDriver, RoundReport
from orchestrator.config import load_config, parse_config
from storage import CampaignStore
from workers.cluster import connect, disconnect

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=ROOT / "experiments/configs/paper-scale.yaml"
    )
    parser.add_argument("--workers", type=int, default=16, help="simulated actors")
    parser.add_argument("--initial", type=int, default=None, help="override A (smoke runs)")
    parser.add_argument("--db", default=None, help="database URL (default: a fresh temp SQLite)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "experiments/benchmarks/results/campaign_scale.json"
    )
    args = parser.parse_args()

    config = load_config(args.config)
    if args.initial is not None:
        data = config.model_dump(mode="json")
        data["sampling"]["initial"] = args.initial
        config = parse_config(data, "--initial")
    db = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='llmco2-scale-')}/campaign.db"
    store = CampaignStore(db)
    from featurize import GpuCatalog

    catalog = GpuCatalog.default()
    gpus = [catalog.get(name) for name in config.priors.gpus.types]
    rounds: list[RoundReport] = []
    driver = CampaignDriver(config, store, gpus=gpus, workers=args.workers)

    def on_round(report: RoundReport) -> None:
        rounds.append(report)
        mape = f"{report.scores.mape:.2f} %" if report.scores is not None else "-"
        print(
            f"round {report.round_index}: {report.measured} measured, train "
            f"{report.train_points} / test {report.test_points}, MAPE {mape}, next "
            f"{report.selected} ({time.perf_counter() - start:.0f} s so far)",
            flush=True,
        )
        so_far = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(driver.stage_seconds.items()))
        print(f"  stages so far: {so_far}", flush=True)

    # Ray's CPUs are logical: enough for every simulated actor (0.5 each) and the training task.
    connect(None, num_cpus=max(os.cpu_count() or 2, args.workers // 2 + 1))
    start = time.perf_counter()
    try:
        driver.on_round = on_round
        outcome = driver.run()
    finally:
        disconnect()
    wall = time.perf_counter() - start
    stages = dict(driver.stage_seconds)
    print(
        f"\n{config.name}: A = {config.sampling.initial}, {args.workers} actors, "
        f"{outcome.complete_points} points measured in {wall:.0f} s; {outcome.stop_reason}"
    )
    print(f"{'stage':<14}{'seconds':>10}{'share':>8}")
    for name, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"{name:<14}{seconds:>10.1f}{100 * seconds / wall:>7.1f}%")
    other = wall - sum(stages.values())
    print(f"{'other':<14}{other:>10.1f}{100 * other / wall:>7.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "campaign_scale", "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "config": str(args.config), "initial": config.sampling.initial, "workers": args.workers,
        "wall_s": wall, "complete_points": outcome.complete_points,
        "stop_reason": outcome.stop_reason, "stage_seconds": stages,
        "rounds": [{"round": r.round_index, "measured": r.measured, "train": r.train_points,
                    "test": r.test_points, "mape": r.scores.mape if r.scores else None,
                    "selected": r.selected} for r in rounds],
    }, indent=1))  # fmt: skip
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
