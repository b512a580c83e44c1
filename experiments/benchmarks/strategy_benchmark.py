"""Benchmark: measurements each sampling strategy needs before the predictor reaches a target MAPE.

Algorithm 1's loop on the simulated twin, in process (no Ray, no database: the campaign's own
sampler, its ``select`` and its predictor training, with the twin's noise-free energies times a
1 % log-normal repeat noise as the "measurement"). Every strategy starts from the same A points
per seed; after each round the ensemble is scored on a fixed evaluation set drawn from the priors
(the accuracy a user sees over the configurations the priors describe, the same yardstick for
every strategy). A run stops at the target or at the measurement budget. The table gives, per
strategy, the median over seeds of the measurements needed (runs that never reach the target
count as the budget, marked ``>``), and whether each of ours needs ≤ ½ of random's and ≤ ⅔ of
focused's.

``--cost gpu-seconds`` counts what a campaign pays instead: every point is measured by the
product's own worker on the twin (:class:`workers.actors.EngineWorker` with the simulated engine,
the real campaigns' protocol), so engine starts (the twin's start model, fitted on the real H200
starts), idle-power readings and measurement windows all cost their virtual GPU-seconds, and the
table gives the median GPU-seconds to the target. A strategy name ending in ``+fill`` is that
strategy choosing engine configurations rather than points: round 0 and each round choose
1/N of their points and fill each chosen engine configuration up to N points (``+fill8``: 8;
``+fill``: ``--points-per-engine``) with requests from the request prior (the campaigns'
``sampling.points_per_engine``), so it measures as many points per round over fewer engine
starts.

``oracle`` is a yardstick, not a strategy a campaign can run: from the same kind of prior pool as
the disagreement strategies it takes the candidates on which the current model's *true* error
is largest (the twin's exact energies). What it needs bounds what any strategy choosing by the
model's error could save.

    python experiments/benchmarks/strategy_benchmark.py --seeds 5 --jobs 2 \
        --out experiments/benchmarks/results/strategy_benchmark_target5.json
    python experiments/benchmarks/strategy_benchmark.py --cost gpu-seconds --target 3 \
        --strategies random,focused,diverse,random+fill,diverse+fill --seeds 5 --jobs 2 \
        --out experiments/benchmarks/results/strategy_benchmark_gpu_time.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurize import InferencePoint, get_gpu
from gnn.metrics import Scores, learning_curve_at
from gnn.training import ensemble_energies
from orchestrator.campaign import train_ensemble
from orchestrator.config import ROUND_PREDICTORS, CampaignConfig, Training, parse_config
from orchestrator.gpu_cost import GpuCostModel, loaded_engines
from orchestrator.sampling import EngineKey, PointSampler, fill_engines
from orchestrator.strategies import (
    CANDIDATE_FACTOR,
    Selection,
    high_error_indices,
    round_size,
    select,
)
from orchestrator.strategies import STRATEGIES as CAMPAIGN_STRATEGIES
from workers.actors import EngineWorker
from workers.engines import EngineConfig
from workers.engines.simulated import twin_costs_of
from workers.protocol import ProtocolSettings

#: The campaign's strategies (:data:`orchestrator.strategies.STRATEGIES`) and the oracle.
STRATEGIES = (*CAMPAIGN_STRATEGIES, "oracle")
#: Suffix of a strategy that chooses engine configurations and fills each (see the docstring);
#: ``+fill8`` fills to 8 points, ``+fill`` to ``--points-per-engine``.
FILL = "+fill"


def split_fill(name: str, default: int) -> tuple[str, int | None]:
    """A strategy name's base strategy and its engine fill (None: no fill)."""
    base, marker, count = name.partition(FILL)
    if not marker:
        return name, None
    if count and not count.isdigit():
        raise SystemExit(f"strategy {name!r}: {FILL} takes a whole number of points, if any")
    return base, int(count) if count else default


#: The real H200 campaigns' protocol, which the GPU-seconds of ``--cost gpu-seconds`` follow.
CAMPAIGN_PROTOCOL = ProtocolSettings(warmups=1, windows=2, min_window_s=2.0, min_requests=2)

#: The strategies of ours, held to ≤ ½ of random's and ≤ ⅔ of focused's measurements.
OURS = tuple(name for name in CAMPAIGN_STRATEGIES if name not in ("random", "focused"))

