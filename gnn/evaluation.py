"""Cross-validated comparison of the predictors (the paper's Tables 3-5, on our data).

Splits:

- ``shape``: leave one architecture shape out (every distinct architecture, perturbed shapes
  included, held out in turn): the primary figure, since `predict` is asked about models nobody
  measured; with ``shape_folds`` K below the number of shapes, K folds of whole shapes instead
  (each holds out about 1/K of them: harder, since each fit sees fewer shapes, and cheaper);
- ``family``: leave one model family out (train on the others, test on it);
- ``tp``: leave one GPU count out;
- ``size``: size extrapolation, two folds: train on shapes of at most :data:`SIZE_SPLIT_B`
  billion parameters and test on the larger ones, and the reverse;
- ``gpu``: leave one GPU type out (when the data has two types);
- ``random``: K folds of random held-out configurations (each configuration is one point:
  architecture, request and GPU setup), the paper's split, for comparison.

Every point is predicted at most once per split (by the fold that held it out). Scores are MAPE
and EBA(5/10/30 %) of total energy, overall, per family, per GPU setup, per size band, per TP
degree and per shape, of each phase for the methods that model phases, and of latency for those
that model it. The coverage of a conformal interval is scored too: each fold's interval comes
from the held-out errors of the *other* folds (cross-conformal), so it says how well an interval
calibrated on held-out groups covers a new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gnn.baselines import HybridMethod, make_methods, training_groups
from gnn.dataset import LabelledData
from gnn.hybrid import INTERVAL_LEVEL, group_calibrated_level
from gnn.metrics import Scores, scores_by_group
from gnn.names import DEFAULT_METHODS, METHOD_NAMES, SPLIT_NAMES
from gnn.noise_floor import MachineSpread, machine_spread
from gnn.training import TrainConfig
from llmco2.errors import InvalidRequestError

#: Size extrapolation splits the shapes here (billions of parameters).
SIZE_SPLIT_B = 9.0
#: Size bands of the per-size breakdown (upper bounds, billions of parameters).
SIZE_BANDS: tuple[tuple[str, float], ...] = (("<2B", 2.0), ("2-9B", 9.0), (">9B", float("inf")))


def size_band(billions: float) -> str:
    """The label of the size band of a model with ``billions`` parameters."""
    return next(label for label, upper in SIZE_BANDS if billions <= upper)


@dataclass(frozen=True)
class Fold:
    """One training/test partition."""

    label: str
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class Split:
    """A way of holding data out: its folds, or why it cannot be run on this data."""

    name: str
    folds: list[Fold]
    skipped: str | None = None


def _leave_one_out(name: str, groups: np.ndarray, what: str) -> Split:
    values = sorted(set(groups.tolist()))
    if len(values) < 2:
        return Split(name, [], f"the data has one {what} ({values[0]}): nothing to hold out")
    everything = np.arange(len(groups))
    folds = [
        Fold(str(v), everything[groups != v], everything[groups == v])
        for v in values
        if (groups != v).sum() >= 4
    ]
    return Split(name, folds)


def grouped_shape_folds(data: LabelledData, shape_folds: int | None) -> int | None:
    """The folds of whole shapes the shape split makes; None when it holds one shape per fold."""
    shapes = len(set(data.model_name.tolist()))
    return shape_folds if shape_folds is not None and shape_folds < shapes else None


def _shape_split(data: LabelledData, shape_folds: int | None, seed: int) -> Split:
    shape_folds = grouped_shape_folds(data, shape_folds)
    if shape_folds is None:
        return _leave_one_out("shape", data.model_name, "architecture shape")
    shapes = sorted(set(data.model_name.tolist()))
    order = np.random.default_rng(seed).permutation(len(shapes))
    everything = np.arange(len(data))
    folds = []
    for number, members in enumerate(np.array_split(order, shape_folds)):
        held = np.isin(data.model_name, [shapes[i] for i in members])
        folds.append(
            Fold(f"fold {number + 1} ({len(members)} shapes)", everything[~held], everything[held])
        )
    return Split("shape", folds)


def _size_split(data: LabelledData, billions: float) -> Split:
    small = data.size_b <= billions
    if small.all() or not small.any():
        side = "at most" if small.all() else "over"
        return Split("size", [], f"every shape has {side} {billions:g}B parameters")
    everything = np.arange(len(data))
    limit = f"{billions:g}B"
    return Split(
        "size",
        [
            Fold(f"<={limit} -> >{limit}", everything[small], everything[~small]),
            Fold(f">{limit} -> <={limit}", everything[~small], everything[small]),
        ],
    )


def make_splits(
    data: LabelledData,
    names: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    size_split_b: float = SIZE_SPLIT_B,
    shape_folds: int | None = None,
) -> list[Split]:
    """The requested splits of ``data``.

    Args:
        data: The labelled dataset.
        names: Split names (see :data:`SPLIT_NAMES`).
        folds: Folds of the random split.
        seed: Seed of the random split and of the shapes' grouping.
        size_split_b: Where the size split cuts (billions of parameters).
        shape_folds: Folds of whole shapes for the shape split (None: one shape per fold).

    Raises:
        InvalidRequestError: An unknown split name, fewer than 2 folds or shape folds.
    """
    unknown = [n for n in names if n not in SPLIT_NAMES]
    if unknown:
        raise InvalidRequestError(
            f"unknown split {unknown[0]!r}; choose from {', '.join(SPLIT_NAMES)}"
        )
    if folds < 2:
        raise InvalidRequestError(f"--folds must be ≥ 2, got {folds}")
    if shape_folds is not None and shape_folds < 2:
        raise InvalidRequestError(f"--shape-folds must be ≥ 2, got {shape_folds}")
    result = []
    for name in names:
        if name == "shape":
            result.append(_shape_split(data, shape_folds, seed))
        elif name == "size":
            result.append(_size_split(data, size_split_b))
        elif name == "random":
            order = np.random.default_rng(seed).permutation(len(data))
            parts = np.array_split(order, min(folds, len(data)))
            result.append(
                Split(
                    name,
                    [
                        Fold(f"fold {i + 1}", np.sort(np.setdiff1d(order, test)), np.sort(test))
                        for i, test in enumerate(parts)
                    ],
                )
            )
        elif name == "family":
            result.append(_leave_one_out(name, data.family, "model family"))
        elif name == "gpu":
            result.append(_leave_one_out(name, data.gpu_type, "GPU type"))
        else:
            result.append(_leave_one_out(name, data.gpu_count.astype(str), "GPU count"))
    return result


@dataclass
class MethodScores:
    """One method's predictions and scores on one split."""

    method: str
    split: str
    predicted: np.ndarray  # (N, 3) prefill, decode, total; NaN where not predicted
    overall: Scores
    by_family: dict[str, Scores]
    by_setup: dict[str, Scores]
    by_fold: dict[str, Scores]
    prefill: Scores | None
    decode: Scores | None
    by_size: dict[str, Scores] = field(default_factory=dict)
    by_tp: dict[str, Scores] = field(default_factory=dict)
    by_shape: dict[str, Scores] = field(default_factory=dict)
    latency: Scores | None = None
    #: Share of points inside the cross-conformal interval (:data:`INTERVAL_LEVEL`), in %.
    coverage: float | None = None
    #: CPU-seconds of fitting and predicting, summed over the split's folds (a method that
    #: reuses another's fit counts its predictions only).
    fit_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The headline figures: MAPE, EBA5/10/30, points, coverage, latency MAPE."""
        s = self.overall
        return {
            "mape": s.mape,
            "eba5": s.eba5,
            "eba10": s.eba10,
            "eba30": s.eba30,
            "n": s.count,
            "coverage": self.coverage,
            "latency_mape": self.latency.mape if self.latency else None,
            "prefill_mape": self.prefill.mape if self.prefill else None,
            "decode_mape": self.decode.mape if self.decode else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (predictions included, as lists)."""
        groups = ("by_family", "by_setup", "by_fold", "by_size", "by_tp", "by_shape")
        return {
            "method": self.method,
            "split": self.split,
            "overall": asdict(self.overall),
            **{g: {k: asdict(v) for k, v in getattr(self, g).items()} for g in groups},
            "prefill": asdict(self.prefill) if self.prefill else None,
            "decode": asdict(self.decode) if self.decode else None,
            "latency": asdict(self.latency) if self.latency else None,
            "coverage": self.coverage,
            "fit_seconds": self.fit_seconds,
            "predicted_total_j": [None if np.isnan(v) else float(v) for v in self.predicted[:, 2]],
        }


