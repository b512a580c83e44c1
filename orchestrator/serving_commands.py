"""``llmco2 predict --concurrency/--rate/--sweep-concurrency``: a deployment's energy per request.

Replays a load drawn from a traffic trace on the serving twin of the predictor
(:func:`gnn.serving.predict_serving`) and reports, per load, the mean energy per request at steady
state with its interval, per output and input token, throughput, time-to-first-token and
time-per-output-token percentiles, and the request's operational and embodied CO2eq (the latter
charging each request the GPU time the deployment spends per request at that throughput).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurize import GpuSetup, InferencePoint, InferenceRequest, Precision, check_fits
from featurize.architecture import Architecture
from featurize.priors import read_trace
from gnn.carbon import CarbonIntensity, operational_co2_g
from gnn.embodied import EmbodiedAssumptions, embodied_co2_g
from gnn.predict import EnergyPredictor
from gnn.serving import DEFAULT_MAX_NUM_SEQS, predict_serving
from llmco2.errors import InvalidRequestError
from workers.serving import TRACE_CLASSES, ServingLoad

#: Requests a closed loop at concurrency C replays unless told (at least this many, or 8 × C).
DEFAULT_CLOSED_REQUESTS = 200
#: Requests an open loop replays unless told.
DEFAULT_OPEN_REQUESTS = 400


@dataclass(frozen=True)
class ServingRequestSpec:
    """What the user asked of a serving prediction (validated by :func:`serving_loads`)."""

    concurrency: int | None
    rate_per_s: float | None
    sweep: str | None
    trace: str
    requests: int | None
    max_num_seqs: int | None
    max_context: int

    @property
    def sequences(self) -> int:
        """Sequences the engine runs at once: as given, or vLLM's serving default."""
        return self.max_num_seqs if self.max_num_seqs is not None else DEFAULT_MAX_NUM_SEQS

    @property
    def asked(self) -> bool:
        """Whether any serving option was given."""
        return self.concurrency is not None or self.rate_per_s is not None or bool(self.sweep)


def serving_loads(spec: ServingRequestSpec) -> list[ServingLoad]:
    """The loads to replay, checked before any work.

    Raises:
        InvalidRequestError: Conflicting or out-of-range options.
        ConfigFileError: A trace file that cannot be used.
    """
    given = sum(x is not None for x in (spec.concurrency, spec.rate_per_s)) + bool(spec.sweep)
    if given != 1:
        raise InvalidRequestError(
            "give one of --concurrency, --rate and --sweep-concurrency for a serving prediction"
        )
    if spec.sequences < 1:
        raise InvalidRequestError(f"--max-num-seqs must be ≥ 1, got {spec.max_num_seqs}")
    if spec.trace not in TRACE_CLASSES:
        read_trace(Path(spec.trace))
    if spec.sweep:
        try:
            levels = [int(c) for c in spec.sweep.split(",")]
        except ValueError:
            raise InvalidRequestError(
                f"--sweep-concurrency takes levels like 1,4,16,64, got {spec.sweep!r}"
            ) from None
    else:
        levels = [spec.concurrency] if spec.concurrency is not None else []
    if spec.rate_per_s is not None:
        requests = spec.requests if spec.requests is not None else DEFAULT_OPEN_REQUESTS
        return [
            ServingLoad(
                spec.trace, requests, rate_per_s=spec.rate_per_s, max_context=spec.max_context
            )
        ]
    return [
        ServingLoad(
            spec.trace,
            spec.requests if spec.requests is not None else max(DEFAULT_CLOSED_REQUESTS, 8 * c),
            concurrency=c,
            max_context=spec.max_context,
        )
        for c in levels
    ]


def predict_deployment(
    predictor: EnergyPredictor,
    architecture: Architecture,
    setup: GpuSetup,
    precision: Precision,
    loads: list[ServingLoad],
    max_num_seqs: int,
    grid: CarbonIntensity | None,
    pue: float,
    embodied: EmbodiedAssumptions,
) -> list[dict[str, Any]]:
    """One JSON-ready prediction per load.

    Raises:
        InfeasibleConfigError: The model does not fit the GPUs.
        InvalidRequestError: A load without a steady state.
    """
    check_fits(InferencePoint(architecture, InferenceRequest(1, 16, 2), setup, precision))
    rows = []
    for load in loads:
        prediction = predict_serving(predictor, architecture, setup, load, precision, max_num_seqs)
        result = prediction.result
        per_request = float(result.per_request_j or 0.0)
        seconds_per_request = 1.0 / result.requests_per_s if result.requests_per_s > 0 else 0.0
        rows.append(
            {
                "concurrency": load.concurrency,
                "rate_per_s": load.rate_per_s,
                "requests": load.requests,
                "per_request_j": per_request,
                "per_request_low_j": prediction.per_request_low_j,
                "per_request_high_j": prediction.per_request_high_j,
                "interval_level": prediction.interval_level,
                "per_output_token_j": result.per_output_token_j,
                "per_input_token_j": result.per_input_token_j,
                "requests_per_s": result.requests_per_s,
                "output_tokens_per_s": result.output_tokens_per_s,
                "mean_running": result.mean_running,
                "ttft_s": result.ttft_s,
                "tpot_s": result.tpot_s,
                "operational_g": operational_co2_g(per_request, grid, pue)
                if grid is not None
                else None,
                "embodied_g": embodied_co2_g(setup.gpu, setup.count, seconds_per_request, embodied),
            }
        )
    return rows


def serving_correction_note() -> str:
    """Which serving measurements corrected the twin, in words."""
    from gnn.serving_correction import default_serving_correction

    provenance = default_serving_correction().provenance
    if not provenance:
        return "uncorrected by serving measurements"
    return (
        f"corrected on {provenance['loads']} measured serving loads of"
        f" {len(provenance['shapes'])} shapes ({', '.join(provenance['gpus'])})"
    )


def plot_serving(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Energy per request and time per output token against concurrency, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [r["concurrency"] for r in rows]
    fig, (energy_ax, latency_ax) = plt.subplots(1, 2, figsize=(10, 4))
    energy_ax.plot(levels, [r["per_request_j"] for r in rows], marker="o")
    if all(r["per_request_low_j"] is not None for r in rows):
        energy_ax.fill_between(
            levels,
            [r["per_request_low_j"] for r in rows],
            [r["per_request_high_j"] for r in rows],
            alpha=0.25,
            label=f"{rows[0]['interval_level']:.0%} interval",
        )
        energy_ax.legend()
    energy_ax.set_xscale("log", base=2)
    energy_ax.set_xlabel("concurrency")
    energy_ax.set_ylabel("energy per request (J)")
    latency_ax.plot(
        [1000 * r["tpot_s"].get("p50", 0.0) for r in rows],
        [r["per_request_j"] for r in rows],
        marker="o",
    )
    for row in rows:
        latency_ax.annotate(
            f"C={row['concurrency']}",
            (1000 * row["tpot_s"].get("p50", 0.0), row["per_request_j"]),
        )
    latency_ax.set_xlabel("time per output token, median (ms)")
    latency_ax.set_ylabel("energy per request (J)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = [
    "ServingRequestSpec",
    "plot_serving",
    "predict_deployment",
    "serving_correction_note",
    "serving_loads",
]