#: Strategies that choose whole engine configurations themselves (round 0 is filled for them).
CHOOSE_ENGINES = ("cost-aware",)

PRIORS: dict[str, Any] = {
    "architectures": {
        "models": ["qwen2-0.5b", "qwen2-1.5b", "gemma-2-2b", "llama3.1-8b", "bloom-1b7",
                   "qwen2-7b", "gemma-2-9b", "mixtral-8x7b"],
        "perturbed_fraction": 0.3,
        "perturbation": {"num_layers": 0.25, "intermediate_size": 0.25},
    },
    "requests": {"batch": [1, 4], "max_context": 4096},
    "gpus": {"types": ["H100-SXM", "A100-80GB", "L4"], "tp": [1, 4]},
}  # fmt: skip

GPUS = [get_gpu(name) for name in PRIORS["gpus"]["types"]]


@dataclass
class Run:
    """One strategy on one seed: (measurements, evaluation MAPE) after every round."""

    strategy: str
    seed: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    reached_at: int | None = None
    seconds: float = 0.0
    #: GPU-seconds spent by the end of each round (``--cost gpu-seconds``; else zeros).
    gpu_curve: list[float] = field(default_factory=list)
    reached_gpu_s: float | None = None


def campaign_config(args: argparse.Namespace, strategy: str) -> CampaignConfig:
    """The benchmark's campaign, as a user would write it."""
    return parse_config(
        {
            "name": f"bench-{strategy.replace('+', '-')}", "engine": "simulated",
            "strategy": "random" if strategy == "oracle" else split_fill(strategy, 1)[0],
            "target_mape": args.target, "priors": PRIORS,
            "sampling": {"initial": args.initial, "test_fraction": 0.2,
                         "neighbours": args.neighbours, "per_round": args.per_round,
                         "high_error": {"rule": "top_fraction", "value": 0.1},
                         "points_per_engine": (args.points_per_engine
                                               if strategy in CHOOSE_ENGINES else None)},
            "budget": {"measurements": args.budget, "rounds": 100},
            "training": {"epochs": args.epochs, "patience": args.patience, "ensemble": 2},
        },
        "benchmark",
    )  # fmt: skip


class Twin:
    """The measurement oracle: the simulated twin's energies with repeat noise."""

    def __init__(self, noise: float, seed: int) -> None:
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def measure(self, points: list[InferencePoint]) -> list[dict[str, float]]:
        """Prefill and total energy of ``points``, with repeat noise."""
        rows: list[dict[str, float]] = [{} for _ in points]
        by_gpu: dict[str, list[int]] = {}
        for i, point in enumerate(points):
            by_gpu.setdefault(point.setup.gpu.id, []).append(i)
        costs = twin_costs_of(points)
        # One noise draw per GPU type, in its points' order: the draws of the runs made before.
        for indices in by_gpu.values():
            factor = np.exp(self.rng.normal(0.0, self.noise, size=(len(indices), 2)))
            for k, i in enumerate(indices):
                prefill, decode = costs[i, 2] * factor[k, 0], costs[i, 3] * factor[k, 1]
                total = prefill + decode
                rows[i] = {"prefill_energy_j": prefill, "energy_j": total, "simulated": 1.0}
        return rows