@dataclass
class EvaluationResult:
    """Every method on every split, with what was skipped and why."""

    source: str
    simulated: bool
    points: int
    methods: list[str]
    train_config: TrainConfig
    results: list[MethodScores] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    measured_total_j: np.ndarray | None = None
    #: Per point, for the worst-point tables: shape, family, TP, size (B), prefill share.
    point_info: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    #: Folds of whole shapes of the shape split (None: one shape per fold).
    shape_folds: int | None = None
    #: The GPU-to-GPU spread of one configuration (:mod:`gnn.noise_floor`) and the method whose
    #: random-split residuals measured it; None where no configuration ran on two GPUs.
    noise_floor: tuple[str, MachineSpread] | None = None

    def get(self, method: str, split: str) -> MethodScores | None:
        """The scores of one method on one split, if it ran."""
        return next((r for r in self.results if r.method == method and r.split == split), None)

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{split: {method: {"mape", "eba10", "n", ...}}}``."""
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for r in self.results:
            result.setdefault(r.split, {})[r.method] = r.summary()
        return result

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result."""
        return {
            "source": self.source,
            "simulated": self.simulated,
            "points": self.points,
            "methods": self.methods,
            "train_config": asdict(self.train_config),
            "skipped_splits": self.skipped,
            "seconds": self.seconds,
            "shape_folds": self.shape_folds,
            "noise_floor": {"method": self.noise_floor[0], **self.noise_floor[1].to_dict()}
            if self.noise_floor is not None
            else None,
            "summary": self.summary(),
            "measured_total_j": [float(v) for v in self.measured_total_j]
            if self.measured_total_j is not None
            else [],
            "point_info": self.point_info,
            "results": [r.to_dict() for r in self.results],
        }


