"""Derive gnn/data/carbon_intensity.json: grid carbon intensity per country and per cloud region.

Sources (as packaged by CodeCarbon, MIT License, © 2019 Mila, BCG Gamma, CometML, Haverford
College; © 2023 Code Carbon NGO): per-country carbon intensity of electricity from Our World in
Data / Ember (``global_energy_mix.json``), per-region figures published by Google Cloud, AWS and
Azure (``impact_with_aws_azure_*.csv``). Only the figures llmco2 needs are kept. Re-run with:

    python experiments/carbon/derive_carbon_table.py ../shared/data/carbon
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "gnn" / "data" / "carbon_intensity.json"


def main(folder: Path) -> None:
    mix = json.loads((folder / "global_energy_mix.json").read_text())
    countries = {
        iso: {
            "name": entry["country_name"],
            "g_per_kwh": round(float(entry["carbon_intensity"]), 3),
            "year": entry["year"],
        }
        for iso, entry in sorted(mix.items())
        if entry.get("carbon_intensity") is not None
    }
    regions = {}
    csv_file = next(folder.glob("impact_with_aws_azure_*.csv"))
    with csv_file.open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            regions[f"{row['provider']}:{row['region']}"] = {
                "g_per_kwh": float(row["impact"]),
                "country": row["countryIsoCode"],
                "location": ", ".join(
                    p for p in (row["city"], row["state"], row["country_name"]) if p
                ),
            }
    document = {
        "_about": (
            "Grid carbon intensity in gCO2eq/kWh. Countries (ISO 3166-1 alpha-3): Our World in "
            "Data / Ember, latest year per country. Cloud regions: figures published by Google "
            "Cloud, AWS and Azure. Both as packaged by CodeCarbon (MIT License, (c) 2019 Mila, "
            "BCG Gamma, CometML, Haverford College; (c) 2023 Code Carbon NGO). Derived by "
            "experiments/carbon/derive_carbon_table.py."
        ),
        "countries": countries,
        "regions": dict(sorted(regions.items())),
    }
    OUT.write_text(json.dumps(document, indent=0, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(countries)} countries, {len(regions)} cloud regions")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/carbon"))