class WorkerTwin:
    """The measurement oracle of ``--cost gpu-seconds``: the twin behind the product's worker.

    Points are grouped by engine configuration and each group is measured by one
    :class:`~workers.actors.EngineWorker` of the simulated engine, as a campaign's actor would:
    its labels carry the twin's instance and repeat noise, and its held time (engine start,
    idle-power reading, warm-ups, windows; virtual seconds) times its GPUs is what it cost.
    """

    def __init__(self, seed: int, resident: int = 0, round_gap_s: float = 0.0) -> None:
        self.seed = seed
        self.gpu_seconds = 0.0
        #: Engines kept loaded from one call (round) to the next, as ``sampling.resident_engines``
        #: keeps them: each holds its GPUs for ``round_gap_s`` between rounds (the training).
        self.resident = resident
        self.round_gap_s = round_gap_s
        self.kept: dict[EngineConfig, tuple[EngineWorker, float]] = {}  # worker, held charged

    def loaded(self) -> frozenset[EngineKey]:
        """The engines kept loaded, as the cost model names them."""
        return loaded_engines(self.kept)

    def measure(self, points: list[InferencePoint]) -> list[dict[str, float]]:
        """Prefill and total energy of ``points``; adds their GPU-seconds to ``gpu_seconds``."""
        rows: list[dict[str, float]] = [{} for _ in points]
        groups: dict[EngineConfig, list[int]] = {}
        for i, point in enumerate(points):
            config = EngineConfig(
                point.architecture, point.precision, point.setup.count, point.setup.gpu,
                point.flash_attention, self.seed,
            )  # fmt: skip
            groups.setdefault(config, []).append(i)
        for config in self.kept:  # held while the last round trained
            self.gpu_seconds += self.round_gap_s * config.tp
        for config in [c for c in self.kept if c not in groups]:  # no work here: shut down
            self.kept.pop(config)[0].shutdown()
        used: list[tuple[EngineConfig, EngineWorker, float]] = []
        for config, indices in groups.items():
            kept = self.kept.pop(config, None)
            worker, charged = (
                kept if kept else (EngineWorker("simulated", config, CAMPAIGN_PROTOCOL), 0.0)
            )
            for i in indices:
                result = worker.measure(i, points[i].request)
                record = result.record
                if record is None or record.energy_j is None:
                    raise RuntimeError(f"the twin failed on {points[i]}: {result.error_message}")
                rows[i] = {"prefill_energy_j": float(record.prefill_energy_j or 0.0),
                           "energy_j": float(record.energy_j), "simulated": 1.0}  # fmt: skip
            held = worker.timing()["held_s"]
            self.gpu_seconds += (held - charged) * config.tp
            used.append((config, worker, held))
        keep_from = max(0, len(used) - self.resident)  # the last ones measured stay loaded
        for _, worker, _ in used[:keep_from]:
            worker.shutdown()
        for config, worker, held in used[keep_from:]:
            self.kept[config] = (worker, held)
        return rows


def exact_energy(points: list[InferencePoint]) -> np.ndarray:
    """Noise-free total energy (the evaluation set's truth)."""
    return np.array([row["energy_j"] for row in Twin(0.0, 0).measure(points)])


def train(rows: list[tuple[InferencePoint, dict[str, float]]], args: argparse.Namespace,
          seed: int) -> list[Any]:  # fmt: skip
    """The round's ensemble of two, trained as the campaign driver trains it."""
    seeds = [seed * 100 + k for k in range(2)]
    return train_ensemble(rows, args.epochs, args.patience, seeds, args.predictor)


def oracle_select(
    sampler: PointSampler, rng: np.random.Generator, wanted: int, members: list[Any],
    exclude: set[InferencePoint],
) -> Selection:  # fmt: skip
    """The ``wanted`` prior candidates the ensemble mean gets most wrong (by the twin's truth)."""
    pool = [p for p in sampler.sample(wanted * CANDIDATE_FACTOR, rng) if p not in exclude]
    if not pool:
        return Selection([], [])
    predicted = ensemble_energies(members, pool).mean(axis=0)
    exact = exact_energy(pool)
    worst = np.argsort(-np.abs(predicted - exact) / exact, kind="stable")[:wanted]
    return Selection([pool[i] for i in worst], [None] * len(worst))