def _phase_scores(predicted: np.ndarray, measured: np.ndarray) -> Scores | None:
    mask = np.isfinite(predicted) & (measured > 0)
    return Scores.of(predicted[mask], measured[mask]) if mask.any() else None


def cross_conformal_coverage(
    predicted: np.ndarray, measured: np.ndarray, folds: Sequence[Fold], level: float
) -> float | None:
    """Share (%) of points inside an interval made from the other folds' held-out errors.

    For each fold, the interval is made as `predict`'s is (:class:`gnn.hybrid.Interval`), but
    from the points the *other* folds held out only: the quantiles of ``log(measured /
    predicted)`` at the level :func:`gnn.hybrid.group_calibrated_level` finds among those folds.
    The coverage is the share of this fold's points whose own log ratio falls inside it.
    """
    ratios = np.log(measured / predicted)
    fold_of = np.full(len(measured), -1)
    for number, fold in enumerate(folds):
        fold_of[fold.test] = number
    inside, counted = 0, 0
    for fold in folds:
        others = np.setdiff1d(np.concatenate([f.test for f in folds]), fold.test)
        others = others[np.isfinite(ratios[others])]
        mine = fold.test[np.isfinite(ratios[fold.test])]
        if len(others) < 5 or not len(mine):
            continue
        calibrated = group_calibrated_level(ratios[others], fold_of[others], level)
        low, high = np.quantile(ratios[others], [(1 - calibrated) / 2, (1 + calibrated) / 2])
        inside += int(((ratios[mine] >= low) & (ratios[mine] <= high)).sum())
        counted += len(mine)
    return 100.0 * inside / counted if counted else None


@dataclass(frozen=True)
class _FitTask:
    split: str
    #: Methods that train the same networks: the first fits, the others reuse its fit.
    methods: tuple[str, ...]
    fold: str
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class _FitOutput:
    method: str
    predicted: np.ndarray
    latency: np.ndarray | None
    seconds: float


