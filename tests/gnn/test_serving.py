"""The serving prediction: a continuous-batching twin on the predictor's step costs."""

from __future__ import annotations

import numpy as np
import pytest

from featurize import resolve_architecture
from featurize.gpus import GpuCatalog
from featurize.point import GpuSetup, InferencePoint
from featurize.precision import Precision
from featurize.request import InferenceRequest
from gnn.predict import default_predictor
from gnn.serving import predict_serving, step_costs
from gnn.serving_correction import ServingCorrection
from llmco2.errors import InvalidRequestError
from workers.serving import ENERGY_READ_PERIOD_S, ServingLoad, serve, steady_window
from workers.serving_twin import ServingTwin, StepCosts


@pytest.fixture(scope="module")
def setup() -> GpuSetup:
    return GpuSetup(GpuCatalog.default().get("H200"), 1)


@pytest.fixture(scope="module")
def costs(setup: GpuSetup) -> StepCosts:
    return step_costs(
        default_predictor(), resolve_architecture("llama3.1-8b"), setup, Precision(), 64, 4096
    )


def test_decode_steps_cost_more_with_more_sequences_and_longer_contexts(costs: StepCosts) -> None:
    one, eight = costs.decode(1, 1000)[1], costs.decode(8, 1000)[1]
    assert one < eight < 8 * one  # the weights are read once for the whole batch
    assert costs.decode(8, 300)[1] < eight < costs.decode(8, 3000)[1]
    # Off the grid the table holds its edge values rather than extrapolating.
    assert costs.decode(500, 1000) == costs.decode(64, 1000)


def test_decode_costs_are_the_table_at_grid_points_and_linear_between(costs: StepCosts) -> None:
    b, n = int(costs.batch[3]), float(costs.context[4])
    assert costs.decode(b, n) == pytest.approx((costs.decode_s[3, 4], costs.decode_j[3, 4]))
    b_next = int(costs.batch[4])
    midway = costs.decode((b + b_next) / 2, n)
    assert midway == pytest.approx(
        ((costs.decode_s[3, 4] + costs.decode_s[4, 4]) / 2,
         (costs.decode_j[3, 4] + costs.decode_j[4, 4]) / 2)
    )  # fmt: skip
    # Linear in the log of the context.
    n_next = float(costs.context[5])
    geometric = costs.decode(b, float(np.sqrt(n * n_next)))
    assert geometric[1] == pytest.approx((costs.decode_j[3, 4] + costs.decode_j[3, 5]) / 2)


def test_a_prefill_joining_another_costs_less_than_one_alone(costs: StepCosts) -> None:
    alone, joining = costs.prefill(2000), costs.prefill(2000, joining=True)
    assert 0 < joining[1] < alone[1] and 0 < joining[0] < alone[0]
    assert costs.prefill(200)[1] < alone[1]


def test_one_request_at_a_time_costs_what_the_predictor_says_of_it(setup: GpuSetup) -> None:
    predictor = default_predictor()
    architecture = resolve_architecture("llama3.1-8b")
    load = ServingLoad("conv", 12, concurrency=1, max_context=4096, seed=5)
    predicted = predict_serving(
        predictor, architecture, setup, load, max_num_seqs=64, correction=ServingCorrection()
    )
    points = [
        InferencePoint(architecture, InferenceRequest(1, p, g), setup) for p, g in load.lengths()
    ]
    alone = predictor.predict_points(points)[:, 2]
    # At C = 1 the uncorrected twin's steady state is the whole run: the mean of the requests'
    # own energies, up to the table's interpolation.
    assert predicted.result.per_request_j == pytest.approx(float(np.mean(alone)), rel=0.05)
    assert predicted.result.mean_running == pytest.approx(1.0)


