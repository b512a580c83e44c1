"""Pool replay: the sampling strategies on the real dataset, choosing only among measured points.

The real measurements stand in for the GPU: a strategy "measures" a point by reading its label
from the dataset. A fixed share of the dataset (``--evaluation``, 25 %) is held out as the
yardstick and never chosen; the rest is the pool. Each run starts from the same A random pool
points per seed and adds ``--per-round`` points a round, as Algorithm 1 does:

- ``random``: uniform draws from the unchosen pool;
- ``focused`` (the paper): the run's own test share (20 % of what it measured) scored by the
  current model, the worst ``--high-error`` fraction, and for each the B unchosen pool points
  nearest to it on the same engine configuration (architecture, precision, GPU setup) — the pool's
  stand-in for "within ±C", which a fixed dataset rarely has;
- ``disagreement`` (ours): the unchosen pool points on which the round's ensemble of two
  disagrees most (:func:`orchestrator.strategies.disagreement_order`);
- ``diverse`` (ours): a third of the round uniform from the unchosen pool, the rest by
  disagreement discounted per point of the same engine configuration already chosen
  (:func:`orchestrator.strategies.diverse_order`).

- ``cost-aware`` (ours): whole engine configurations of the unchosen pool, each with its
  ``--points-per-engine`` most disputed points, in the order of the disagreement they buy per
  GPU-second (:func:`orchestrator.strategies.whole_engines`; an engine start by the start
  model, each point's recorded measurement time), from the same A points as the others.

- ``STRATEGY+fillN``: that strategy choosing 1/N of a round's points, each of their engine
  configurations filled up to N with unchosen pool points of the same configuration (the
  campaigns' ``sampling.points_per_engine``).

Every run also counts the GPU-seconds its choices would have cost a campaign: each round starts
one engine per configuration among its new points (seconds from the twin's start model, fitted on
the real H200 campaigns' recorded starts: :func:`workers.engines.simulated.engine_start_seconds`)
and each point holds its GPUs for the time its measurement took (``finished_at − started_at``,
recorded), both times the GPUs of the setup.

After every round the ensemble (trained as the campaign driver trains it,
:func:`orchestrator.campaign.train_members`) is scored on the held-out points. The table gives,
per strategy, the median over seeds of the measurements each needed to reach each MAPE level
(a run that never reached it counts as the whole pool or ``--budget``, marked ``>``).

    python experiments/evaluation/pool_replay.py experiments/data/real-v1 experiments/data/gpu-4 \
        experiments/data/real-h200 --out experiments/reports/pool-replay
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from featurize import InferencePoint
from gnn.metrics import Scores, first_reaching, learning_curve_at
from gnn.training import ensemble_energies
from orchestrator.campaign import train_ensemble
from orchestrator.config import ROUND_PREDICTORS, HighErrorRule, Training
from orchestrator.strategies import (
    DEFAULT_POINTS_PER_ENGINE,
    HEDGE_FRACTION,
    disagreement_order,
    diverse_order,
    high_error_indices,
    log_spread,
    whole_engines,
)
from orchestrator.strategies import STRATEGIES as CAMPAIGN_STRATEGIES
from storage.export import read_exported_points
from workers.engines.simulated import engine_start_seconds

#: The campaign's strategies (:data:`orchestrator.strategies.STRATEGIES`), replayed on the pool.
STRATEGIES = tuple(CAMPAIGN_STRATEGIES)
FILL = "+fill"
LEVELS = (30.0, 20.0, 15.0, 10.0, 7.5, 5.0)

Row = tuple[InferencePoint, dict[str, Any]]


def engine_key(rows: list[Row], index: int) -> str:
    """The engine configuration row ``index`` was measured in (the dataset's ``config_key``)."""
    return str(rows[index][1]["config_key"])


def split_fill(name: str) -> tuple[str, int | None]:
    """A strategy name's base strategy and its engine fill (``random+fill4`` → random, 4)."""
    base, marker, count = name.partition(FILL)
    if marker and not count.isdigit():
        raise SystemExit(f"strategy {name!r}: {FILL} takes a whole number of points")
    return base, int(count) if marker else None


def point_seconds(row: dict[str, Any]) -> float:
    """GPU time the measurement of ``row`` held (its recorded start to end; 0 if not recorded)."""
    started, finished = row.get("started_at"), row.get("finished_at")
    if started is None or finished is None:
        return 0.0
    return max(0.0, float((finished - started).total_seconds()))


def round_gpu_seconds(rows: list[Row], new: list[int]) -> float:
    """GPU-seconds of measuring ``new`` in one round: an engine start per configuration, then
    each point's recorded measurement time, times the setup's GPUs."""
    starts: dict[str, InferencePoint] = {}
    for i in new:
        starts.setdefault(engine_key(rows, i), rows[i][0])
    loading = sum(engine_start_seconds(p) * p.setup.count for p in starts.values())
    return loading + sum(point_seconds(rows[i][1]) * rows[i][0].setup.count for i in new)


def fill(
    rows: list[Row], picked: list[int], free: list[int], per_engine: int, room: int,
    rng: np.random.Generator,
) -> list[int]:  # fmt: skip
    """``picked`` and, per engine configuration of it, unchosen pool points up to ``per_engine``."""
    result = list(picked)
    taken = set(picked)
    for key in dict.fromkeys(engine_key(rows, i) for i in picked):
        have = sum(engine_key(rows, i) == key for i in result)
        same = [i for i in free if i not in taken and engine_key(rows, i) == key]
        wanted = min(per_engine - have, len(same), room - len(result))
        if wanted <= 0:
            continue
        extra = [same[j] for j in rng.choice(len(same), size=wanted, replace=False)]
        result += extra
        taken.update(extra)
    return result


def request_distance(a: InferencePoint, b: InferencePoint) -> float:
    """How far two requests lie apart (log prompt and output lengths, batch)."""
    ra, rb = a.request, b.request
    return float(
        abs(np.log(ra.prompt_tokens) - np.log(rb.prompt_tokens))
        + abs(np.log(ra.generated_tokens) - np.log(rb.generated_tokens))
        + abs(ra.batch_size - rb.batch_size) / 4
    )


def train(rows: list[Row], args: argparse.Namespace, seed: int) -> list[Any]:
    """The round's ensemble of two."""
    seeds = [seed * 100 + k for k in range(2)]
    return train_ensemble(rows, args.epochs, args.patience, seeds, args.predictor)


def choose(
    strategy: str,
    members: list[Any],
    rows: list[Row],
    chosen: list[int],
    is_test: list[bool],
    free: list[int],
    count: int,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> list[int]:
    """Indices (into ``rows``) of the next ``count`` pool points to measure."""
    count = min(count, len(free))
    if strategy == "cost-aware":
        return cost_aware(members, rows, chosen, free, count, args.points_per_engine)
    if strategy == "random":
        return [free[i] for i in rng.choice(len(free), size=count, replace=False)]
    if strategy == "disagreement":
        order = disagreement_order(ensemble_energies(members, [rows[i][0] for i in free]))
        return [free[i] for i in order[:count]]
    if strategy == "diverse":
        hedge = [free[i] for i in rng.choice(len(free), size=round(HEDGE_FRACTION * count),
                                             replace=False)]  # fmt: skip
        hedged = set(hedge)
        rest = [i for i in free if i not in hedged]
        already = Counter(engine_key(rows, i) for i in [*chosen, *hedge])
        order = diverse_order(
            ensemble_energies(members, [rows[i][0] for i in rest]),
            [engine_key(rows, i) for i in rest], already, count=count - len(hedge),
        )  # fmt: skip
        return hedge + [rest[i] for i in order]
    test = [i for i, t in zip(chosen, is_test, strict=True) if t]
    truth = np.array([rows[i][1]["energy_j"] for i in test])
    predicted = ensemble_energies(members, [rows[i][0] for i in test]).mean(axis=0)
    errors = np.abs(predicted - truth) / truth
    worst = high_error_indices(errors, HighErrorRule(rule="top_fraction", value=args.high_error))
    # Once the worst points' configurations have no unchosen pool point left, the next-worst
    # test points take their place (a fixed pool runs out of neighbours; a GPU never does).
    rest = [i for i in np.argsort(-errors, kind="stable") if i not in set(worst.tolist())]
    picked: list[int] = []
    left = set(free)
    for rank, index in enumerate([*worst.tolist(), *rest]):
        if rank >= len(worst) and picked:
            break
        parent, parent_key = rows[test[index]][0], engine_key(rows, test[index])
        near = sorted(
            (i for i in left if engine_key(rows, i) == parent_key),
            key=lambda i: request_distance(rows[i][0], parent),
        )[: args.neighbours]
        for i in near:
            if len(picked) < count:
                picked.append(i)
                left.discard(i)
    return picked


def cost_aware(
    members: list[Any], rows: list[Row], chosen: list[int], free: list[int], count: int,
    per_engine: int,
) -> list[int]:  # fmt: skip
    """``cost-aware`` on the pool: whole engine configurations by disagreement per GPU-second."""
    groups: dict[str, list[int]] = {}
    for i in free:
        groups.setdefault(engine_key(rows, i), []).append(i)
    spread = log_spread(ensemble_energies(members, [rows[i][0] for i in free]))
    by_index = dict(zip(free, spread, strict=True))
    members_of = list(groups.values())
    already = Counter(engine_key(rows, i) for i in chosen)
    picks = whole_engines(
        [np.array([by_index[i] for i in m]) for m in members_of],
        np.array([engine_start_seconds(rows[m[0]][0]) * rows[m[0]][0].setup.count
                  for m in members_of]),
        [np.array([point_seconds(rows[i][1]) * rows[i][0].setup.count for i in m])
         for m in members_of],
        per_engine, [already[engine_key(rows, m[0])] for m in members_of], count, count,
    )  # fmt: skip
    return [members_of[k][p] for k, positions in picks for p in positions]


def run_one(
    strategy: str, seed: int, rows: list[Row], pool: list[int], held_out: list[int],
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """One strategy on one seed until the pool is spent or it stops choosing."""
    name = strategy
    strategy, per_engine = split_fill(name)
    share = per_engine or 1
    rng0 = np.random.default_rng([seed, 0])
    first = max(1, args.initial // share)
    chosen = [pool[i] for i in rng0.choice(len(pool), size=first, replace=False)]
    if per_engine is not None:
        chosen = fill(rows, chosen, pool, per_engine, args.initial,
                      np.random.default_rng([seed, 0, 0xF111]))  # fmt: skip
    is_test = list(rng0.random(len(chosen)) < 0.2)
    gpu_seconds = round_gpu_seconds(rows, chosen)
    gpu_curve: list[float] = []
    held_points = [rows[i][0] for i in held_out]
    held_truth = np.array([rows[i][1]["energy_j"] for i in held_out])
    curve: list[tuple[int, float]] = []
    start = time.perf_counter()
    round_index = 0
    while True:
        members = train(
            [rows[i] for i, t in zip(chosen, is_test, strict=True) if not t], args,
            seed * 1000 + round_index,
        )  # fmt: skip
        mape = Scores.of(ensemble_energies(members, held_points).mean(axis=0), held_truth).mape
        curve.append((len(chosen), mape))
        gpu_curve.append(gpu_seconds)
        print(f"  {name:<12} seed {seed} round {round_index}: {len(chosen)} measured, "
              f"{gpu_seconds:,.0f} GPU-s, held-out MAPE {mape:.2f} %", flush=True)  # fmt: skip
        taken = set(chosen)
        free = [i for i in pool if i not in taken]
        room = min(args.per_round, args.budget - len(chosen))
        if not free or room <= 0 or (args.stop_at is not None and mape <= args.stop_at):
            break
        rng = np.random.default_rng([seed, round_index + 1])
        new = choose(strategy, members, rows, chosen, is_test, free, max(1, room // share),
                     args, rng)  # fmt: skip
        if per_engine is not None:
            new = fill(rows, new, free, per_engine, room,
                       np.random.default_rng([seed, round_index + 1, 0xF111]))  # fmt: skip
        if not new:
            break
        gpu_seconds += round_gpu_seconds(rows, new)
        chosen += new
        is_test += list(rng.random(len(new)) < 0.2)
        round_index += 1
    return {"strategy": name, "seed": seed, "curve": curve, "chosen": chosen,
            "gpu_curve": gpu_curve, "seconds": time.perf_counter() - start}  # fmt: skip


def gpu_reaching(run: dict[str, Any], level: float) -> float | None:
    """GPU-seconds spent when the run's held-out MAPE first reached ``level`` (None: never)."""
    for (_, mape), spent in zip(run["curve"], run.get("gpu_curve", []), strict=False):
        if mape <= level:
            return float(spent)
    return None


def _finite(value: float) -> float | None:
    return None if value == float("inf") else value


def gpu_table(summary: dict[str, Any]) -> str:
    """GPU-hours to each MAPE level as a Markdown table (median over seeds; reached/runs)."""

    def hours(cell: dict[str, Any], runs: int) -> str:
        spent = cell["median_gpu_s"]
        return "never" if spent is None else f"{spent / 3600:.2f} h"

    return _level_table(summary, hours)


def summarise(runs: list[dict[str, Any]], pool_size: int) -> dict[str, Any]:
    """Median measurements to each MAPE level per strategy (never reached → ``pool_size``)."""
    summary: dict[str, Any] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        mine = [r for r in runs if r["strategy"] == strategy]
        row: dict[str, Any] = {}
        for level in LEVELS:
            counts = [first_reaching(r["curve"], level) for r in mine]
            gpu = [gpu_reaching(r, level) for r in mine]
            row[str(level)] = {
                "median": statistics.median(c if c is not None else pool_size for c in counts),
                "reached": sum(c is not None for c in counts),
                "per_seed": counts,
                # None: the median run never reached the level.
                "median_gpu_s": _finite(
                    statistics.median(g if g is not None else float("inf") for g in gpu)
                ),
                "gpu_s_per_seed": gpu,
            }
        summary[strategy] = {
            "to_level": row,
            "final_mape_median": statistics.median(r["curve"][-1][1] for r in mine),
            "runs": len(mine),
        }
    return summary


def _level_table(summary: dict[str, Any], shown: Callable[[dict[str, Any], int], str]) -> str:
    """A Markdown table: a row per strategy, a column per MAPE level, ``shown(cell, runs)`` and
    reached/runs in each cell."""
    lines = ["| strategy | " + " | ".join(f"≤ {level:g} %" for level in LEVELS) + " |",
             "| --- |" + " --- |" * len(LEVELS)]  # fmt: skip
    for strategy, row in summary.items():
        cells = [row["to_level"][str(level)] for level in LEVELS]
        texts = [f"{shown(cell, row['runs'])} ({cell['reached']}/{row['runs']})" for cell in cells]
        lines.append(f"| {strategy} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def table(summary: dict[str, Any], pool_size: int) -> str:
    """The summary as a Markdown table."""

    def count(cell: dict[str, Any], runs: int) -> str:
        mark = ">" if cell["reached"] * 2 <= runs and cell["median"] >= pool_size else ""
        return f"{mark}{cell['median']:g}"

    return _level_table(summary, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--evaluation", type=float, default=0.25, help="held-out share")
    parser.add_argument("--initial", type=int, default=30, help="A")
    parser.add_argument("--per-round", type=int, default=15)
    parser.add_argument("--neighbours", type=int, default=5, help="B")
    parser.add_argument("--high-error", type=float, default=0.3, help="worst test share")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument(
        "--predictor",
        choices=ROUND_PREDICTORS,
        default=Training().predictor,
        help="the round's model, as the campaign config's training.predictor",
    )
    parser.add_argument("--points-per-engine", type=int, default=DEFAULT_POINTS_PER_ENGINE,
                        help="points per engine start of cost-aware")  # fmt: skip
    parser.add_argument("--stop-at", type=float, default=None, help="stop a run at this MAPE")
    parser.add_argument("--budget", type=int, default=10**9, help="most measurements per run")
    parser.add_argument("--out", type=Path, default=Path("experiments/reports/pool-replay"))
    args = parser.parse_args()

    unknown = sorted({split_fill(s)[0] for s in args.strategies.split(",")} - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    rows = [(p, r) for p, r in read_exported_points(args.datasets)
            if r["prefill_energy_j"] is not None and r["energy_j"]]  # fmt: skip
    order = np.random.default_rng(20261201).permutation(len(rows))
    held = round(args.evaluation * len(rows))
    held_out, pool = sorted(order[:held].tolist()), sorted(order[held:].tolist())
    print(f"{len(rows)} real points: {len(pool)} in the pool, {len(held_out)} held out")
    runs = [
        run_one(strategy, seed, rows, pool, held_out, args)
        for seed in range(args.seeds)
        for strategy in args.strategies.split(",")
    ]
    write_outputs(args, len(rows), pool, held_out, runs,
                  "python " + " ".join(shlex.quote(a) for a in sys.argv))  # fmt: skip


def equal_count_table(runs: list[dict[str, Any]], counts: list[int]) -> str:
    """Median held-out MAPE at equal measurement counts (the "+ focused sampling" ablation)."""
    lines = ["| strategy | " + " | ".join(str(c) for c in counts) + " |",
             "| --- |" + " --- |" * len(counts)]  # fmt: skip
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        mine = [r for r in runs if r["strategy"] == strategy]
        cells = []
        for count in counts:
            values = [v for r in mine if (v := learning_curve_at(r["curve"], count)) is not None]
            cells.append(f"{statistics.median(values):.1f}" if values else "-")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(
    args: argparse.Namespace, points: int, pool: list[int], held_out: list[int],
    runs: list[dict[str, Any]], command: str,
) -> None:  # fmt: skip
    """Print the tables; write results.json and report.md under ``args.out``."""
    ceiling = min(len(pool), args.budget)
    summary = summarise(runs, ceiling)
    text = table(summary, ceiling)
    counts = list(range(args.initial, ceiling + 1, args.per_round))
    equal = equal_count_table(runs, counts)
    gpu = gpu_table(summary)
    print("\nmeasurements to a held-out MAPE level (median over seeds; reached/runs)\n" + text)
    print("\nGPU-hours to a held-out MAPE level (median over seeds; reached/runs)\n" + gpu)
    print("\nheld-out MAPE % at equal measurements (median over seeds)\n" + equal)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings["datasets"] = [str(d) for d in args.datasets]
    (args.out / "results.json").write_text(json.dumps({
        "experiment": "pool_replay", "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "points": points, "pool": len(pool), "held_out": len(held_out),
        "held_out_rows": held_out, "command": command,
        "settings": settings, "summary": summary, "runs": runs,
    }, indent=1))  # fmt: skip
    (args.out / "report.md").write_text(
        "# Pool replay on the real data\n\n"
        f"{points} real points ({', '.join(str(d) for d in args.datasets)}): "
        f"{len(pool)} in the pool, {len(held_out)} held out as the yardstick. A = {args.initial}, "
        f"{args.per_round} points a round, ensemble of two GNNs ({args.epochs} epochs max, "
        f"patience {args.patience}), {args.seeds} seeds.\n\n"
        "Measurements each strategy needed before the held-out MAPE reached each level "
        "(median over seeds; reached/runs; a run that never reached a level counts as the "
        f"whole pool or the budget, {ceiling}):\n\n{text}\n\n"
        "Held-out MAPE % at equal measurement counts (median over seeds; a run that stopped "
        f"earlier keeps its last model):\n\n{equal}\n\n"
        "GPU-hours each strategy's choices would have cost a campaign before the held-out MAPE "
        "reached each level (an engine start per configuration and round by the start model "
        "fitted on the real starts, each point's recorded measurement time; median over seeds, "
        f"reached/runs):\n\n{gpu}\n\nMade by:\n\n    {command}\n"
    )
    print(f"written: {args.out}/report.md")


if __name__ == "__main__":
    main()