_WORKER_DATA: dict[str, Any] = {}


def _init_worker(data: LabelledData, config: TrainConfig) -> None:
    import torch

    torch.set_num_threads(1)  # one core per fold: the folds are the parallelism
    _WORKER_DATA["data"], _WORKER_DATA["config"] = data, config


def _run_task(task: _FitTask) -> tuple[_FitTask, list[_FitOutput]]:
    data: LabelledData = _WORKER_DATA["data"]
    fitted = None
    outputs = []
    for method in make_methods(task.methods, _WORKER_DATA["config"]):
        started = time.perf_counter()
        if fitted is None:
            method.fit(data, task.train)
            fitted = method
        else:
            assert isinstance(method, HybridMethod) and isinstance(fitted, HybridMethod)
            method.adopt(fitted)
        predicted = method.predict(data, task.test)
        latency = None
        if hasattr(method, "predict_latency"):
            latency = method.predict_latency(data, task.test)
        outputs.append(_FitOutput(method.name, predicted, latency, time.perf_counter() - started))
    return task, outputs


def _score(
    data: LabelledData,
    split: Split,
    method: str,
    predicted: np.ndarray,
    latency: np.ndarray | None,
) -> MethodScores:
    covered = ~np.isnan(predicted[:, 2])
    total, measured = predicted[covered, 2], data.total_j[covered]

    def by(labels: np.ndarray) -> dict[str, Scores]:
        groups = scores_by_group(total, measured, labels[covered].tolist())
        groups.pop("all")
        return groups

    latency_scores = None
    if latency is not None:
        measured_latency = data.phase_latency_s.sum(axis=1)
        ok = np.isfinite(latency.sum(axis=1)) & np.isfinite(measured_latency)
        ok &= measured_latency > 0
        if ok.any():
            latency_scores = Scores.of(latency.sum(axis=1)[ok], measured_latency[ok])
    by_fold = {
        f.label: Scores.of(predicted[f.test, 2], data.total_j[f.test])
        for f in split.folds
        if len(f.test)
    }
    return MethodScores(
        method=method,
        split=split.name,
        predicted=predicted,
        overall=Scores.of(total, measured),
        by_family=by(data.family),
        by_setup=by(data.setup),
        by_fold=by_fold,
        prefill=_phase_scores(predicted[:, 0], data.prefill_j),
        decode=_phase_scores(predicted[:, 1], data.decode_j),
        by_size=by(np.array([size_band(b) for b in data.size_b])),
        by_tp=by(np.array([f"TP {c}" for c in data.gpu_count])),
        by_shape=by(data.model_name),
        latency=latency_scores,
        coverage=cross_conformal_coverage(
            predicted[:, 2], data.total_j, split.folds, INTERVAL_LEVEL
        ),
    )


def _point_info(data: LabelledData) -> list[dict[str, Any]]:
    return [
        {
            "shape": str(data.model_name[i]),
            "family": str(data.family[i]),
            "tp": int(data.gpu_count[i]),
            "size_b": round(float(data.size_b[i]), 2),
            "batch": int(p.request.batch_size),
            "prompt": int(p.request.prompt_tokens),
            "generated": int(p.request.generated_tokens),
            "prefill_share": float(data.prefill_j[i] / data.total_j[i]),
        }
        for i, p in enumerate(data.points)
    ]


