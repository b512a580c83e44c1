"""Pool replay: the sampling strategies on the real dataset, choosing only among measured points.

The real measurements stand in for the GPU: a point is "measured" by reading its label from the
dataset. A fixed share of the dataset (``--evaluation``, 25 %) is held out as the yardstick and
never chosen; the rest is the pool. Each run is the campaign driver's own loop
(:class:`orchestrator.campaign.CampaignDriver`, in process on a SQLite store in a temporary
folder) with the campaign's own strategies, drawing from the pool instead of the priors
(:class:`PoolSampler`): it starts from the same A random pool points per seed and adds
``--per-round`` points a round, as Algorithm 1 does:

- ``random``: uniform draws from the unmeasured pool;
- ``focused`` (the paper): the run's own test share (20 % of what it measured) scored by the
  current model, the worst ``--high-error`` fraction, and for each the B unmeasured pool points
  nearest to it in request on the same engine configuration (architecture, precision, GPU setup)
  — the pool's stand-in for "within ±C", which a fixed dataset rarely has;
- ``disagreement``, ``diverse`` and ``cost-aware`` (ours): as in a campaign
  (:mod:`orchestrator.strategies`), their candidates drawn from the unmeasured pool; cost-aware's
  whole engine configurations hold ``--points-per-engine`` points each, its round 0 too (A
  divided by that, each engine filled);
- ``STRATEGY+fillN``: that strategy choosing 1/N of a round's points, each of their engine
  configurations filled up to N with unmeasured pool points of the same configuration (the
  campaigns' ``sampling.points_per_engine``).

Every run also counts the GPU-seconds its choices would have cost a campaign: each round starts
one engine per configuration among its new points (seconds from the twin's start model, fitted on
the real H200 campaigns' recorded starts: :func:`workers.engines.simulated.engine_start_seconds`)
and each point holds its GPUs for the time its measurement took (``finished_at − started_at``,
recorded), both times the GPUs of the setup.

After every round the ensemble (the driver's, trained in this process as the campaign's
``training`` says: :class:`orchestrator.campaign.LocalTrainer`) is scored on the held-out
points. The table gives, per strategy, the median over seeds of the measurements each needed to
reach each MAPE level (a run that never reached it counts as the whole pool or ``--budget``,
marked ``>``).

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
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featurize import InferencePoint
from gnn.metrics import Scores, first_reaching, learning_curve_at
from gnn.training import ensemble_energies
from llmco2.errors import InvalidRequestError
from orchestrator.campaign import CampaignDriver, LocalTrainer
from orchestrator.config import ROUND_PREDICTORS, CampaignConfig, Training, parse_config
from orchestrator.sampling import EngineKey
from orchestrator.sampling import engine_key as sampling_engine_key
from orchestrator.strategies import DEFAULT_POINTS_PER_ENGINE, experiment_strategies, round_sizes
from orchestrator.strategies import STRATEGIES as CAMPAIGN_STRATEGIES
from storage import CampaignStore, PointStatus
from storage.export import read_exported_points
from storage.records import MEASUREMENT_COLUMNS, MeasurementRecord
from workers.actors import WorkerResult
from workers.engines import EngineConfig
from workers.engines.simulated import engine_start_seconds
from workers.pool import Task, point_tasks

#: The campaign's strategies (:data:`orchestrator.strategies.STRATEGIES`), replayed on the pool.
STRATEGIES = tuple(CAMPAIGN_STRATEGIES)
LEVELS = (30.0, 20.0, 15.0, 10.0, 7.5, 5.0)

Row = tuple[InferencePoint, dict[str, Any]]


def engine_key(rows: list[Row], index: int) -> str:
    """The engine configuration row ``index`` was measured in (the dataset's ``config_key``)."""
    return str(rows[index][1]["config_key"])


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


def request_distance(a: InferencePoint, b: InferencePoint) -> float:
    """How far two requests lie apart (log prompt and output lengths, batch)."""
    ra, rb = a.request, b.request
    return float(
        abs(np.log(ra.prompt_tokens) - np.log(rb.prompt_tokens))
        + abs(np.log(ra.generated_tokens) - np.log(rb.generated_tokens))
        + abs(ra.batch_size - rb.batch_size) / 4
    )


class PoolSampler:
    """The campaign's sampler on a fixed pool: points come only from the measured pool.

    A :class:`~orchestrator.sampling.Sampler` for the campaign driver. ``sample`` draws
    uniformly from the pool points not measured yet; ``same_engine`` (the engine fill) from
    those of the same engine configuration; ``neighbours`` (focused resampling) takes the
    unmeasured pool points of the same engine configuration nearest in request — the pool's
    stand-in for "within ±C", which a fixed dataset rarely has.

    Args:
        config: The replay's campaign.
        points: The pool, distinct points in a fixed order.
        measured: Points measured so far (the measurer adds to it).
    """

    def __init__(
        self,
        config: CampaignConfig,
        points: Sequence[InferencePoint],
        measured: set[InferencePoint],
    ) -> None:
        self.config = config
        self.points = list(points)
        self.measured = measured
        self.by_engine: dict[EngineKey, list[InferencePoint]] = {}
        for point in self.points:
            self.by_engine.setdefault(sampling_engine_key(point), []).append(point)

    def sample(self, count: int, rng: np.random.Generator) -> list[InferencePoint]:
        """Up to ``count`` unmeasured pool points, uniformly."""
        free = [p for p in self.points if p not in self.measured]
        picked = rng.choice(len(free), size=min(count, len(free)), replace=False)
        return [free[i] for i in picked]

    def same_engine(
        self,
        point: InferencePoint,
        count: int,
        rng: np.random.Generator,
        exclude: set[InferencePoint] | frozenset[InferencePoint] = frozenset(),
    ) -> list[InferencePoint]:
        """Up to ``count`` unmeasured pool points of ``point``'s engine, uniformly."""
        same = [
            p for p in self.by_engine.get(sampling_engine_key(point), [])
            if p != point and p not in self.measured and p not in exclude
        ]  # fmt: skip
        picked = rng.choice(len(same), size=min(count, len(same)), replace=False)
        return [same[i] for i in picked]

    def neighbours(
        self, point: InferencePoint, count: int, rng: np.random.Generator
    ) -> list[InferencePoint]:
        """The ``count`` unmeasured pool points of ``point``'s engine nearest in request."""
        del rng  # the nearest, not a draw
        same = [
            p for p in self.by_engine.get(sampling_engine_key(point), [])
            if p != point and p not in self.measured
        ]  # fmt: skip
        return sorted(same, key=lambda p: request_distance(p, point))[:count]

    def reference_point(self) -> InferencePoint | None:
        """A replay has no reference point."""
        return None


class PoolMeasurer:
    """Measures a point by reading its label from the dataset (its first row of that point).

    Each call (a round) costs an engine start per configuration among its points (the twin's
    start model, fitted on the real H200 starts) and each point's recorded measurement time,
    both times the setup's GPUs (:func:`round_gpu_seconds`).
    """

    def __init__(
        self, rows: list[Row], row_of: dict[InferencePoint, int], measured: set[InferencePoint]
    ) -> None:
        self.rows = rows
        self.row_of = row_of
        self.measured = measured
        self.chosen: list[int] = []
        self.gpu_seconds = 0.0

    def measure(
        self, tasks: Sequence[Task], timings: list[dict[str, float]]
    ) -> Iterator[WorkerResult]:
        """The recorded measurement of every task."""
        del timings  # no engine runs
        new: list[int] = []
        for task in point_tasks(tasks):
            point = task.point()
            index = self.row_of[point]
            self.measured.add(point)
            new.append(index)
            label = self.rows[index][1]
            record = MeasurementRecord(**{k: label[k] for k in MEASUREMENT_COLUMNS if k in label})
            yield WorkerResult(task.point_id, PointStatus.COMPLETE, record)
        self.chosen += new
        self.gpu_seconds += round_gpu_seconds(self.rows, new)

    def loaded(self) -> list[EngineConfig]:
        """No engine stays loaded between rounds."""
        return []

    def gpu_uuids(self) -> list[str]:
        """No physical GPU: the campaign's reference point is measured every run."""
        return []

    def close(self) -> None:
        """Nothing to shut down."""


def replay_config(strategy: str, seed: int, args: argparse.Namespace) -> CampaignConfig:
    """The replay's campaign (its priors are never drawn from: :class:`PoolSampler` is)."""
    sizes = round_sizes(strategy, args.initial, args.per_round, args.points_per_engine)
    return parse_config(
        {
            "name": f"replay-{strategy.replace('+', '-')}", "engine": "vllm", "seed": seed,
            "strategy": sizes.strategy,
            "priors": {"architectures": {"models": ["llama3.1-8b"]}, "gpus": {"types": ["H200"]}},
            "sampling": {"initial": sizes.initial, "test_fraction": 0.2,
                         "neighbours": args.neighbours, "per_round": sizes.per_round,
                         "points_per_engine": sizes.points_per_engine,
                         "high_error": {"rule": "top_fraction", "value": args.high_error}},
            "budget": {"measurements": args.budget if args.budget < 10**9 else None,
                       "rounds": 10_000},
            "training": {"epochs": args.epochs, "patience": args.patience, "ensemble": 2,
                         "predictor": args.predictor},
        },
        "pool replay",
    )  # fmt: skip


def run_one(
    strategy: str, seed: int, rows: list[Row], pool: list[int], held_out: list[int],
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """One strategy on one seed: the campaign driver's loop on the pool, until it is spent, the
    budget is, or the held-out MAPE reaches ``--stop-at``."""
    config = replay_config(strategy, seed, args)
    row_of: dict[InferencePoint, int] = {}
    for index in pool:
        row_of.setdefault(rows[index][0], index)
    measured: set[InferencePoint] = set()
    measurer = PoolMeasurer(rows, row_of, measured)
    held_points = [rows[i][0] for i in held_out]
    held_truth = np.array([rows[i][1]["energy_j"] for i in held_out])
    curve: list[tuple[int, float]] = []
    gpu_curve: list[float] = []

    def judge(round_index: int, members: list[Any]) -> str | None:
        mape = Scores.of(ensemble_energies(members, held_points).mean(axis=0), held_truth).mape
        curve.append((len(measurer.chosen), mape))
        gpu_curve.append(measurer.gpu_seconds)
        print(f"  {strategy:<12} seed {seed} round {round_index}: {len(measurer.chosen)} "
              f"measured, {measurer.gpu_seconds:,.0f} GPU-s, held-out MAPE {mape:.2f} %",
              flush=True)  # fmt: skip
        if args.stop_at is not None and mape <= args.stop_at:
            return f"held-out MAPE {mape:.2f} % ≤ {args.stop_at} %"
        return None

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmco2-replay-") as folder:
        store = CampaignStore(f"sqlite:///{folder}/campaign.db")
        try:
            CampaignDriver(
                config, store, gpus=[], measurer=measurer, trainer=LocalTrainer(config.training),
                judge=judge, sampler=PoolSampler(config, list(row_of), measured),
            ).run()  # fmt: skip
        finally:
            store.close()
    return {"strategy": strategy, "seed": seed, "curve": curve, "chosen": measurer.chosen,
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

    try:
        strategies = experiment_strategies(args.strategies, args.points_per_engine, STRATEGIES)
    except InvalidRequestError as exc:
        parser.error(str(exc))
    rows = [(p, r) for p, r in read_exported_points(args.datasets)
            if r["prefill_energy_j"] is not None and r["energy_j"]]  # fmt: skip
    order = np.random.default_rng(20261201).permutation(len(rows))
    held = round(args.evaluation * len(rows))
    held_out, pool = sorted(order[:held].tolist()), sorted(order[held:].tolist())
    print(f"{len(rows)} real points: {len(pool)} in the pool, {len(held_out)} held out")
    runs = [
        run_one(strategy, seed, rows, pool, held_out, args)
        for seed in range(args.seeds)
        for strategy in strategies
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
