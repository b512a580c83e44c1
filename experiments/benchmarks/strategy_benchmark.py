"""Benchmark: measurements each sampling strategy needs before the predictor reaches a target MAPE.

Algorithm 1 is the campaign driver's own loop (:class:`orchestrator.campaign.CampaignDriver`,
in process: a SQLite store in a temporary folder, no Ray), with the simulated twin as its
measurer — the twin's noise-free energies times a 1 % log-normal repeat noise — and each round's
ensemble trained in this process as the campaign config says. Every strategy starts from the
same A points per seed; after each round the ensemble is scored on a fixed evaluation set, the
same yardstick for every strategy: by default (``--yardstick unseen-shapes``) requests on catalog
architectures of the priors' families that no campaign samples (:data:`HELD_OUT_MODELS`: the
accuracy on shapes nobody measured, as the predictor's leave-one-shape-out judges it), or
(``priors``) draws from the priors themselves. A run stops at the target or at the measurement
budget. The table
gives, per strategy, the median over seeds of the measurements needed (runs that never reach the
target count as the budget, marked ``>``), and whether each of ours needs ≤ ½ of random's and
≤ ⅔ of focused's.

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

``oracle`` is a yardstick, not a strategy a campaign can run (the benchmark registers it for its
own campaigns): from the same kind of prior pool as
the disagreement strategies it takes the candidates on which the current model's *true* error
is largest (the twin's exact energies). What it needs bounds what any strategy choosing by the
model's error could save.

    python experiments/benchmarks/strategy_benchmark.py --seeds 5 --jobs 2 \
        --out experiments/benchmarks/results/strategy_benchmark_target5.json
    python experiments/benchmarks/strategy_benchmark.py --cost gpu-seconds --target 1 \
        --budget 400 --points-per-engine 4 --seeds 5 --jobs 2 \
        --strategies random,focused,diverse,cost-aware,random+fill4,diverse+fill4 \
        --out experiments/benchmarks/results/strategy_benchmark_gpu_time.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurize import InferencePoint, get_gpu
from gnn.metrics import Scores, learning_curve_at
from gnn.training import ensemble_energies
from llmco2.errors import InvalidRequestError
from orchestrator.campaign import CampaignDriver, LocalTrainer
from orchestrator.config import ROUND_PREDICTORS, CampaignConfig, Training, parse_config
from orchestrator.sampling import PointSampler
from orchestrator.strategies import (
    CANDIDATE_FACTOR,
    FILL_SUFFIX,
    RoundChoice,
    Strategy,
    experiment_strategies,
    register_strategy,
    round_sizes,
)
from orchestrator.strategies import STRATEGIES as CAMPAIGN_STRATEGIES
from storage import CampaignStore, PointStatus
from storage.records import MeasurementRecord
from workers.actors import EngineWorker, WorkerResult
from workers.engines import EngineConfig
from workers.engines.simulated import twin_costs_of
from workers.pool import PointTask, Task, point_tasks
from workers.protocol import ProtocolSettings

#: The campaign's strategies (:data:`orchestrator.strategies.STRATEGIES`) and the oracle.
STRATEGIES = (*(name for name in CAMPAIGN_STRATEGIES if name != "oracle"), "oracle")
#: The real H200 campaigns' protocol, which the GPU-seconds of ``--cost gpu-seconds`` follow.
CAMPAIGN_PROTOCOL = ProtocolSettings(warmups=1, windows=2, min_window_s=2.0, min_requests=2)

#: The strategies of ours, held to ≤ ½ of random's and ≤ ⅔ of focused's measurements.
OURS = tuple(name for name in CAMPAIGN_STRATEGIES if name not in ("random", "focused", "oracle"))


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

#: Catalog architectures of the priors' families that no campaign of the benchmark samples: the
#: evaluation set of the ``unseen-shapes`` yardstick, as the predictor's leave-one-shape-out
#: holds a shape out while others of its family are measured.
HELD_OUT_MODELS = ("qwen2.5-3b", "qwen2.5-14b", "gemma-2b", "gemma-7b", "llama3.2-3b", "bloom-3b")

#: What the evaluation set holds (``--yardstick``).
YARDSTICKS = ("unseen-shapes", "priors")


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


def campaign_config(args: argparse.Namespace, strategy: str, seed: int = 0) -> CampaignConfig:
    """The benchmark's campaign, as a user would write it.

    ``STRATEGY+fillN`` is ``strategy: STRATEGY`` with ``initial`` and ``per_round`` divided by N
    and ``sampling.points_per_engine: N``; ``cost-aware`` chooses whole engines of
    ``--points-per-engine`` points itself (its round 0: ``initial`` divided by that, filled).
    A run stops on the evaluation set's MAPE (:class:`Yardstick`, the driver's judge) or on a
    budget.
    """
    sizes = round_sizes(strategy, args.initial, args.per_round, args.points_per_engine)
    return parse_config(
        {
            "name": f"bench-{strategy.replace('+', '-')}", "engine": "simulated", "seed": seed,
            "strategy": sizes.strategy, "target_mape": args.target, "priors": PRIORS,
            "sampling": {"initial": sizes.initial, "test_fraction": 0.2,
                         "neighbours": args.neighbours, "per_round": sizes.per_round,
                         "high_error": {"rule": "top_fraction", "value": 0.1},
                         "points_per_engine": sizes.points_per_engine,
                         "resident_engines": args.resident_engines},
            "budget": {"measurements": args.budget, "rounds": 100},
            "training": {"epochs": args.epochs, "patience": args.patience, "ensemble": 2,
                         "predictor": args.predictor},
        },
        "benchmark",
    )  # fmt: skip


def evaluation_points(args: argparse.Namespace) -> list[InferencePoint]:
    """The fixed evaluation set: ``--evaluation`` points of the ``--yardstick``'s shapes.

    ``unseen-shapes``: the :data:`HELD_OUT_MODELS` as they are (no perturbation), with the
    priors' requests and GPU setups; ``priors``: draws from the campaigns' own priors.
    """
    config = campaign_config(args, "random")
    if args.yardstick == "unseen-shapes":
        priors = config.priors.model_copy(
            update={"architectures": config.priors.architectures.model_copy(
                update={"models": list(HELD_OUT_MODELS), "perturbed_fraction": 0.0})}
        )  # fmt: skip
        config = config.model_copy(update={"priors": priors})
    return PointSampler(config, GPUS).sample(args.evaluation, np.random.default_rng(20261127))


def twin_labels(
    points: Sequence[InferencePoint], noise: float, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Measured labels of ``points`` on the twin: its energies times a log-normal repeat noise
    (``noise``, log σ, per phase) and its latencies."""
    costs = twin_costs_of(points)
    factor = np.exp(rng.normal(0.0, noise, size=(len(points), 2)))
    prefill, decode = costs[:, 2] * factor[:, 0], costs[:, 3] * factor[:, 1]
    return [
        {"simulated": True, "energy_j": float(prefill[k] + decode[k]),
         "prefill_energy_j": float(prefill[k]), "decode_energy_j": float(decode[k]),
         "latency_s": float(costs[k, 0] + costs[k, 1]), "prefill_latency_s": float(costs[k, 0])}
        for k in range(len(points))
    ]  # fmt: skip


