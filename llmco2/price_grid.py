"""One deployment's predictions on a grid of request lengths, read off by interpolation.

A deployment (a model on a GPU setup, a batch size, bit widths) prices a request from its prompt
and generated tokens alone, and smoothly: the predictor is asked once on a grid of log-spaced
lengths (``GRID_POINTS`` a side; prefill and decode energy, latency and the interval's bounds, each
on both axes since the learned correction of one phase sees the other's length) and a request is
read off it by bilinear interpolation in log lengths and log values. Cells whose request does not
fit the GPUs hold NaN, and a request next to one is not read off the grid (nor one outside it): the
caller predicts those exactly. ``experiments/benchmarks/predict_log_speed.py`` measures the
interpolation's error against exact predictions; the tests bound it.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from featurize import Architecture, Precision
    from featurize.gpus import Gpu
    from llmco2.api import Predictor

__all__ = [
    "GRID_POINTS", "VALUE_COLUMNS", "PriceGrid", "PricedLengths", "grid_axis", "price_exactly",
    "price_lengths",
]  # fmt: skip

#: Grid points along each length axis.
GRID_POINTS = 48
#: What each grid cell holds, in this order.
VALUE_COLUMNS = ("prefill_j", "decode_j", "latency_s", "total_low_j", "total_high_j")


def grid_axis(low: int, high: int, points: int = GRID_POINTS) -> np.ndarray:
    """Log-spaced whole lengths from ``low`` to ``high``, both ends exact."""
    if low >= high:
        return np.array([low], dtype=np.int64)
    axis = np.unique(np.round(np.geomspace(low, high, points)).astype(np.int64))
    axis[0], axis[-1] = low, high
    return np.unique(axis)


def _bracket(axis: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each value: its lower grid index, upper index and the weight of the upper one."""
    if len(axis) == 1:
        zeros = np.zeros(len(values), dtype=np.int64)
        return zeros, zeros, np.zeros(len(values))
    logs = np.log(axis.astype(np.float64))
    upper = np.clip(np.searchsorted(axis, values), 1, len(axis) - 1)
    lower = upper - 1
    weight = (np.log(values) - logs[lower]) / (logs[upper] - logs[lower])
    return lower, upper, np.clip(weight, 0.0, 1.0)


def _blend(
    c00: np.ndarray, c01: np.ndarray, c10: np.ndarray, c11: np.ndarray, wp: Any, wg: Any
) -> np.ndarray:
    """Bilinear interpolation of log values between four grid corners, back to values."""
    low = (1 - wg) * c00 + wg * c01
    high = (1 - wg) * c10 + wg * c11
    return np.asarray(np.exp((1 - wp) * low + wp * high))


def _bracket_one(axis: list[int], logs: list[float], value: int) -> tuple[int, int, float]:
    """:func:`_bracket` of one value."""
    if len(axis) == 1:
        return 0, 0, 0.0
    upper = min(max(bisect.bisect_left(axis, value), 1), len(axis) - 1)
    lower = upper - 1
    weight = (math.log(value) - logs[lower]) / (logs[upper] - logs[lower])
    return lower, upper, min(max(weight, 0.0), 1.0)


@dataclass(frozen=True)
class PricedLengths:
    """Requests of one deployment priced.

    Attributes:
        values: ``(N, len(VALUE_COLUMNS))``; NaN rows for requests that do not fit, NaN bounds
            without an interval.
        extrapolated: Whether the predictor extrapolates to this deployment.
        interval_level: The interval's nominal coverage (None without one).
        latency_source: Where the latencies come from.
    """

    values: np.ndarray
    extrapolated: bool
    interval_level: float | None
    latency_source: str


def price_exactly(
    predictor: Predictor,
    architecture: Architecture,
    gpu: Gpu,
    tp: int,
    batch: int,
    precision: Precision,
    prompts: np.ndarray,
    gens: np.ndarray,
) -> PricedLengths:
    """Each distinct (prompt, generated) pair asked once, in one predictor call.

    The context window is not checked here: callers check their requests against it.
    """
    from llmco2.api import price_points, request_points

    pairs, rows = np.unique(np.stack([prompts, gens], axis=1), axis=0, return_inverse=True)
    points, fitting = [], []
    for k, (prompt, gen) in enumerate(pairs):
        found, _ = request_points(
            architecture, None, gpu, [tp], batch, int(prompt), int(gen), precision
        )
        if found:
            points.extend(found)
            fitting.append(k)
    per_pair = np.full((len(pairs), len(VALUE_COLUMNS)), np.nan)
    answers = price_points(predictor, points, None, 1.0, None) if points else []
    for k, a in zip(fitting, answers, strict=True):
        per_pair[k] = [
            a.prefill_j, a.decode_j, a.latency_s,
            np.nan if a.total_low_j is None else a.total_low_j,
            np.nan if a.total_high_j is None else a.total_high_j,
        ]  # fmt: skip
    first = answers[0] if answers else None
    return PricedLengths(
        values=per_pair[rows.ravel()],
        extrapolated=bool(first.extrapolated) if first else False,
        interval_level=first.interval_level if first else None,
        latency_source=first.latency_source if first else "",
    )


