"""The digital twin and the measurement protocol running against its virtual counter."""

from __future__ import annotations

import pytest

from featurize import InferenceRequest, Precision, get_gpu, resolve_architecture
from llmco2.errors import InfeasibleConfigError, MeasurementError
from workers.engines import EngineConfig, RunResult, create_engine
from workers.engines.simulated import SimulatedEngine, TwinParameters, twin_cost
from workers.meter import EnergyMeter
from workers.protocol import MeasurementProtocol, ProtocolSettings


def loaded(model: str = "llama3.1-8b", gpu: str = "H200", tp: int = 1, seed: int = 0,
           params: TwinParameters | None = None) -> SimulatedEngine:  # fmt: skip
    config = EngineConfig(resolve_architecture(model), Precision(), tp, get_gpu(gpu), seed=seed)
    engine = SimulatedEngine(config, params)
    engine.load()
    return engine


def protocol_for(engine: SimulatedEngine, **settings: object) -> MeasurementProtocol:
    source = engine.counter_source()
    assert source is not None
    meter = EnergyMeter(source, engine.clock())
    meter.measure_idle_power(2.0)
    return MeasurementProtocol(engine, ProtocolSettings(**settings), meter)  # type: ignore[arg-type]


def test_protocol_recovers_the_twins_energy() -> None:
    engine = loaded()
    record = protocol_for(engine).measure(InferenceRequest(1, 1024, 128))
    cost = engine.cost(InferenceRequest(1, 1024, 128))
    truth = cost.energy_j * engine._instance_factor
    assert record.energy_j == pytest.approx(truth, rel=0.02)
    assert record.prefill_energy_j == pytest.approx(
        cost.prefill_j * engine._instance_factor, rel=0.05
    )
    assert record.prefill_energy_j is not None and record.decode_energy_j is not None
    assert record.energy_j == pytest.approx(record.prefill_energy_j + record.decode_energy_j)
    assert record.latency_s == pytest.approx(cost.latency_s, rel=0.02)
    assert record.decode_latency_per_token_s == pytest.approx(cost.decode_s / 127, rel=0.05)
    assert record.simulated and record.repeats == 3 and not record.noisy
    assert record.energy_cv is not None and record.energy_cv < 0.03
    assert record.counter_period_s == pytest.approx(0.1, abs=0.002)
    assert record.idle_power_w == pytest.approx(engine.params.idle_power_w, rel=0.02)


def test_windows_last_long_enough_for_the_counter() -> None:
    engine = loaded()
    protocol = protocol_for(engine)
    protocol.measure(InferenceRequest(1, 128, 1))  # a ~20 ms request: many per window
    assert protocol.window_seconds >= 3 * 2.0


def test_windows_span_the_counter_updates_the_settings_ask_for() -> None:
    """``min_periods`` sets the meter's floor: 10 updates of a 100 ms counter are a 1 s window."""
    request = InferenceRequest(1, 128, 1)  # ~20 ms: the window's floor decides its length
    lengths = {}
    for periods in (10, 20):
        protocol = protocol_for(loaded(), min_window_s=0.1, min_periods=periods, windows=2)
        assert protocol.meter is not None and protocol.meter.min_periods == periods
        protocol.measure(request)
        lengths[periods] = protocol.window_seconds / 2
    assert 1.0 <= lengths[10] < 1.2 and 2.0 <= lengths[20] < 2.2
    # Settings changed on a running protocol reach its meter.
    protocol.settings = ProtocolSettings(min_window_s=0.1, min_periods=5, windows=1)
    before = protocol.window_seconds
    protocol.measure(request)
    assert protocol.meter is not None and protocol.meter.min_periods == 5
    assert 0.5 <= protocol.window_seconds - before < 0.7


def test_noisy_points_are_flagged() -> None:
    noisy = TwinParameters(request_noise=0.6)
    record = protocol_for(loaded(params=noisy)).measure(InferenceRequest(1, 512, 32))
    assert record.noisy and record.energy_cv is not None and record.energy_cv > 0.03


def test_the_twin_is_deterministic_per_seed() -> None:
    first = protocol_for(loaded(seed=3)).measure(InferenceRequest(2, 700, 40))
    again = protocol_for(loaded(seed=3)).measure(InferenceRequest(2, 700, 40))
    other = protocol_for(loaded(seed=4)).measure(InferenceRequest(2, 700, 40))
    assert first.energy_j == again.energy_j
    assert first.energy_j != other.energy_j


def test_the_twin_behaves_like_the_paper_says() -> None:
    params = TwinParameters()
    arch = resolve_architecture("llama3.1-8b")
    from featurize import GpuSetup, InferencePoint

    def cost(tp: int, batch: int, prompt: int, gen: int) -> float:
        point = InferencePoint(
            arch, InferenceRequest(batch, prompt, gen), GpuSetup(get_gpu("H200"), tp)
        )
        return twin_cost(point, params).energy_j

    assert cost(1, 1, 1024, 256) > cost(1, 1, 1024, 128) > cost(1, 1, 1024, 1)
    assert cost(2, 1, 64, 129) > cost(1, 1, 64, 129)  # more GPUs than needed cost energy
    fast = twin_cost(
        InferencePoint(arch, InferenceRequest(1, 1024, 128), GpuSetup(get_gpu("H200"), 2)), params
    )
    slow = twin_cost(
        InferencePoint(arch, InferenceRequest(1, 1024, 128), GpuSetup(get_gpu("H200"), 1)), params
    )
    assert fast.latency_s < slow.latency_s


def test_a_model_that_does_not_fit_is_infeasible_at_load() -> None:
    config = EngineConfig(resolve_architecture("llama3.1-70b"), Precision(), 1, get_gpu("L4"))
    with pytest.raises(InfeasibleConfigError, match="GB per GPU"):
        create_engine("simulated", config).load()


class ShortChangingEngine(SimulatedEngine):
    """Returns one token too few: the protocol must notice."""

    def run(self, request: InferenceRequest) -> RunResult:
        result = super().run(request)
        return RunResult(result.latency_s, result.output_tokens - 1)


def test_wrong_output_length_is_a_measurement_error() -> None:
    config = EngineConfig(resolve_architecture("qwen2-0.5b"), Precision(), 1, get_gpu("H200"))
    engine = ShortChangingEngine(config)
    engine.load()
    with pytest.raises(MeasurementError, match="expected 8"):
        protocol_for(engine).measure(InferenceRequest(1, 16, 8))


def test_an_engine_start_holds_the_gpus_for_the_modelled_time() -> None:
    from workers.actors import EngineWorker

    starts = {}
    for model in ("qwen2-0.5b", "llama3.1-8b"):
        starts[model] = loaded(model).clock().now()  # virtual seconds spent loading
        config = EngineConfig(resolve_architecture(model), Precision(), 1, get_gpu("H200"))
        worker = EngineWorker("simulated", config, idle_seconds=1.0)
        # The worker's load time is the modelled start plus its idle-power reading (≥ 1 s,
        # aligned on the counter's updates).
        assert starts[model] + 1.0 <= worker.timing()["load_s"] <= starts[model] + 3.0
        worker.shutdown()
    base = TwinParameters().engine_load_s
    assert base < starts["qwen2-0.5b"] < starts["llama3.1-8b"] < 2 * starts["qwen2-0.5b"]
