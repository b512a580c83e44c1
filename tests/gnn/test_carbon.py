"""Operational carbon and the carbon-intensity table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gnn.carbon import (
    CarbonIntensity,
    lookup_intensity,
    operational_co2_g,
)
from llmco2.errors import InvalidRequestError, UnknownRegionError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "carbon"


@pytest.mark.skipif(
    not (SHARED / "global_energy_mix.json").is_file(),
    reason="the source data (../shared/data/carbon) sits beside the project checkout only",
)
def test_country_figures_match_the_source() -> None:
    fra = lookup_intensity("fra")
    source = json.loads((SHARED / "global_energy_mix.json").read_text())["FRA"]
    assert fra.g_per_kwh == pytest.approx(source["carbon_intensity"], abs=1e-3)
    assert "France" in fra.source and "Ember" in fra.source


def test_cloud_regions_with_and_without_provider() -> None:
    full = lookup_intensity("gcp:europe-west1")
    assert lookup_intensity("europe-west1") == full
    assert full.g_per_kwh > 0 and "gcp:europe-west1" in full.source


def test_unknown_region_suggests() -> None:
    with pytest.raises(UnknownRegionError, match="did you mean"):
        lookup_intensity("FRX")


def test_operational_carbon_is_energy_times_pue_times_intensity() -> None:
    # 3.6 MJ = 1 kWh; at 400 g/kWh and PUE 1.2: 480 g.
    assert operational_co2_g(3.6e6, CarbonIntensity(400.0, "test"), pue=1.2) == pytest.approx(480.0)
    assert operational_co2_g(300.0, CarbonIntensity(56.0, "test")) == pytest.approx(
        300 / 3.6e6 * 56.0
    )


@pytest.mark.parametrize("pue", [0.9, float("nan"), float("inf")])
def test_pue_below_one_is_refused(pue: float) -> None:
    with pytest.raises(InvalidRequestError, match="PUE"):
        operational_co2_g(1.0, CarbonIntensity(100.0, "test"), pue=pue)


@pytest.mark.parametrize("intensity", [-1.0, float("inf"), float("nan")])
def test_negative_or_infinite_intensity_is_refused(intensity: float) -> None:
    with pytest.raises(InvalidRequestError, match="carbon intensity"):
        CarbonIntensity(intensity, "user")