class TwinMeasurer:
    """Measures with the simulated twin's energies times a log-normal repeat noise.

    A :class:`~orchestrator.measuring.Measurer` of no GPU time: what ``--cost measurements``
    counts is points. Latencies are the twin's, as a campaign's measurements carry them
    (:func:`twin_labels`).
    """

    def __init__(self, noise: float, seed: int) -> None:
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.measured = 0
        self.gpu_seconds = 0.0

    def measure(
        self, tasks: Sequence[Task], timings: list[dict[str, float]]
    ) -> Iterator[WorkerResult]:
        """The twin's labels of every task."""
        del timings  # no engine runs
        points = point_tasks(tasks)
        labels = twin_labels([t.point() for t in points], self.noise, self.rng)
        for task, label in zip(points, labels, strict=True):
            self.measured += 1
            record = MeasurementRecord("simulated", **label)
            yield WorkerResult(task.point_id, PointStatus.COMPLETE, record)

    def loaded(self) -> list[EngineConfig]:
        """No engine is ever loaded."""
        return []

    def gpu_uuids(self) -> list[str]:
        """No physical GPU: the campaign's reference point is measured every run."""
        return []

    def close(self) -> None:
        """Nothing to shut down."""


class WorkerTwin:
    """The measurer of ``--cost gpu-seconds``: the twin behind the product's worker.

    Each engine configuration is measured by one :class:`~workers.actors.EngineWorker` of the
    simulated engine, as a campaign's actor would: its labels carry the twin's instance and
    repeat noise, and its held time (engine start, idle-power reading, warm-ups, windows;
    virtual seconds) times its GPUs is what it cost. The last ``resident`` engines of a call
    stay loaded for the next, as ``sampling.resident_engines`` keeps them, and each holds its
    GPUs for ``round_gap_s`` between calls (the round's training).
    """

    def __init__(self, resident: int = 0, round_gap_s: float = 0.0) -> None:
        self.measured = 0
        self.gpu_seconds = 0.0
        self.resident = resident
        self.round_gap_s = round_gap_s
        self.kept: dict[EngineConfig, tuple[EngineWorker, float]] = {}  # worker, held charged

    def loaded(self) -> list[EngineConfig]:
        """The engines kept loaded, oldest first."""
        return list(self.kept)

    def gpu_uuids(self) -> list[str]:
        """No physical GPU: the campaign's reference point is measured every run."""
        return []

    def measure(
        self, tasks: Sequence[Task], timings: list[dict[str, float]]
    ) -> Iterator[WorkerResult]:
        """Results of every task; adds their GPU-seconds to ``gpu_seconds``."""
        groups: dict[EngineConfig, list[PointTask]] = {}
        for task in point_tasks(tasks):
            groups.setdefault(task.config, []).append(task)
        for config in self.kept:  # held while the last round trained
            self.gpu_seconds += self.round_gap_s * config.tp
        for config in [c for c in self.kept if c not in groups]:  # no work here: shut down
            self.kept.pop(config)[0].shutdown()
        used: list[tuple[EngineConfig, EngineWorker, float]] = []
        for config, group in groups.items():
            kept = self.kept.pop(config, None)
            worker, charged = (
                kept if kept else (EngineWorker("simulated", config, CAMPAIGN_PROTOCOL), 0.0)
            )
            for task in group:
                result = worker.measure(task.point_id, task.request)
                if result.record is None or result.record.energy_j is None:
                    raise RuntimeError(f"the twin failed on {task}: {result.error_message}")
                self.measured += 1
                yield result
            timing = worker.timing()
            self.gpu_seconds += (timing["held_s"] - charged) * config.tp
            timings.append(timing)
            used.append((config, worker, timing["held_s"]))
        keep_from = max(0, len(used) - self.resident)  # the last ones measured stay loaded
        for _, worker, _ in used[:keep_from]:
            worker.shutdown()
        for config, worker, held in used[keep_from:]:
            self.kept[config] = (worker, held)

    def close(self) -> None:
        """Shut the kept engines down."""
        for worker, _ in self.kept.values():
            worker.shutdown()
        self.kept.clear()


