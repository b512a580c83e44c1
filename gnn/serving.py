"""Energy per request of a serving deployment, predicted by replaying its load on a twin.

The llmco2 predictor's costs of uniform batches (energy and latency of prefill and decode, physics
times learned correction) tabulated on a grid (:class:`workers.serving_twin.StepCosts`) drive a
continuous-batching scheduler (:class:`workers.serving_twin.ServingTwin`), its steps corrected by
what real serving measurements taught (:mod:`gnn.serving_correction`); the load is replayed on
it by the same driver and attributed by the same steady-state window as a real serving
measurement (:func:`workers.serving.serve`, :func:`workers.serving.summarise`), so a prediction
and a measurement are the same quantity. Against 84 real serving loads on an H200 (six shapes,
C = 1…64 and open loops, both traces; ``experiments/evaluation/serving_accuracy.py``), the
uncorrected twin is 7.6 % off on energy per request, and 5.7 % with a correction fitted without
the load's shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featurize.architecture import Architecture
from featurize.point import GpuSetup, InferencePoint
from featurize.precision import Precision
from featurize.request import InferenceRequest
from gnn.hybrid import HybridPredictor
from gnn.predict import EnergyPredictor
from gnn.serving_correction import ServingCorrection, default_serving_correction
from llmco2.errors import InvalidRequestError
from workers.serving import ServingLoad, ServingResult
from workers.serving_twin import DEFAULT_MAX_NUM_SEQS, ServingTwin, StepCosts

__all__ = [
    "DEFAULT_MAX_NUM_SEQS",
    "LoadPlan",
    "ServingPrediction",
    "plan_loads",
    "predict_serving",
    "step_costs",
]


def step_costs(
    predictor: EnergyPredictor,
    architecture: Architecture,
    setup: GpuSetup,
    precision: Precision,
    max_num_seqs: int,
    max_context: int,
) -> StepCosts:
    """A predictor's step costs of one configuration.

    Raises:
        InvalidRequestError: ``max_num_seqs`` or ``max_context`` out of range.
    """
    probe = InferencePoint(architecture, InferenceRequest(1, 16, 2), setup, precision)
    return StepCosts.tabulate(
        lambda points: _costs(predictor, points),
        _idle_power_w(predictor, probe),
        architecture,
        setup,
        precision,
        max_num_seqs,
        max_context,
    )


def _costs(
    predictor: EnergyPredictor, points: Sequence[InferencePoint]
) -> tuple[np.ndarray, np.ndarray]:
    """Energy ``(N, 2)`` and seconds ``(N, 2)`` of prefill and decode."""
    if isinstance(predictor, HybridPredictor):
        detailed = predictor.predict_detailed(points)
        return detailed.energy_j[:, :2], detailed.latency_s
    from workers.engines.simulated import twin_costs_of

    energy = predictor.predict_points(points)[:, :2]
    return energy, twin_costs_of(points)[:, :2]


def _idle_power_w(predictor: EnergyPredictor, point: InferencePoint) -> float:
    """Power of the GPUs of ``point``'s setup while they wait: the model's static power."""
    setup = point.setup
    if isinstance(predictor, HybridPredictor):
        from gnn.physics import PhysicsInputs

        scale = PhysicsInputs.of_points([point]).scale_of(setup.gpu.id)
        static = predictor.physics.coefficients(setup.gpu.id, scale).energy.static_w
        return float(static) * setup.count
    from workers.engines.simulated import TwinParameters

    return TwinParameters.for_gpu(setup.gpu).idle_power_w * setup.count


@dataclass(frozen=True)
class ServingPrediction:
    """A predicted serving run: the same figures a measurement gives, and an interval.

    Attributes:
        result: Energy per request at steady state, throughput, latency percentiles.
        per_request_low_j: Lower bound of ``per_request_j`` (None without an interval).
        per_request_high_j: Upper bound.
        interval_level: Nominal coverage of that interval (the single-request interval's).
    """

    result: ServingResult
    per_request_low_j: float | None = None
    per_request_high_j: float | None = None
    interval_level: float | None = None


def predict_serving(
    predictor: EnergyPredictor,
    architecture: Architecture,
    setup: GpuSetup,
    load: ServingLoad,
    precision: Precision | None = None,
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
    correction: ServingCorrection | None = None,
) -> ServingPrediction:
    """Replay ``load`` on the twin of one deployment and attribute its energy per request.

    Args:
        predictor: What uniform batches cost.
        architecture: The model shape.
        setup: GPU type and count.
        load: What is served.
        precision: Bit widths (bf16 by default).
        max_num_seqs: Sequences the engine runs at once.
        correction: What serving measurements taught the twin, and the interval they give
            (the shipped :func:`gnn.serving_correction.default_serving_correction` by default;
            ``ServingCorrection()`` for the uncorrected twin). Without its interval, the
            single-request predictor's interval of total energy is used.

    Raises:
        InvalidRequestError: Bad limits (:func:`step_costs`) or a load without a steady state.
        ConfigFileError: An unreadable trace file.
    """
    precision = precision if precision is not None else Precision()
    correction = correction if correction is not None else default_serving_correction()
    InferencePoint(architecture, InferenceRequest(1, 16, 2), setup, precision).validate()
    costs = step_costs(predictor, architecture, setup, precision, max_num_seqs, load.max_context)
    result = ServingTwin(costs, max_num_seqs, correction.step).replay(load)
    assert result.per_request_j is not None  # replay() refuses a load without a steady state
    bounds = correction.interval_of(result.per_request_j)
    if bounds is not None:
        return ServingPrediction(result, *bounds, correction.interval_level)
    interval = predictor.interval if isinstance(predictor, HybridPredictor) else None
    if interval is None:
        return ServingPrediction(result)
    return ServingPrediction(
        result,
        result.per_request_j * float(np.exp(interval.low[2])),
        result.per_request_j * float(np.exp(interval.high[2])),
        interval.level,
    )


@dataclass(frozen=True)
class LoadPlan:
    """Which loads to measure a deployment at, and how many requests each needs.

    Attributes:
        trace: ``conv``, ``code`` or a trace file.
        concurrency: Closed loops at these concurrencies.
        rates: Open loops at these arrival rates (per second).
        rate_fractions: Open loops at these fractions of the throughput predicted at the
            largest concurrency (one fraction is one utilisation, whatever the shape).
        requests_per_slot: A closed loop at C serves at least this many times C requests.
        min_requests: Least requests of a closed loop.
        min_window_s: Seconds the steady state of a closed loop should last, at the predicted
            throughput (short requests at low concurrency finish a dozen in under a second).
        max_requests: Most requests of any loop.
        open_requests: Least requests of an open loop.
        open_window_s: Seconds of arrivals of an open loop.
        max_context: Most prompt plus output tokens of a drawn request.
        seed: Seed of lengths and arrivals.
        max_num_seqs: Sequences the engine runs at once.
    """

    trace: str
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    rates: tuple[float, ...] = ()
    rate_fractions: tuple[float, ...] = ()
    requests_per_slot: int = 4
    min_requests: int = 12
    min_window_s: float = 5.0
    max_requests: int = 2000
    open_requests: int = 40
    open_window_s: float = 12.0
    max_context: int = 4096
    seed: int = 0
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS


def plan_loads(
    predictor: EnergyPredictor,
    architecture: Architecture,
    setup: GpuSetup,
    plan: LoadPlan,
    precision: Precision | None = None,
) -> list[ServingLoad]:
    """The loads of ``plan``, sized by what :func:`predict_serving` expects of them.

    A closed loop at C serves enough requests for ``min_window_s`` of steady state at its
    predicted throughput (its ramp-up and drain are about C requests' worth each), within
    ``requests_per_slot`` × C and ``max_requests``; where the prediction fails, the least.

    Raises:
        InvalidRequestError: A load no run can measure (fewer than 2C requests allowed).
    """

    def throughput(load: ServingLoad) -> float | None:
        try:
            prediction = predict_serving(
                predictor, architecture, setup, load, precision, plan.max_num_seqs
            )
        except InvalidRequestError:
            return None
        return prediction.result.requests_per_s

    closed: list[ServingLoad] = []
    for c in plan.concurrency:
        least = min(max(plan.min_requests, plan.requests_per_slot * c), plan.max_requests)
        probe = ServingLoad(
            plan.trace, least, concurrency=c, max_context=plan.max_context, seed=plan.seed
        )
        rate = throughput(probe)
        wanted = least if rate is None else math.ceil(plan.min_window_s * rate) + c
        closed.append(
            dataclasses.replace(probe, requests=min(max(least, wanted), plan.max_requests))
        )
    rates = list(plan.rates)
    if plan.rate_fractions and closed:
        largest = max(range(len(closed)), key=lambda i: plan.concurrency[i])
        capacity = throughput(closed[largest])
        if capacity is not None:
            rates += [round(f * capacity, 2) for f in plan.rate_fractions]
    opened = [
        ServingLoad(
            plan.trace,
            min(plan.max_requests, max(plan.open_requests, math.ceil(r * plan.open_window_s))),
            rate_per_s=r,
            max_context=plan.max_context,
            seed=plan.seed,
        )
        for r in rates
        if r > 0
    ]
    return closed + opened
