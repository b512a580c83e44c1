"""Build a simulated campaign for evaluating the predictors on the digital twin.

Samples points over the whole catalog (17 architectures, 6 GPU types, TP 1-4, batch 1-8, Azure
request lengths), keeps those that fit, labels them with the calibrated twin (noise-free costs,
then the twin's own engine-instance and request noise), and stores them as a COMPLETE simulated
campaign in a SQLite file. Evaluate it with:

    python experiments/evaluation/twin_campaign.py --points 500 --db /tmp/twin-eval.db
    llmco2 evaluate --db sqlite:////tmp/twin-eval.db --campaign twin-eval --include-simulated \
        --out experiments/reports/twin-eval
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from featurize import GpuSetup, InferencePoint, check_fits, get_gpu, resolve_architecture
from featurize.models import catalog_models
from featurize.priors import RequestPrior
from llmco2.errors import InfeasibleConfigError
from storage import CampaignStore, MeasurementRecord, PointSpec
from storage.records import config_key, point_key
from workers.engines.simulated import TwinInputs, TwinParameters, twin_costs

GPUS = ("H100-SXM", "H200", "A100-80GB", "A100-40GB", "L40S", "L4")


def sample(count: int, rng: np.random.Generator) -> list[InferencePoint]:
    models = [m.id for m in catalog_models()]
    prior = RequestPrior.azure()
    points: list[InferencePoint] = []
    while len(points) < count:
        requests = prior.sample(count, rng, batch_sizes=(1, 8), max_context=4096)
        for request in requests:
            point = InferencePoint(
                resolve_architecture(models[int(rng.integers(len(models)))]),
                request,
                GpuSetup(get_gpu(GPUS[int(rng.integers(len(GPUS)))]), int(rng.choice([1, 2, 4]))),
            )
            try:
                check_fits(point)
            except InfeasibleConfigError:
                continue
            points.append(point)
            if len(points) == count:
                break
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--campaign", default="twin-eval")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    points = sample(args.points, rng)
    store = CampaignStore(f"sqlite:///{args.db}")
    campaign = store.create_campaign(args.campaign, {"engine": "simulated", "seed": args.seed})
    store.add_points(campaign.id, [PointSpec(p, "simulated", strategy="random") for p in points])
    instance: dict[str, float] = {}
    labels: dict[str, tuple[float, float, float]] = {}
    for point in points:
        params = TwinParameters.for_gpu(point.setup.gpu)
        cost = twin_costs(TwinInputs.of([point]), params)[0]
        # One engine instance per configuration, one draw per request, as the simulated engine.
        factor = instance.setdefault(
            config_key(point, "simulated"), float(rng.normal(1.0, params.instance_noise))
        ) * float(rng.normal(1.0, params.request_noise))
        labels[point_key(point, "simulated")] = (
            cost[2] * factor,
            cost[3] * factor,
            cost[0] + cost[1],
        )
    for stored in store.claim(campaign.id, "twin-campaign", len(points)):
        prefill, decode, latency = labels[stored.key]
        store.record_result(
            stored.id,
            MeasurementRecord(
                engine_name="simulated", simulated=True, energy_j=prefill + decode,
                prefill_energy_j=prefill, decode_energy_j=decode, latency_s=latency,
            ),
        )  # fmt: skip
    print(f"{args.db}: campaign {args.campaign!r}, {store.status_counts(campaign.id)}")
    store.close()


if __name__ == "__main__":
    main()