def exact_energy(points: Sequence[InferencePoint]) -> np.ndarray:
    """Noise-free total energy (the evaluation set's truth)."""
    costs = twin_costs_of(points)
    return np.asarray(costs[:, 2] + costs[:, 3])


def _oracle(choice: RoundChoice) -> None:
    """The prior candidates the ensemble mean gets most wrong, by the twin's truth."""
    pool = choice.candidates(choice.wanted * CANDIDATE_FACTOR)
    if not pool:
        return
    predicted = choice.committee("oracle")(pool).mean(axis=0)
    exact = exact_energy(pool)
    for index in np.argsort(-np.abs(predicted - exact) / exact, kind="stable"):
        if not choice.room():
            break
        choice.keep(pool[index])


if "oracle" not in CAMPAIGN_STRATEGIES:  # a second import of this file registers nothing
    register_strategy(
        Strategy("oracle", _oracle, True, "yardstick: the candidates the model gets most wrong")
    )


@dataclass
class Yardstick:
    """Judges each round's ensemble on the evaluation set, for the campaign driver.

    Records the run's curve (measurements, evaluation MAPE, GPU-seconds spent) and stops the
    campaign at the target MAPE or at the GPU-second budget.
    """

    run: Run
    evaluation: list[InferencePoint]
    truth: np.ndarray
    measurer: TwinMeasurer | WorkerTwin
    target: float
    gpu_budget: float | None

    def __call__(self, round_index: int, members: list[Any]) -> str | None:
        """A stop reason, or None to go on."""
        predicted = ensemble_energies(members, self.evaluation).mean(axis=0)
        mape = Scores.of(predicted, self.truth).mape
        measured, spent = self.measurer.measured, self.measurer.gpu_seconds
        self.run.curve.append((measured, mape))
        self.run.gpu_curve.append(spent)
        print(f"  {self.run.strategy:<12} seed {self.run.seed} round {round_index}: "
              f"{measured} measured, {spent:,.0f} GPU-s, evaluation MAPE {mape:.2f} %",
              flush=True)  # fmt: skip
        if mape <= self.target:
            self.run.reached_at, self.run.reached_gpu_s = measured, spent
            return f"evaluation MAPE {mape:.2f} % ≤ {self.target} %"
        if self.gpu_budget is not None and spent >= self.gpu_budget:
            return f"GPU budget spent ({spent:,.0f} GPU-s)"
        return None