def evaluate(
    data: LabelledData,
    methods: Sequence[str] = DEFAULT_METHODS,
    splits: Sequence[str] = SPLIT_NAMES,
    *,
    folds: int = 5,
    train_config: TrainConfig | None = None,
    on_fit: Callable[[str, str, str], None] | None = None,
    jobs: int = 1,
    shape_folds: int | None = None,
) -> EvaluationResult:
    """Train and score every method on every split.

    Args:
        data: The labelled dataset.
        methods: Method names (see :data:`gnn.names.METHOD_NAMES`).
        splits: Split names (see :data:`SPLIT_NAMES`).
        folds: Folds of the random split.
        train_config: Training knobs of the GNN methods (seed included).
        on_fit: Called after each fit with (split, method, fold label), for progress bars.
        jobs: Fits run at once, each in its own process on one core (1: in this process).
        shape_folds: Folds of whole shapes for the shape split (None: leave one shape out).

    Raises:
        InvalidRequestError: Unknown method or split names, or jobs < 1.
    """
    started = time.perf_counter()
    config = train_config or TrainConfig()
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        raise InvalidRequestError(
            f"unknown method {unknown[0]!r}; choose from {', '.join(METHOD_NAMES)}"
        )
    if jobs < 1:
        raise InvalidRequestError(f"--jobs must be ≥ 1, got {jobs}")
    result = EvaluationResult(
        data.source, data.simulated, len(data), list(methods), config,
        measured_total_j=data.total_j, point_info=_point_info(data),
    )  # fmt: skip
    result.shape_folds = grouped_shape_folds(data, shape_folds)
    made = make_splits(data, splits, folds, config.seed, shape_folds=shape_folds)
    tasks: list[_FitTask] = []
    groups = training_groups(methods)
    for split in made:
        if split.skipped is not None:
            result.skipped[split.name] = split.skipped
            continue
        for group in groups:
            tasks.extend(_FitTask(split.name, group, f.label, f.train, f.test) for f in split.folds)
    predicted = {(s.name, m): np.full((len(data), 3), np.nan) for s in made for m in methods}
    latency: dict[tuple[str, str], np.ndarray] = {}
    fit_seconds: dict[tuple[str, str], float] = dict.fromkeys(predicted, 0.0)

    def collect(task: _FitTask, outputs: list[_FitOutput]) -> None:
        for output in outputs:
            key = (task.split, output.method)
            predicted[key][task.test] = output.predicted
            fit_seconds[key] += output.seconds
            if output.latency is not None:
                latency.setdefault(key, np.full((len(data), 2), np.nan))
                latency[key][task.test] = output.latency
            if on_fit is not None:
                on_fit(task.split, output.method, task.fold)

    if jobs == 1:
        _WORKER_DATA.update(data=data, config=config)
        for task in tasks:
            collect(*_run_task(task))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_init_worker, initargs=(data, config)
        ) as pool:
            # The slowest fits first, so that the last ones do not run alone.
            cheap = ("llmcarbon", "physics", "deepen-rf")
            order = sorted(tasks, key=lambda t: (t.methods[0] in cheap, -len(t.train)))
            for future in as_completed([pool.submit(_run_task, t) for t in order]):
                collect(*future.result())
    for split in made:
        if split.skipped is not None:
            continue
        for method_name in methods:
            scored = _score(
                data,
                split,
                method_name,
                predicted[(split.name, method_name)],
                latency.get((split.name, method_name)),
            )
            scored.fit_seconds = fit_seconds[(split.name, method_name)]
            result.results.append(scored)
    result.noise_floor = measured_noise_floor(data, result)
    result.seconds = time.perf_counter() - started
    return result


def measured_noise_floor(
    data: LabelledData, result: EvaluationResult
) -> tuple[str, MachineSpread] | None:
    """The GPU-to-GPU spread, measured through the best method's random-split residuals.

    The best method's (lowest random-split MAPE) residuals carry the least model error, so they
    give the tightest estimate (:func:`gnn.noise_floor.machine_spread`). None without the random
    split, without recorded GPUs, or when no configuration ran on two GPUs.
    """
    runs = [r for r in result.results if r.split == "random" and r.overall.count]
    if not runs or data.machine is None:
        return None
    best = min(runs, key=lambda r: r.overall.mape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log(data.total_j / best.predicted[:, 2])
    spread = machine_spread(data.machine, data.configuration, ratios)
    return None if spread is None else (best.method, spread)


def count_fits(
    data: LabelledData,
    methods: Sequence[str],
    splits: Sequence[str],
    folds: int,
    shape_folds: int | None = None,
) -> int:
    """How many trainings :func:`evaluate` will run (for a progress bar)."""
    made = make_splits(data, splits, folds, shape_folds=shape_folds)
    return sum(len(s.folds) for s in made) * len(methods)
