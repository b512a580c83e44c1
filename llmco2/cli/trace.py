"""`llmco2 predict-trace`: every request of a log priced at once (:mod:`llmco2.request_log`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from llmco2.cli.options import (
    GpuOption,
    IntensityOption,
    JsonFlag,
    PueOption,
    RegionOption,
    TpOption,
    stdout,
)

app = typer.Typer()

if TYPE_CHECKING:
    import pandas as pd


def _check_output(path: Path, overwrite: bool) -> Path:
    """``path`` if a table can be written there.

    Raises:
        InvalidRequestError: Another suffix than .csv or .parquet, a missing folder, or an
            existing file without ``overwrite``.
    """
    from llmco2.errors import InvalidRequestError

    path = path.expanduser()
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise InvalidRequestError(f"--out {str(path)!r}: write a .csv or a .parquet file")
    if not path.absolute().parent.is_dir():
        raise InvalidRequestError(f"folder of --out {str(path)!r} does not exist")
    if path.exists() and not overwrite:
        raise InvalidRequestError(f"--out {str(path)!r} exists; add --overwrite to replace it")
    return path


def _plot_histogram(priced: pd.DataFrame, path: Path, title: str) -> None:
    """Per-request energy as a histogram on log bins (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    energy = priced["total_j"].to_numpy()
    bins = np.geomspace(max(energy.min(), 1e-3), energy.max() * 1.0001, 60)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(energy, bins=bins.tolist())
    ax.set_xscale("log")
    ax.set_xlabel("predicted energy per request (J)")
    ax.set_ylabel("requests")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@app.command("predict-trace")
def predict_trace(
    log: Annotated[
        Path, typer.Argument(help="Request log: .csv or .parquet with prompt and output tokens.")
    ],
    model: Annotated[str, typer.Option(help="The deployment's model (catalog name or config).")],
    gpu: GpuOption = "H100-SXM",
    tp: TpOption = 1,
    precision: Annotated[
        str | None, typer.Option(help="Bit widths, e.g. w8a8kv8 (bf16 by default).")
    ] = None,
    region: RegionOption = None,
    intensity: IntensityOption = None,
    pue: PueOption = 1.0,
    predictor_path: Annotated[
        Path | None, typer.Option("--predictor", help="Predictor checkpoint (default: shipped).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write every request's prediction (.csv or .parquet).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write a histogram of energy per request (PNG).")
    ] = None,
    exact: Annotated[
        bool, typer.Option(help="Predict every distinct request instead of reading a grid.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Energy and CO2eq of every request of a log, served one at a time, with totals.

    The log's columns: prompt and generated tokens (prompt/gen, prompt_tokens/generated_tokens,
    or the Azure trace's ContextTokens/GeneratedTokens); the others are kept in --out.
    """
    from llmco2.errors import InvalidRequestError
    from llmco2.request_log import predict_log, read_log, summarise_log

    target = _check_output(out, overwrite) if out is not None else None
    if plot is not None and plot.suffix.lower() != ".png":
        raise InvalidRequestError(f"--plot {str(plot)!r}: the plot is a PNG, name it *.png")
    if plot is not None and not plot.expanduser().absolute().parent.is_dir():
        raise InvalidRequestError(f"folder of --plot {str(plot)!r} does not exist")
    table = read_log(log.expanduser())
    priced = predict_log(
        table, model=model, gpu=gpu, tp=tp, precision=precision, region=region,
        intensity=intensity, pue=pue, predictor=predictor_path, exact=exact,
    )  # fmt: skip
    summary = summarise_log(priced)
    how = priced.attrs["llmco2"]
    if target is not None:
        written = target.with_name(target.name + ".partial")
        if target.suffix.lower() == ".csv":
            priced.to_csv(written, index=False)
        else:
            priced.to_parquet(written, index=False)
        written.replace(target)
    title = f"{how['model']} on {how['gpus']}×{how['gpu']}: {summary.requests:,} requests"
    if plot is not None:
        _plot_histogram(priced, plot.expanduser(), title)
    if as_json:
        stdout.print_json(
            json.dumps(
                {
                    **how,
                    "log": str(log),
                    "summary": dataclasses.asdict(summary),
                    "units": {"energy": "J per request", "total": "kWh", "co2": "kg CO2eq"},
                    "out": str(target) if target is not None else None,
                }
            )
        )
        return
    result = Table(title=title)
    result.add_column("")
    result.add_column("value", justify="right")
    result.add_row("energy, all requests", f"{summary.total_kwh:.4g} kWh")
    result.add_row("mean per request", f"{summary.mean_j:.1f} J")
    result.add_row("median / p90 / p99", f"{summary.p50_j:.1f} / {summary.p90_j:.1f} / "
                   f"{summary.p99_j:.1f} J")  # fmt: skip
    result.add_row(
        "operational CO2eq",
        f"{summary.operational_kg:.4g} kg" if summary.operational_kg is not None else "-",
    )
    result.add_row("embodied CO2eq", f"{summary.embodied_kg:.4g} kg")
    stdout.print(result)
    method = (
        f"read off a {how['grid'][0]}×{how['grid'][1]} grid of predictions"
        if how["method"] == "grid"
        else "predicted request by request"
    )
    grid_g = how["carbon_intensity_g_per_kwh"]
    carbon = (
        f"grid {grid_g:.0f} gCO2eq/kWh, PUE {pue:g}"
        if grid_g is not None
        else "no --region or --intensity: operational CO2eq not computed"
    )
    extrapolated = " (extrapolated: outside the predictor's measurements)"
    stdout.print(f"{method}{extrapolated if how['extrapolated'] else ''}; {carbon}")
    if target is not None:
        stdout.print(f"wrote {target}")
    if plot is not None:
        stdout.print(f"plot: {plot}")