def test_energy_per_request_falls_as_concurrency_rises(setup: GpuSetup) -> None:
    predictor = default_predictor()
    architecture = resolve_architecture("llama3.1-8b")
    per_request = [
        float(
            predict_serving(
                predictor, architecture, setup, ServingLoad("conv", max(24, 4 * c), concurrency=c)
            ).result.per_request_j
            or 0.0
        )
        for c in (1, 4, 16, 64)
    ]
    assert per_request == sorted(per_request, reverse=True)
    assert per_request[0] > 3 * per_request[-1]  # batching shares the weight reads


def test_the_twin_queues_beyond_its_sequence_limit_and_counts_every_joule(
    costs: StepCosts,
) -> None:
    twin = ServingTwin(costs, max_num_seqs=4)
    load = ServingLoad("code", 40, concurrency=10, max_context=4096, seed=1)
    requests, energy = serve(twin, load, twin.clock, twin.energy_j)
    assert energy is not None and energy.joules[-1] == pytest.approx(twin.joules)
    # Read between steps, not after each of them: the first and last readings are the run's ends.
    gaps = np.diff(energy.times_s[:-1])
    assert len(gaps) > 0 and gaps.min() >= ENERGY_READ_PERIOD_S
    assert energy.times_s[0] == 0.0 and energy.times_s[-1] == pytest.approx(twin.clock.now())
    assert all(r.finish_s is not None for r in requests)
    # Ten requests in flight, at most four running: the rest wait for their first token.
    first = sorted(r.first_token_s for r in requests[:10] if r.first_token_s is not None)
    assert first[3] < first[4]
    assert steady_window(requests, 10) is not None


def test_an_open_loop_pays_static_power_while_it_waits(costs: StepCosts) -> None:
    twin = ServingTwin(costs, max_num_seqs=64)
    load = ServingLoad("conv", 20, rate_per_s=0.05, max_context=4096, seed=2)  # 20 s apart
    requests, energy = serve(twin, load, twin.clock, twin.energy_j)
    assert energy is not None
    busy = sum(float(r.finish_s or 0.0) - r.arrival_s for r in requests)
    idle = twin.clock.now() - busy
    assert idle > 0.5 * twin.clock.now()
    assert twin.joules > idle * costs.idle_w


def test_a_deployment_without_room_for_a_sequence_is_refused(setup: GpuSetup) -> None:
    with pytest.raises(InvalidRequestError, match="max_num_seqs"):
        predict_serving(
            default_predictor(),
            resolve_architecture("llama3.1-8b"),
            setup,
            ServingLoad("conv", 8, concurrency=2),
            max_num_seqs=0,
        )


def test_planned_closed_loops_last_long_enough_and_open_loops_follow_the_capacity(
    setup: GpuSetup,
) -> None:
    from gnn.serving import LoadPlan, plan_loads

    predictor = default_predictor()
    architecture = resolve_architecture("llama3.1-8b")
    plan = LoadPlan("code", concurrency=(1, 16), rates=(2.0,), rate_fractions=(0.5,),
                    min_window_s=4.0, max_num_seqs=32)  # fmt: skip
    loads = plan_loads(predictor, architecture, setup, plan)
    assert [(ld.concurrency, ld.rate_per_s) for ld in loads[:3]] == [(1, None), (16, None),
                                                                       (None, 2.0)]  # fmt: skip
    for load in loads[:2]:
        assert load.concurrency is not None
        assert load.requests >= max(plan.min_requests, plan.requests_per_slot * load.concurrency)
        result = predict_serving(predictor, architecture, setup, load, max_num_seqs=32).result
        assert result.window_s is not None and result.window_s >= 0.8 * plan.min_window_s
    capacity = predict_serving(predictor, architecture, setup, loads[1], max_num_seqs=32)
    assert loads[3].rate_per_s == pytest.approx(0.5 * capacity.result.requests_per_s, abs=0.01)
    # Never more than max_requests, however long the window asked for.
    long = LoadPlan("code", concurrency=(4,), min_window_s=600.0, max_requests=50)
    capped = plan_loads(predictor, architecture, setup, long)
    assert [ld.requests for ld in capped] == [50]
