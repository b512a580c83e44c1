"""The energy meter on a scripted counter: periods, aligned windows, resets, GPU mapping."""

from __future__ import annotations

import pytest

from llmco2.errors import EngineUnavailableError, MeasurementError
from tests.workers.scripted import FakeClock, ScriptedCounter
from workers.devices import map_visible_to_nvml, visible_device_ids
from workers.meter import EnergyMeter


def test_counter_period_is_inferred() -> None:
    clock = FakeClock()
    meter = EnergyMeter(ScriptedCounter(clock, lambda t: 100.0, period=0.1), clock)
    assert meter.counter_period() == pytest.approx(0.1, abs=0.002)
    assert meter.min_window_s == pytest.approx(2.0, abs=0.05)


def test_aligned_window_measures_the_work_and_removes_the_idle_tail() -> None:
    clock = FakeClock()
    busy = (1.0, 3.5)  # 500 W per GPU during the work, 100 W idle otherwise

    def power(t: float) -> float:
        return 500.0 if busy[0] <= t < busy[1] else 100.0

    meter = EnergyMeter(ScriptedCounter(clock, power, gpus=2), clock)
    meter.idle_power_per_gpu_w = [100.0, 100.0]
    clock.time = 0.95
    meter._period_s = 0.1  # skip inference for this test
    meter.begin_window("work")  # opens at the 1.0 s tick
    assert clock.time == pytest.approx(1.0, abs=0.001)
    clock.sleep(2.5)  # the work: until 3.5 s
    window = meter.end_window("work")
    assert window.duration_s == pytest.approx(2.5, abs=0.001)
    assert window.energy_per_gpu_j == pytest.approx([1250.0, 1250.0], rel=0.01)
    assert window.energy_j == pytest.approx(2500.0, rel=0.01)
    assert window.avg_power_w == pytest.approx(1000.0, rel=0.01)
    assert not window.too_short


def test_gpus_whose_counters_tick_out_of_phase_are_each_aligned() -> None:
    clock = FakeClock()
    busy = (3.0, 5.5)

    def power(t: float) -> float:
        return 500.0 if busy[0] <= t < busy[1] else 100.0

    counter = ScriptedCounter(clock, power, gpus=2, phases=[0.0, 0.05])
    meter = EnergyMeter(counter, clock)
    assert meter.counter_period() == pytest.approx(0.1, abs=0.002)  # not the 50 ms between GPUs
    assert meter.measure_idle_power(0.9) == pytest.approx([100.0, 100.0], rel=0.01)
    clock.time = 2.93
    meter.begin_window("work")  # GPU 0 ticks at 3.0, GPU 1 at 2.95: the work starts at 3.0
    assert clock.time == pytest.approx(3.0, abs=0.001)
    clock.sleep(2.5)
    window = meter.end_window("work")
    assert window.energy_per_gpu_j == pytest.approx([1250.0, 1250.0], rel=0.01)


def test_short_windows_are_flagged() -> None:
    clock = FakeClock()
    meter = EnergyMeter(ScriptedCounter(clock, lambda t: 300.0), clock)
    meter._period_s = 0.1
    meter.begin_window("short")
    clock.sleep(0.5)
    assert meter.end_window("short").too_short


def test_a_counter_reset_fails_the_window() -> None:
    clock = FakeClock()
    meter = EnergyMeter(ScriptedCounter(clock, lambda t: 300.0, reset_at=1.5), clock)
    meter._period_s = 0.1
    clock.time = 1.2
    meter.begin_window("w")
    clock.sleep(1.0)
    with pytest.raises(MeasurementError, match="counter reset"):
        meter.end_window("w")


def test_a_counter_that_never_ticks_is_an_error() -> None:
    clock = FakeClock()
    meter = EnergyMeter(ScriptedCounter(clock, lambda t: 0.0), clock)
    with pytest.raises(MeasurementError, match="did not change"):
        meter.counter_period()


def test_idle_power() -> None:
    clock = FakeClock()
    meter = EnergyMeter(ScriptedCounter(clock, lambda t: 122.0, gpus=2), clock)
    assert meter.measure_idle_power(2.0) == pytest.approx([122.0, 122.0], rel=0.01)


def test_window_bookkeeping_errors() -> None:
    clock = FakeClock()
    meter = EnergyMeter(ScriptedCounter(clock, lambda t: 100.0), clock, align=False)
    with pytest.raises(MeasurementError, match="never opened"):
        meter.end_window("x")
    meter.begin_window("x")
    with pytest.raises(MeasurementError, match="already open"):
        meter.begin_window("x")


UUIDS = ["GPU-aaaa-1111", "GPU-bbbb-2222", "GPU-cccc-3333", "GPU-dddd-4444"]


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, [0, 1, 2, 3]),
        (["2", "3"], [2, 3]),
        (["GPU-cccc-3333", "GPU-aaaa-1111"], [2, 0]),
        (["GPU-bbbb"], [1]),  # unique prefix, as Ray may pass
    ],
)
def test_cuda_visible_devices_map_to_nvml(visible: list[str] | None, expected: list[int]) -> None:
    assert map_visible_to_nvml(visible, UUIDS) == expected


@pytest.mark.parametrize("visible", [["7"], ["GPU-zzzz"], ["GPU-"]])
def test_unknown_visible_devices(visible: list[str]) -> None:
    with pytest.raises(EngineUnavailableError):
        map_visible_to_nvml(visible, UUIDS)


def test_visible_device_ids_parsing() -> None:
    assert visible_device_ids({}) is None
    assert visible_device_ids({"CUDA_VISIBLE_DEVICES": "0, 2,"}) == ["0", "2"]
    assert visible_device_ids({"CUDA_VISIBLE_DEVICES": ""}) == []
