"""``predict``: a request, or a serving deployment at a load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llmco2.cli.options import (
    BatchOption,
    ExpertBitsOption,
    GenOption,
    GpuFileOption,
    GpuOption,
    IntensityOption,
    JsonFlag,
    ModelArg,
    PromptOption,
    PueOption,
    RegionOption,
    TpOption,
    gpu_catalog,
    seconds,
    stdout,
)

app = typer.Typer()


@app.command()
def predict(
    model: ModelArg,
    gpu: GpuOption = "H100-SXM",
    tp: TpOption = 1,
    batch: BatchOption = 1,
    prompt: PromptOption = 1024,
    gen: GenOption = 128,
    region: RegionOption = None,
    intensity: IntensityOption = None,
    pue: PueOption = 1.0,
    model_path: Annotated[
        Path | None, typer.Option("--model", help="Predictor checkpoint (default: shipped).")
    ] = None,
    sweep_gpus: Annotated[str | None, typer.Option(help="Compare GPU counts, e.g. 1,2,4.")] = None,
    lifetime_years: Annotated[
        float, typer.Option(help="Hardware lifetime for embodied carbon (years).")
    ] = 5.0,
    plot: Annotated[
        Path | None, typer.Option(help="With --sweep-gpus: write a PNG of energy and carbon.")
    ] = None,
    wbits: Annotated[int, typer.Option(help="Weight bits (16, 8, 4).")] = 16,
    abits: Annotated[int, typer.Option(help="Activation bits (16, 8).")] = 16,
    kvbits: Annotated[int, typer.Option(help="KV-cache bits (16, 8, 4).")] = 16,
    expert_wbits: ExpertBitsOption = None,
    gpu_file: GpuFileOption = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Serving: requests in flight (closed loop); energy per request."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Serving: Poisson arrivals per second (open loop).")
    ] = None,
    sweep_concurrency: Annotated[
        str | None, typer.Option(help="Serving: compare concurrencies, e.g. 1,4,16,64.")
    ] = None,
    trace: Annotated[
        str,
        typer.Option(help="Serving: request lengths from conv, code or a CSV file of requests."),
    ] = "conv",
    requests: Annotated[
        int | None,
        typer.Option(help="Serving: requests replayed (default max(200, 8 × C); 400 at a rate)."),
    ] = None,
    max_num_seqs: Annotated[
        int | None,
        typer.Option(help="Serving: sequences the engine runs at once (default: vLLM's, 256)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Predict energy per phase, latency, operational and embodied CO2eq of a request.

    With --concurrency, --rate or --sweep-concurrency: the mean energy per request of a serving
    deployment at that load (continuous batching, requests drawn from --trace), at steady state.
    """
    import dataclasses

    from featurize import InferenceRequest, Precision, resolve_model
    from gnn.embodied import EmbodiedAssumptions
    from gnn.predict import load_predictor, predict_energy
    from llmco2.api import carbon_grid, request_points
    from llmco2.errors import InfeasibleConfigError, InvalidRequestError
    from orchestrator.serving_commands import ServingRequestSpec, serving_loads
    from workers.serving import DEFAULT_MAX_CONTEXT

    embodied = EmbodiedAssumptions(lifetime_years=lifetime_years)
    serving = ServingRequestSpec(
        concurrency, rate, sweep_concurrency, trace, requests, max_num_seqs, DEFAULT_MAX_CONTEXT
    )
    if serving.asked and sweep_gpus:
        raise InvalidRequestError(
            "--sweep-gpus compares single requests: leave out the serving load"
        )
    if serving.asked and batch != 1:
        raise InvalidRequestError(
            "--batch is for a single request: a serving load's requests come from --trace"
        )
    if plot is not None and not sweep_gpus and not sweep_concurrency:
        raise InvalidRequestError(
            "--plot draws a sweep: add --sweep-gpus (e.g. 1,2,4) or --sweep-concurrency"
        )
    if plot is not None:
        if plot.expanduser().is_dir():
            raise InvalidRequestError(f"--plot {str(plot)!r} is a folder; give a .png file")
        if plot.suffix.lower() != ".png":
            raise InvalidRequestError(f"--plot {str(plot)!r}: the plot is a PNG, name it *.png")
        if not plot.expanduser().absolute().parent.is_dir():
            raise InvalidRequestError(f"folder of --plot {str(plot)!r} does not exist")
    grid = carbon_grid(region, intensity, pue)
    request = InferenceRequest(batch, prompt, gen)
    precision = Precision(wbits, abits, kvbits, expert_wbits)
    architecture, window = resolve_model(model)
    if serving.asked:
        # Requests drawn from a trace fit the model's context window as well.
        limit = min(window or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
        _predict_serving(
            serving_loads(dataclasses.replace(serving, max_context=limit)),
            serving, architecture, gpu_catalog(gpu_file).get(gpu), tp, precision, model_path,
            grid, pue, embodied, plot, as_json,
        )  # fmt: skip
        return
    target = gpu_catalog(gpu_file).get(gpu)
    try:
        counts = [int(c) for c in sweep_gpus.split(",")] if sweep_gpus else [tp]
    except ValueError:
        raise InvalidRequestError(
            f"--sweep-gpus takes counts like 1,2,4, got {sweep_gpus!r}"
        ) from None
    points, unfit = request_points(
        architecture, window, target, counts, batch, prompt, gen, precision
    )
    if unfit and not sweep_gpus:
        raise InfeasibleConfigError(unfit[0][1])
    skipped = [{"gpus": count, "reason": reason} for count, reason in unfit]
    if not points:
        raise InfeasibleConfigError(f"no GPU count of {counts} can run {architecture.name}")
    predictor = load_predictor(model_path)
    results = predict_energy(predictor, points, grid, pue, embodied)
    trained_on = ", ".join(predictor.metadata.get("setups", [])) or "unknown"
    if plot is not None:
        _plot_sweep(
            results, plot, f"{architecture.name}: batch {batch}, prompt {prompt}, gen {gen}"
        )
    if as_json:
        stdout.print_json(
            json.dumps(
                {
                    "model": architecture.name,
                    "request": dataclasses.asdict(request),
                    "gpu": target.id,
                    "units": {
                        "energy": "J",
                        "latency": "s",
                        "operational_co2": "gCO2eq",
                        "embodied_co2": "gCO2eq",
                    },
                    "assumptions": {
                        "pue": pue,
                        "carbon_intensity_g_per_kwh": grid.g_per_kwh if grid else None,
                        "carbon_intensity_source": grid.source if grid else None,
                        "predictor_trained_on": trained_on,
                        "latency": results[0].latency_source,
                        "interval": (
                            f"{results[0].interval_level:.0%} interval, conformal on "
                            "held-out architecture shapes"
                            if results[0].interval_level is not None
                            else None
                        ),
                        "embodied": embodied.to_dict(),
                    },
                    "predictions": [dataclasses.asdict(r) for r in results],
                    "skipped": skipped,
                }
            )
        )
        return
    table = Table(title=f"{architecture.name}: batch {batch}, prompt {prompt}, generate {gen}")
    level = results[0].interval_level
    interval_header = f"total {level:.0%} interval" if level is not None else "interval"
    headers = ("GPUs", "prefill", "decode", "total", interval_header, "latency",
               "operational CO2eq", "embodied CO2eq", "note")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header in ("GPUs", "note") else "right")
    for r in results:
        table.add_row(
            f"{r.gpus}×{r.gpu}",
            f"{r.prefill_j:.1f} J",
            f"{r.decode_j:.1f} J",
            f"{r.total_j:.1f} J",
            f"{r.total_low_j:.1f}-{r.total_high_j:.1f} J"
            if r.total_low_j is not None and r.total_high_j is not None
            else "-",
            seconds(r.latency_s),
            f"{r.operational_g:.3g} g" if r.operational_g is not None else "-",
            f"{r.embodied_g:.3g} g",
            "extrapolated" if r.extrapolated else "",
        )
    for skip in skipped:
        table.add_row(f"{skip['gpus']}×{target.id}", *["-"] * 7, "does not fit")
    stdout.print(table)
    if grid is not None:
        stdout.print(f"grid: {grid.g_per_kwh:.0f} gCO2eq/kWh ({grid.source}), PUE {pue:g}")
    else:
        stdout.print("no --region or --intensity given: operational CO2eq not computed")
    stdout.print(
        f"predictor trained on {trained_on}; 'extrapolated' rows lie outside that data "
        f"(GPU setup, model family or a GPU type without measurements). Latency from the "
        f"{results[0].latency_source}; embodied CO2eq by LLMCarbon's method over a "
        f"{lifetime_years:g}-year lifetime (die, HBM, host share)."
    )
    if plot is not None:
        stdout.print(f"plot: {plot}")