def run_one(strategy: str, seed: int, args: argparse.Namespace,
            evaluation: list[InferencePoint], truth: np.ndarray) -> Run:  # fmt: skip
    """Algorithm 1 with ``strategy``: the campaign driver's own loop, in process.

    The driver runs on a SQLite store in a temporary folder, with the twin as its measurer and
    the round's ensemble trained in this process; the :class:`Yardstick` stops it.
    """
    torch.set_num_threads(args.threads)
    config = campaign_config(args, strategy, seed)
    measurer: TwinMeasurer | WorkerTwin = (
        WorkerTwin(args.resident_engines, args.round_gap_s)
        if args.cost == "gpu-seconds"
        else TwinMeasurer(args.noise, seed)
    )
    run = Run(strategy, seed)
    judge = Yardstick(run, evaluation, truth, measurer, args.target, args.gpu_budget)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmco2-bench-") as folder:
        store = CampaignStore(f"sqlite:///{folder}/campaign.db")
        try:
            CampaignDriver(
                config, store, gpus=GPUS, measurer=measurer,
                trainer=LocalTrainer(config.training), judge=judge,
            ).run()  # fmt: skip
        finally:
            store.close()
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
            "median_gpu_s_to_level": {
                str(level): _finite(statistics.median(_gpu_reaching(r, level) for r in mine))
                for level in LEVELS
            },
        }
    return summary


#: Evaluation MAPE levels (%) at which the GPU-seconds spent are tabulated too (a run that
#: stops at its target tells those above it).
LEVELS = (5.0, 3.0, 2.0, 1.5, 1.0)


def _gpu_reaching(run: Run, level: float) -> float:
    """GPU-seconds spent when ``run``'s evaluation MAPE first reached ``level`` (inf: never)."""
    reached = zip(run.curve, run.gpu_curve, strict=False)
    return next((spent for (_, mape), spent in reached if mape <= level), float("inf"))


