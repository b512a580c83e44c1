"""Benchmark: how well an ensemble's disagreement points at the model's true error.

The disagreement strategies choose the candidates on which the members' log energies spread
most, hoping those are where the model errs. This measures that hope on the simulated twin:
train ensembles of 2, 4 and 8 GNNs (as the campaign driver trains them) on N random prior points
labelled as the strategy benchmark's twin measures them (1 % repeat noise, the twin's
latencies), draw a pool of unmeasured prior points, and compare each candidate's spread with
the ensemble mean's true relative error (the twin's exact energies). The table gives the rank
correlation (Spearman) and the mean true error of the K candidates a disagreement round would
take, against K drawn at random (the pool's MAPE) and
the K worst (what an oracle would take).

    python experiments/benchmarks/spread_vs_error.py \
        --out experiments/benchmarks/results/spread_vs_error.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategy_benchmark import GPUS, campaign_config, exact_energy, twin_labels

from gnn.training import ensemble_energies
from orchestrator.campaign import train_ensemble
from orchestrator.config import ROUND_PREDICTORS, Training
from orchestrator.sampling import PointSampler
from orchestrator.strategies import disagreement_order


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of ``a`` and ``b`` (no ties expected: continuous values)."""
    ranks_a = np.argsort(np.argsort(a)).astype(float)
    ranks_b = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def measure_one(seed: int, args: argparse.Namespace, sampler: PointSampler) -> list[dict[str, Any]]:
    """One seed: the rows of the table for every ensemble size."""
    points = sampler.sample(args.points, np.random.default_rng([seed, 0]))
    labels = twin_labels(points, args.noise, np.random.default_rng(seed))
    rows = list(zip(points, labels, strict=True))
    sizes = [int(k) for k in args.members.split(",")]
    seeds = [seed * 100 + k for k in range(max(sizes))]
    members = train_ensemble(rows, args.epochs, args.patience, seeds, args.predictor)
    pool = [p for p in sampler.sample(args.pool, np.random.default_rng([seed, 5]))
            if p not in set(points)]  # fmt: skip
    truth = exact_energy(pool)
    predictions = ensemble_energies(members, pool)
    result = []
    for size in sizes:
        mine = predictions[:size]
        error = np.abs(mine.mean(axis=0) - truth) / truth
        spread = np.log(mine).std(axis=0)
        taken = disagreement_order(mine)[: args.take]
        result.append({
            "seed": seed, "members": size, "pool_mape": 100 * float(error.mean()),
            "spearman": spearman(spread, error),
            "taken_error": 100 * float(error[taken].mean()),
            "oracle_error": 100 * float(np.sort(error)[-args.take:].mean()),
        })  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--points", type=int, default=120, help="N, measured random points")
    parser.add_argument("--members", default="2,4,8", help="ensemble sizes")
    parser.add_argument("--pool", type=int, default=400, help="unmeasured candidates")
    parser.add_argument("--take", type=int, default=30, help="K, candidates a round takes")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument(
        "--predictor",
        choices=ROUND_PREDICTORS,
        default=Training().predictor,
        help="the round's model, as the campaign config's training.predictor",
    )
    parser.add_argument("--noise", type=float, default=0.01, help="repeat noise (log σ)")
    parser.add_argument("--out", type=Path, default=Path("spread_vs_error.json"))
    args = parser.parse_args()
    # The strategy benchmark's priors and evaluation settings (its campaign, any strategy).
    bench = argparse.Namespace(
        target=5.0, initial=args.points, neighbours=10, per_round=30, budget=args.points,
        epochs=args.epochs, patience=args.patience, points_per_engine=4, resident_engines=0,
        predictor=args.predictor,
    )  # fmt: skip
    sampler = PointSampler(campaign_config(bench, "random"), GPUS)
    start = time.perf_counter()
    rows = [row for seed in range(args.seeds) for row in measure_one(seed, args, sampler)]
    print(f"\nensemble spread vs true error: {args.points} measured points, {args.pool} candidates,"
          f" the {args.take} a round takes")  # fmt: skip
    print(f"{'seed':>4}{'members':>9}{'MAPE %':>9}{'Spearman':>10}{'taken err %':>13}"
          f"{'oracle err %':>14}")  # fmt: skip
    for r in rows:
        print(f"{r['seed']:>4}{r['members']:>9}{r['pool_mape']:>9.2f}{r['spearman']:>10.2f}"
              f"{r['taken_error']:>13.1f}{r['oracle_error']:>14.1f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "spread_vs_error", "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "seconds": time.perf_counter() - start,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows,
    }, indent=1))  # fmt: skip
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