def _predict_serving(
    loads: list[Any],
    spec: Any,
    architecture: Any,
    gpu: Any,
    tp: int,
    precision: Any,
    model_path: Path | None,
    grid: Any,
    pue: float,
    embodied: Any,
    plot: Path | None,
    as_json: bool,
) -> None:
    """The serving half of ``predict``: one row per load."""
    from featurize import GpuSetup
    from gnn.predict import load_predictor
    from orchestrator.serving_commands import (
        plot_serving,
        predict_deployment,
        serving_correction_note,
    )

    setup = GpuSetup(gpu, tp)
    predictor = load_predictor(model_path)
    rows = predict_deployment(
        predictor, architecture, setup, precision, loads, spec.sequences, grid, pue, embodied
    )
    trained_on = ", ".join(predictor.metadata.get("setups", [])) or "unknown"
    title = f"{architecture.name} on {tp}×{gpu.id}, {spec.trace} trace"
    serving_note = serving_correction_note()
    if plot is not None:
        plot_serving(rows, plot, title)
    if as_json:
        stdout.print_json(
            json.dumps(
                {
                    "model": architecture.name,
                    "gpu": gpu.id,
                    "gpus": tp,
                    "trace": spec.trace,
                    "units": {
                        "energy": "J per request",
                        "latency": "s",
                        "operational_co2": "gCO2eq per request",
                        "embodied_co2": "gCO2eq per request",
                    },
                    "assumptions": {
                        "max_num_seqs": spec.sequences,
                        "pue": pue,
                        "carbon_intensity_g_per_kwh": grid.g_per_kwh if grid else None,
                        "carbon_intensity_source": grid.source if grid else None,
                        "predictor_trained_on": trained_on,
                        "serving_correction": serving_note,
                        "steady_state": "closed loop: from C running to fewer than C; open "
                        "loop: the arrivals after the first 10 %",
                        "embodied": embodied.to_dict(),
                    },
                    "predictions": rows,
                }
            )
        )
        return
    table = Table(title=title)
    level = rows[0]["interval_level"]
    headers = ("load", "J / request", f"{level:.0%} interval" if level else "interval",
               "mJ / output token", "requests/s", "TTFT p50", "TPOT p50",
               "operational CO2eq", "embodied CO2eq")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header == "load" else "right")
    for r in rows:
        low, high = r["per_request_low_j"], r["per_request_high_j"]
        table.add_row(
            f"C={r['concurrency']}" if r["concurrency"] is not None else f"{r['rate_per_s']:g}/s",
            f"{r['per_request_j']:.1f}",
            f"{low:.1f}-{high:.1f}" if low is not None and high is not None else "-",
            f"{1000 * (r['per_output_token_j'] or 0):.0f}",
            f"{r['requests_per_s']:.2f}",
            seconds(r["ttft_s"].get("p50", 0.0)),
            seconds(r["tpot_s"].get("p50", 0.0)),
            f"{r['operational_g']:.3g} g" if r["operational_g"] is not None else "-",
            f"{r['embodied_g']:.3g} g",
        )
    stdout.print(table)
    stdout.print(
        f"continuous batching of {loads[0].requests} requests from the {spec.trace} trace per "
        f"load, up to {spec.sequences} at once, replayed on the step costs of the predictor "
        f"trained on {trained_on}, {serving_note}; energy per request at steady state."
    )
    if plot is not None:
        stdout.print(f"plot: {plot}")


def _plot_sweep(results: list[Any], path: Path, title: str) -> None:
    """Energy and carbon per GPU count (the paper's Figures 9-11 view) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.gpus}×{r.gpu}" for r in results]
    fig, (energy_ax, carbon_ax) = plt.subplots(1, 2, figsize=(10, 4))
    energy_ax.bar(labels, [r.prefill_j for r in results], label="prefill")
    energy_ax.bar(
        labels, [r.decode_j for r in results], bottom=[r.prefill_j for r in results],
        label="decode",
    )  # fmt: skip
    energy_ax.set_ylabel("energy per request (J)")
    energy_ax.legend()
    embodied = [r.embodied_g for r in results]
    carbon_ax.bar(labels, embodied, label="embodied")
    if all(r.operational_g is not None for r in results):
        carbon_ax.bar(
            labels, [r.operational_g for r in results], bottom=embodied, label="operational"
        )
    carbon_ax.set_ylabel("gCO2eq per request")
    carbon_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