def strategies_block(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per strategy: median GPU-seconds to the target, runs that reached it, seeds."""
    return {
        name: {
            "median_gpu_s_to_target": row["median_gpu_s_to_target"],
            "reached": row["reached"],
            "seeds": row["seeds"],
        }
        for name, row in summary.items()
    }


def _finite(value: float) -> float | None:
    return None if value == float("inf") else value


def _unreached_last(value: float | None) -> float:
    return float("inf") if value is None else value


def _gpu_cell(value: float | None) -> str:
    return "never" if value is None else f"{value:,.0f}"


def gpu_bars(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Whether each of ours needs ≤ ½ of random's GPU-seconds and ≤ ⅓ of focused's.

    At the target, and at each of :data:`LEVELS` (``levels``). A bar holds only where the
    strategy's median run reached the level (a run that never does is no cheaper than another).
    Ours: :data:`OURS` and every strategy that fills its engines.
    """
    bars: dict[str, dict[str, Any]] = {}
    if "random" not in summary or "focused" not in summary:
        return bars

    def held(
        mine: float | None, random_s: float | None, focused_s: float | None
    ) -> dict[str, bool]:
        if mine is None:
            return {"half_of_random": False, "third_of_focused": False}
        return {
            "half_of_random": mine <= 0.5 * _unreached_last(random_s),
            "third_of_focused": mine <= _unreached_last(focused_s) / 3,
        }

    random_row, focused_row = summary["random"], summary["focused"]
    for strategy, row in summary.items():
        if strategy in OURS or FILL_SUFFIX in strategy:
            bars[strategy] = held(
                row["median_gpu_s_to_target"], random_row["median_gpu_s_to_target"],
                focused_row["median_gpu_s_to_target"],
            )  # fmt: skip
            bars[strategy]["levels"] = {
                level: held(
                    row["median_gpu_s_to_level"][level],
                    random_row["median_gpu_s_to_level"][level],
                    focused_row["median_gpu_s_to_level"][level],
                )
                for level in row["median_gpu_s_to_level"]
            }
            print(f"bars for {strategy}: ≤ ½ random: {bars[strategy]['half_of_random']}, "
                  f"≤ ⅓ focused: {bars[strategy]['third_of_focused']}")  # fmt: skip
    return bars


def report(
    runs: list[Run], budget: int, target: float, seeds: int, gpu_seconds: bool = False
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
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
            per_seed = " ".join(_gpu_cell(v) for v in row["gpu_s_per_seed"])
            print(f"{strategy:<16}{_gpu_cell(row['median_gpu_s_to_target']):>14}"
                  f"{row['reached']:>5}/{row['runs']:<3}  {per_seed}")  # fmt: skip
        print("\nGPU-seconds to each evaluation MAPE level (median of seeds)")
        print(f"{'strategy':<16}" + "".join(f"{f'≤ {v:g} %':>10}" for v in LEVELS))
        for strategy, row in summary.items():
            texts = [_gpu_cell(row["median_gpu_s_to_level"][str(v)]) for v in LEVELS]
            print(f"{strategy:<16}" + "".join(f"{t:>10}" for t in texts))
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
    parser.add_argument(
        "--yardstick", choices=YARDSTICKS, default="unseen-shapes",
        help="what the evaluation set holds: shapes no campaign samples, or the campaigns' priors",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per run (default: all cores ÷ jobs)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("strategy_benchmark.json"))
    parser.add_argument(
        "--retarget", type=float, default=None,
        help="with --resummarise: judge the runs at this MAPE instead (not below their target)",
    )  # fmt: skip
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
        target = settings.get("judged_at", settings["target"])
        if args.retarget is not None:
            if args.retarget < settings["target"]:
                parser.error(f"--retarget {args.retarget} is below the {settings['target']} % "
                             "the runs stopped at: their curves end there")  # fmt: skip
            target = settings["judged_at"] = args.retarget
            for run in runs:
                reached = [(count, spent) for (count, mape), spent
                           in zip(run.curve, run.gpu_curve or [0.0] * len(run.curve), strict=True)
                           if mape <= target]  # fmt: skip
                run.reached_at, run.reached_gpu_s = reached[0] if reached else (None, None)
        gpu_seconds = settings.get("cost") == "gpu-seconds"
        result["summary"], result["bars"] = report(
            runs, settings["budget"], target, settings["seeds"], gpu_seconds
        )
        result["strategies"] = strategies_block(result["summary"]) if gpu_seconds else None
        args.resummarise.write_text(json.dumps(result, indent=1))
        print(f"rewritten: {args.resummarise}")
        return
    evaluation = evaluation_points(args)
    truth = exact_energy(evaluation)
    try:
        strategies = experiment_strategies(args.strategies, args.points_per_engine, STRATEGIES)
    except InvalidRequestError as exc:
        parser.error(str(exc))
    cores = multiprocessing.cpu_count()
    args.threads = args.threads or max(1, cores // max(1, args.jobs))
    jobs = [(strategy, seed, args, evaluation, truth) for seed in range(args.seeds)
            for strategy in strategies]  # fmt: skip
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
        "strategies": strategies_block(summary) if args.cost == "gpu-seconds" else None,
        "protocol": CAMPAIGN_PROTOCOL.__dict__ if args.cost == "gpu-seconds" else None,
        "runs": [{"strategy": r.strategy, "seed": r.seed, "curve": r.curve,
                  "reached_at": r.reached_at, "seconds": r.seconds, "gpu_curve": r.gpu_curve,
                  "reached_gpu_s": r.reached_gpu_s} for r in runs],
    }, indent=1))  # fmt: skip
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
