"""Operational carbon of an inference: energy × PUE × grid carbon intensity (the paper's Eq. 1).

Carbon intensity comes from the project's table (``gnn/data/carbon_intensity.json``, derived with
attribution from Our World in Data / Ember and the cloud providers' published figures, as packaged
by CodeCarbon) by ISO 3166-1 alpha-3 country code (``FRA``) or cloud region (``gcp:europe-west1``,
or ``europe-west1`` where the name is unique), or is given by the user as a number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from llmco2.errors import InvalidRequestError, UnknownRegionError

JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class CarbonIntensity:
    """Grid carbon intensity with where it came from."""

    g_per_kwh: float
    source: str

    def __post_init__(self) -> None:
        if not 0 <= self.g_per_kwh < math.inf:
            raise InvalidRequestError(
                f"carbon intensity must be a finite number ≥ 0 gCO2eq/kWh, got {self.g_per_kwh}"
            )


@cache
def _table() -> dict[str, Any]:
    text = resources.files("gnn").joinpath("data/carbon_intensity.json").read_text("utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def region_names() -> list[str]:
    """Every country code and cloud region the table knows."""
    table = _table()
    return [*table["countries"], *table["regions"]]


def lookup_intensity(region: str) -> CarbonIntensity:
    """Carbon intensity of a country (ISO alpha-3) or cloud region.

    Raises:
        UnknownRegionError: With close matches, when the table has no such place.
    """
    table = _table()
    key = region.strip()
    country = table["countries"].get(key.upper())
    if country is not None:
        return CarbonIntensity(
            country["g_per_kwh"], f"{country['name']} {country['year']} (Our World in Data/Ember)"
        )
    cloud = table["regions"].get(key.lower())
    if cloud is None:
        matches = [name for name in table["regions"] if name.split(":", 1)[1] == key.lower()]
        if len(matches) == 1:
            key, cloud = matches[0], table["regions"][matches[0]]
    else:
        key = key.lower()
    if cloud is None:
        raise UnknownRegionError(region, region_names())
    return CarbonIntensity(cloud["g_per_kwh"], f"{key} ({cloud['location']}, provider figure)")


def check_pue(pue: float) -> float:
    """``pue`` if it is a power usage effectiveness (finite, ≥ 1).

    Raises:
        InvalidRequestError: PUE below 1 or not finite.
    """
    if not 1.0 <= pue < math.inf:
        raise InvalidRequestError(
            f"PUE must be a finite number ≥ 1 (total facility ÷ IT energy), got {pue}"
        )
    return pue


def operational_co2_g(energy_j: float, intensity: CarbonIntensity, pue: float = 1.0) -> float:
    """Grams of CO2eq for ``energy_j`` of IT energy in a data centre of the given PUE.

    Raises:
        InvalidRequestError: PUE below 1 or not finite, or negative energy.
    """
    check_pue(pue)
    if energy_j < 0:
        raise InvalidRequestError(f"energy must be ≥ 0 J, got {energy_j}")
    return energy_j / JOULES_PER_KWH * pue * intensity.g_per_kwh
