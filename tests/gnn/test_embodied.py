from __future__ import annotations

import pytest

from featurize import get_gpu
from gnn.embodied import (
    SECONDS_PER_YEAR,
    EmbodiedAssumptions,
    carbon_per_area,
    embodied_co2_g,
    gpu_manufacturing_kg,
)
from llmco2.errors import InvalidRequestError


def test_carbon_per_area_follows_llmcarbons_table_and_interpolates() -> None:
    assert carbon_per_area(4) == pytest.approx(1.8)
    assert carbon_per_area(7) == pytest.approx(1.6)
    assert carbon_per_area(12) == pytest.approx(1.2)
    assert carbon_per_area(16) == pytest.approx(1.0)
    assert carbon_per_area(5) == pytest.approx(1.8 - 0.2 / 3)
    assert carbon_per_area(3) == pytest.approx(1.8)  # clamped below the table
    assert carbon_per_area(28) == pytest.approx(1.0)  # and above it


def test_h200_manufacturing_carbon_by_part() -> None:
    parts = gpu_manufacturing_kg(get_gpu("H200"), EmbodiedAssumptions())
    assert parts.die_kg == pytest.approx(8.14 * (1.8 - 0.2 / 3))
    assert parts.hbm_kg == pytest.approx(141 * 0.4)
    # LLMCarbon's server (one 147 mm² 16 nm CPU, 256 GB DRAM, 32 TB SSD) shared by 8 GPUs.
    assert parts.host_kg == pytest.approx((1.47 + 256 * 0.4 + 32_000 * 0.024) / 8)


def test_embodied_scales_with_time_gpus_and_lifetime() -> None:
    gpu = get_gpu("H200")
    per_second = (
        gpu_manufacturing_kg(gpu, EmbodiedAssumptions()).total_kg * 1000 / (5 * SECONDS_PER_YEAR)
    )
    assert embodied_co2_g(gpu, 1, 1.0) == pytest.approx(per_second)
    assert embodied_co2_g(gpu, 4, 2.5) == pytest.approx(10 * per_second)
    assert embodied_co2_g(gpu, 1, 1.0, EmbodiedAssumptions(lifetime_years=2.5)) == pytest.approx(
        2 * per_second
    )
    assert embodied_co2_g(gpu, 2, 0.0) == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: embodied_co2_g(get_gpu("H200"), 1, -1.0),
        lambda: embodied_co2_g(get_gpu("H200"), 0, 1.0),
        lambda: EmbodiedAssumptions(lifetime_years=0),
        lambda: EmbodiedAssumptions(gpus_per_host=0),
    ],
)
def test_bad_embodied_inputs_are_refused(call: object) -> None:
    with pytest.raises(InvalidRequestError):
        call()  # type: ignore[operator]