def run_one(strategy: str, seed: int, args: argparse.Namespace,
            evaluation: list[InferencePoint], truth: np.ndarray) -> Run:  # fmt: skip
    """Algorithm 1 with ``strategy`` until the evaluation MAPE reaches the target."""
    torch.set_num_threads(args.threads)
    config = campaign_config(args, strategy)
    sampler = PointSampler(config, GPUS)
    name = strategy
    strategy, per_engine = split_fill(name, args.points_per_engine)
    share = per_engine or 1  # a filled strategy chooses 1/share of its points
    share_zero = share
    if strategy in CHOOSE_ENGINES:  # its rounds choose whole engines; round 0 is drawn and filled
        per_engine = share_zero = per_engine or args.points_per_engine
        share = 1
    costs = GpuCostModel(CAMPAIGN_PROTOCOL)

    def filled(chosen: list[InferencePoint], round_index: int, room: int) -> list[InferencePoint]:
        fill_rng = np.random.default_rng([seed, round_index, 0xF111])
        room = max(0, room - len(chosen))  # the most points the fill adds
        return chosen + fill_engines(sampler, chosen, per_engine, fill_rng, set(points), room)

    rng0 = np.random.default_rng([seed, 0])
    points: list[InferencePoint] = []
    points = filled(sampler.sample(max(1, args.initial // share_zero), rng0), 0, args.initial)
    is_test = list(rng0.random(len(points)) < 0.2)
    twin: Twin | WorkerTwin = (
        WorkerTwin(seed, args.resident_engines, args.round_gap_s)
        if args.cost == "gpu-seconds"
        else Twin(args.noise, seed)
    )
    labels = twin.measure(points)
    run = Run(name, seed)
    start = time.perf_counter()
    round_index = 0
    while True:
        train_rows = [(p, r) for p, r, t in zip(points, labels, is_test, strict=True) if not t]
        members = train(train_rows, args, seed * 1000 + round_index)
        predicted = ensemble_energies(members, evaluation).mean(axis=0)
        mape = Scores.of(predicted, truth).mape
        run.curve.append((len(points), mape))
        spent = getattr(twin, "gpu_seconds", 0.0)
        run.gpu_curve.append(spent)
        print(f"  {run.strategy:<12} seed {seed} round {round_index}: {len(points)} measured, "
              f"{spent:,.0f} GPU-s, evaluation MAPE {mape:.2f} %", flush=True)  # fmt: skip
        if mape <= args.target:
            run.reached_at = len(points)
            run.reached_gpu_s = spent
            break
        room = min(args.per_round, args.budget - len(points))
        if room <= 0 or (args.gpu_budget is not None and spent >= args.gpu_budget):
            break
        test_points = [p for p, t in zip(points, is_test, strict=True) if t]
        test_measured = np.array([r["energy_j"] for r, t in zip(labels, is_test, strict=True) if t])
        test_predicted = ensemble_energies(members, test_points).mean(axis=0)
        rng = np.random.default_rng([seed, round_index + 1])

        def ensemble(candidates: Any, members: list[Any] = members) -> np.ndarray:
            return ensemble_energies(members, candidates)

        test_errors = np.abs(test_predicted - test_measured) / test_measured
        if strategy == "oracle":
            worst = high_error_indices(test_errors, config.sampling.high_error)
            wanted = round_size(room, args.neighbours, len(worst))
            selection = oracle_select(sampler, rng, wanted, members, set(points))
        else:
            selection = select(
                strategy, sampler, rng, budget=max(1, room // share), neighbours=args.neighbours,
                test_points=test_points, test_ids=list(range(len(test_points))),
                test_errors=test_errors, rule=config.sampling.high_error, ensemble=ensemble,
                exclude=set(points),
                costs=GpuCostModel(CAMPAIGN_PROTOCOL, twin.loaded())
                if isinstance(twin, WorkerTwin) else costs,
            )  # fmt: skip
        if not selection.points:
            break
        chosen = filled(list(selection.points), round_index + 1, room)
        points += chosen
        is_test += list(rng.random(len(chosen)) < 0.2)
        labels += twin.measure(chosen)
        round_index += 1
    run.seconds = time.perf_counter() - start
    return run


#: Measurement counts at which the strategies' models are compared (the sampling ablation).
CHECKPOINTS = (60, 120, 180, 240, 300, 360)


def summarise(runs: list[Run], budget: int) -> dict[str, dict[str, Any]]:
    """Median measurements to the target per strategy (unreached runs count as the budget).

    Also the median evaluation MAPE at equal measurement counts (:data:`CHECKPOINTS`; a run
    that stopped at the target before a checkpoint keeps its last model), which is the
    "+ focused sampling" ablation of the predictor: the same model, trained on what each
    strategy chose to measure.
    """
    summary = {}
    for strategy in dict.fromkeys(r.strategy for r in runs):
        mine = [r for r in runs if r.strategy == strategy]
        needed = [r.reached_at if r.reached_at is not None else budget for r in mine]
        gpu_needed = [
            r.reached_gpu_s if r.reached_gpu_s is not None else float("inf") for r in mine
        ]
        at: dict[str, float | None] = {}
        for checkpoint in CHECKPOINTS:
            values = [v for r in mine if (v := learning_curve_at(r.curve, checkpoint)) is not None]
            at[str(checkpoint)] = statistics.median(values) if values else None
        summary[strategy] = {
            "mape_at": at,
            "median_measurements": statistics.median(needed),
            "reached": sum(r.reached_at is not None for r in mine),
            "runs": len(mine),
            "per_seed": needed,
            "final_mape_median": statistics.median(r.curve[-1][1] for r in mine),
            "seeds": len(mine),
            # None: the median run never reached the target (JSON has no infinity).
            "median_gpu_s_to_target": _finite(statistics.median(gpu_needed)),
            "gpu_s_per_seed": [_finite(v) for v in gpu_needed],
        }
    return summary


def _finite(value: float) -> float | None:
    return None if value == float("inf") else value


def _unreached_last(value: float | None) -> float:
    return float("inf") if value is None else value


def _gpu_cell(value: float | None) -> str:
    return "never" if value is None else f"{value:,.0f}"


def gpu_bars(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, bool]]:
    """Whether each of ours needs ≤ ½ of random's GPU-seconds and ≤ ⅓ of focused's.

    Ours: :data:`OURS` and every strategy that fills its engines.
    """
    bars: dict[str, dict[str, bool]] = {}
    if "random" not in summary or "focused" not in summary:
        return bars
    random_s = _unreached_last(summary["random"]["median_gpu_s_to_target"])
    focused_s = _unreached_last(summary["focused"]["median_gpu_s_to_target"])
    for strategy, row in summary.items():
        if strategy in OURS or split_fill(strategy, 1)[1] is not None:
            mine = _unreached_last(row["median_gpu_s_to_target"])
            bars[strategy] = {
                "half_of_random": mine <= 0.5 * random_s,
                "third_of_focused": mine <= focused_s / 3,
            }
            print(f"bars for {strategy}: ≤ ½ random: {bars[strategy]['half_of_random']}, "
                  f"≤ ⅓ focused: {bars[strategy]['third_of_focused']}")  # fmt: skip
    return bars


def report(
    runs: list[Run], budget: int, target: float, seeds: int, gpu_seconds: bool = False
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, bool]]]:
    """Print the tables; the summary and the bars of our strategies (by GPU-seconds if asked)."""
    summary = summarise(runs, budget)
    print(f"\nmeasurements to an evaluation MAPE ≤ {target} % (median of {seeds} seeds;"
          f" budget {budget})")  # fmt: skip
    print(f"{'strategy':<14}{'median':>8}{'reached':>9}{'final MAPE %':>14}  per seed")
    for strategy, row in summary.items():
        print(f"{strategy:<14}{row['median_measurements']:>8}{row['reached']:>5}/{row['runs']:<3}"
              f"{row['final_mape_median']:>14.2f}  {row['per_seed']}")  # fmt: skip
    print("\nevaluation MAPE % at equal measurements (median over seeds)")
    print(f"{'strategy':<14}" + "".join(f"{c:>8}" for c in CHECKPOINTS))
    for strategy, row in summary.items():
        cells = [row["mape_at"][str(c)] for c in CHECKPOINTS]
        print(f"{strategy:<14}" + "".join(f"{c:>8.2f}" if c is not None else f"{'-':>8}"
                                          for c in cells))  # fmt: skip
    if gpu_seconds:
        print(f"\nGPU-seconds to an evaluation MAPE ≤ {target} % (median of {seeds} seeds)")
        print(f"{'strategy':<16}{'median GPU-s':>14}{'reached':>9}  per seed")
        for strategy, row in summary.items():
            cells = " ".join(_gpu_cell(v) for v in row["gpu_s_per_seed"])
            print(f"{strategy:<16}{_gpu_cell(row['median_gpu_s_to_target']):>14}"
                  f"{row['reached']:>5}/{row['runs']:<3}  {cells}")  # fmt: skip
        return summary, gpu_bars(summary)
    if "random" not in summary or "focused" not in summary:
        return summary, {}
    bars: dict[str, dict[str, bool]] = {}
    for strategy in OURS:
        if strategy not in summary:
            continue
        ours = summary[strategy]["median_measurements"]
        bars[strategy] = {
            "half_of_random": ours <= 0.5 * summary["random"]["median_measurements"],
            "two_thirds_of_focused": ours <= 2 / 3 * summary["focused"]["median_measurements"],
        }
        print(f"bars for {strategy}: ≤ ½ random: {bars[strategy]['half_of_random']}, ≤ ⅔ focused:"
              f" {bars[strategy]['two_thirds_of_focused']}")  # fmt: skip
    return summary, bars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--target", type=float, default=5.0, help="target MAPE %%")
    parser.add_argument("--initial", type=int, default=60, help="A")
    parser.add_argument("--per-round", type=int, default=30)
    parser.add_argument("--neighbours", type=int, default=10, help="B")
    parser.add_argument("--budget", type=int, default=400, help="most measurements per run")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument(
        "--predictor",
        choices=ROUND_PREDICTORS,
        default=Training().predictor,
        help="the round's model, as the campaign config's training.predictor",
    )
    parser.add_argument("--noise", type=float, default=0.01, help="repeat noise (log σ)")
    parser.add_argument(
        "--cost", choices=("measurements", "gpu-seconds"), default="measurements",
        help="what reaching the target is counted in (gpu-seconds: measured by the worker)",
    )  # fmt: skip
    parser.add_argument(
        "--resident-engines",
        type=int,
        default=0,
        help="engines kept loaded between rounds (--cost gpu-seconds)",
    )
    parser.add_argument(
        "--round-gap-s",
        type=float,
        default=60.0,
        help="seconds a kept engine holds its GPUs between rounds",
    )
    parser.add_argument("--points-per-engine", type=int, default=16,
                        help="engine fill of the +fill strategies")  # fmt: skip
    parser.add_argument("--gpu-budget", type=float, default=None,
                        help="most GPU-seconds per run (--cost gpu-seconds)")  # fmt: skip
    parser.add_argument("--evaluation", type=int, default=400, help="evaluation-set size")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per run (default: all cores ÷ jobs)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("strategy_benchmark.json"))
    parser.add_argument(
        "--resummarise", type=Path, default=None,
        help="print and rewrite the summary of an earlier result JSON instead of running",
    )  # fmt: skip
    args = parser.parse_args()
    if args.resummarise is not None:
        result = json.loads(args.resummarise.read_text())
        runs = [Run(r["strategy"], r["seed"], [tuple(c) for c in r["curve"]], r["reached_at"],
                    r["seconds"], r.get("gpu_curve", []), r.get("reached_gpu_s"))
                for r in result["runs"]]  # fmt: skip
        settings = result["settings"]
        result["summary"], result["bars"] = report(
            runs, settings["budget"], settings["target"], settings["seeds"],
            settings.get("cost") == "gpu-seconds",
        )  # fmt: skip
        args.resummarise.write_text(json.dumps(result, indent=1))
        print(f"rewritten: {args.resummarise}")
        return
    evaluation = PointSampler(campaign_config(args, "random"), GPUS).sample(
        args.evaluation, np.random.default_rng(20261127)
    )
    truth = exact_energy(evaluation)
    bases = {split_fill(s, args.points_per_engine)[0] for s in args.strategies.split(",")}
    unknown = sorted(bases - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    cores = multiprocessing.cpu_count()
    args.threads = args.threads or max(1, cores // max(1, args.jobs))
    jobs = [(strategy, seed, args, evaluation, truth) for seed in range(args.seeds)
            for strategy in args.strategies.split(",")]  # fmt: skip
    if args.jobs > 1:
        # spawn, not fork: a forked child inherits the parent's OpenMP state mid-flight.
        with multiprocessing.get_context("spawn").Pool(args.jobs) as workers:
            runs = workers.starmap(run_one, jobs, chunksize=1)
    else:
        runs = [run_one(*job) for job in jobs]
    summary, bars = report(runs, args.budget, args.target, args.seeds, args.cost == "gpu-seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "strategy_benchmark", "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "priors": PRIORS, "summary": summary, "bars": bars,
        "strategies": {name: {"median_gpu_s_to_target": row["median_gpu_s_to_target"],
                              "reached": row["reached"], "seeds": row["seeds"]}
                       for name, row in summary.items()} if args.cost == "gpu-seconds" else None,
        "protocol": CAMPAIGN_PROTOCOL.__dict__ if args.cost == "gpu-seconds" else None,
        "runs": [{"strategy": r.strategy, "seed": r.seed, "curve": r.curve,
                  "reached_at": r.reached_at, "seconds": r.seconds, "gpu_curve": r.gpu_curve,
                  "reached_gpu_s": r.reached_gpu_s} for r in runs],
    }, indent=1))  # fmt: skip
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