def price_lengths(
    predictor: Predictor,
    architecture: Architecture,
    gpu: Gpu,
    tp: int,
    batch: int,
    precision: Precision,
    prompts: np.ndarray,
    gens: np.ndarray,
    grid: PriceGrid | None,
) -> PricedLengths:
    """Requests of one deployment: off ``grid`` where it answers, the others exactly."""
    if grid is None:
        return price_exactly(predictor, architecture, gpu, tp, batch, precision, prompts, gens)
    values, answered = grid.read(prompts, gens)
    rest = np.flatnonzero(~answered)
    if len(rest):
        exact = price_exactly(
            predictor, architecture, gpu, tp, batch, precision, prompts[rest], gens[rest]
        )
        values[rest] = exact.values
    return PricedLengths(values, grid.extrapolated, grid.interval_level, grid.latency_source)


@dataclass(frozen=True)
class PriceGrid:
    """Predictions of one deployment at every pair of grid lengths.

    Attributes:
        prompt_axis: Prompt lengths of the grid (ascending).
        gen_axis: Generated lengths of the grid (ascending).
        values: ``(prompts, gens, len(VALUE_COLUMNS))``; NaN where the request does not fit,
            and in the interval's columns where the predictor has no interval.
        extrapolated: Whether the predictor extrapolates to this deployment.
        interval_level: The interval's nominal coverage (None without one).
        latency_source: Where its latencies come from.
    """

    prompt_axis: np.ndarray
    gen_axis: np.ndarray
    values: np.ndarray
    extrapolated: bool
    interval_level: float | None
    latency_source: str

    @classmethod
    def build(
        cls,
        predictor: Predictor,
        architecture: Architecture,
        gpu: Gpu,
        tp: int,
        batch: int,
        precision: Precision,
        prompt_axis: np.ndarray,
        gen_axis: np.ndarray,
    ) -> PriceGrid:
        """Ask ``predictor`` at every grid pair (in one call); pairs that do not fit are NaN."""
        prompts, gens = (a.ravel() for a in np.meshgrid(prompt_axis, gen_axis, indexing="ij"))
        exact = price_exactly(predictor, architecture, gpu, tp, batch, precision, prompts, gens)
        return cls(
            prompt_axis=prompt_axis,
            gen_axis=gen_axis,
            values=exact.values.reshape(len(prompt_axis), len(gen_axis), len(VALUE_COLUMNS)),
            extrapolated=exact.extrapolated,
            interval_level=exact.interval_level,
            latency_source=exact.latency_source,
        )

    @functools.cached_property
    def log_values(self) -> np.ndarray:
        """The logarithms of :attr:`values` (interpolation runs in log values)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.log(np.maximum(self.values, 1e-300)))

    @functools.cached_property
    def _axes(self) -> tuple[list[int], list[float], list[int], list[float]]:
        """Both axes and their logarithms as Python lists (one request's read-off)."""
        prompts, gens = self.prompt_axis.tolist(), self.gen_axis.tolist()
        return prompts, [math.log(v) for v in prompts], gens, [math.log(v) for v in gens]

    def read_one(self, prompt: int, gen: int) -> np.ndarray | None:
        """One request's interpolated values (as :meth:`read`), None where the grid cannot."""
        prompts, prompt_logs, gens, gen_logs = self._axes
        if not (prompts[0] <= prompt <= prompts[-1] and gens[0] <= gen <= gens[-1]):
            return None
        i0, i1, wp = _bracket_one(prompts, prompt_logs, prompt)
        j0, j1, wg = _bracket_one(gens, gen_logs, gen)
        logs = self.log_values
        c00, c01, c10, c11 = logs[i0, j0], logs[i0, j1], logs[i1, j0], logs[i1, j1]
        if not np.isfinite(np.concatenate([c00[:3], c01[:3], c10[:3], c11[:3]])).all():
            return None
        return _blend(c00, c01, c10, c11, wp, wg)

    def read(self, prompts: np.ndarray, gens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated values of requests, and which requests the grid answers.

        Args:
            prompts: Prompt lengths (≥ 1).
            gens: Generated lengths (≥ 1).

        Returns:
            ``(values, answered)``: ``(N, len(VALUE_COLUMNS))`` (rows not answered hold NaN) and
            a boolean mask of the rows inside the grid whose four neighbouring cells fit.
        """
        p0, p1, wp = _bracket(self.prompt_axis, prompts)
        g0, g1, wg = _bracket(self.gen_axis, gens)
        inside = (
            (prompts >= self.prompt_axis[0]) & (prompts <= self.prompt_axis[-1])
            & (gens >= self.gen_axis[0]) & (gens <= self.gen_axis[-1])
        )  # fmt: skip
        logs = self.log_values
        corners = [logs[p0, g0], logs[p0, g1], logs[p1, g0], logs[p1, g1]]
        energy = slice(0, 3)  # the interval's bounds may be NaN throughout
        answered = inside & np.all([np.isfinite(c[:, energy]).all(axis=1) for c in corners], axis=0)
        values = _blend(corners[0], corners[1], corners[2], corners[3], wp[:, None], wg[:, None])
        values[~answered] = np.nan
        return values, answered
