"""Every request of a log priced at once: millions of rows in seconds.

A log holds many requests of one deployment (a model on a GPU setup), each with its prompt and
generated tokens. Their energy is a smooth function of the two lengths, so a log with more
distinct (prompt, generated) pairs than a grid has points is read off a
:class:`~llmco2.price_grid.PriceGrid` spanning the log's lengths; a smaller log is priced exactly.
On the 2-core machine a million rows take a few seconds
(``experiments/benchmarks/predict_log_speed.py``); the interpolation's error against exact
predictions is measured by the same benchmark and bounded by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmco2.api import GEN_COLUMNS, PROMPT_COLUMNS
from llmco2.errors import ConfigFileError, InfeasibleConfigError, InvalidRequestError
from llmco2.price_grid import GRID_POINTS, VALUE_COLUMNS, PriceGrid, grid_axis, price_lengths

if TYPE_CHECKING:
    import pandas as pd

    from llmco2.api import Predictor

__all__ = ["GRID_POINTS", "LogSummary", "predict_log", "read_log", "summarise_log"]

#: The columns of results a priced log gains.
RESULT_COLUMNS = (
    "prefill_j", "decode_j", "total_j", "total_low_j", "total_high_j", "latency_s",
    "operational_g", "embodied_g",
)  # fmt: skip


def read_log(path: Path) -> pd.DataFrame:
    """A request log from a CSV or Parquet file.

    Raises:
        ConfigFileError: A missing or unreadable file, or another format.
    """
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigFileError(f"{str(path)!r}: a request log is a .csv or .parquet file")
    if not path.is_file():
        raise ConfigFileError(f"no request log at {str(path)!r}")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"cannot read the request log {str(path)!r}: {exc}") from None


def _lengths(table: pd.DataFrame, names: tuple[str, ...], what: str) -> np.ndarray:
    column = next((n for n in names if n in table.columns), None)
    if column is None:
        raise InvalidRequestError(f"the log has no {what} column (one of {', '.join(names)})")
    values = np.asarray(table[column], dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 1) | (values != np.round(values))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = table[column].iloc[row]
        raise InvalidRequestError(
            f"row {row} of the log: {column} must be a whole number ≥ 1, got {value!r}"
        )
    return values.astype(np.int64)


def predict_log(
    table: pd.DataFrame,
    *,
    model: str,
    gpu: str,
    tp: int = 1,
    precision: Any = None,
    region: str | None = None,
    intensity: float | None = None,
    pue: float = 1.0,
    lifetime_years: float | None = None,
    predictor: Predictor | str | Path | None = None,
    exact: bool = False,
) -> pd.DataFrame:
    """Energy, latency and CO2eq of every request of a log, served one at a time.

    Args:
        table: The log: prompt and generated tokens per row (see :data:`PROMPT_COLUMNS` and
            :data:`GEN_COLUMNS`); other columns (timestamps, ids) are kept.
        model: The deployment's model.
        gpu: Its GPU type.
        tp: GPUs of its tensor-parallel group.
        precision: Bit widths (a ``Precision`` or its label).
        region: Country or cloud region of the grid.
        intensity: Or the grid's carbon intensity (gCO2eq/kWh).
        pue: Power usage effectiveness of the data centre.
        lifetime_years: Hardware lifetime for embodied carbon (the API's default if None).
        predictor: A :class:`~llmco2.api.Predictor` or checkpoint path (the shipped one if None).
        exact: Predict every distinct request instead of reading a grid.

    Returns:
        The log with :data:`RESULT_COLUMNS` added, in its row order.

    Raises:
        InvalidRequestError: No rows, a missing length column, a length that is not a whole number
            ≥ 1 (naming the row), or a request longer than the model's context window.
        InfeasibleConfigError: The longest request does not fit the GPUs.
        UnknownModelError, UnknownGpuError, UnknownRegionError: Names nothing here knows.
    """
    from featurize import resolve_model
    from featurize.gpus import GpuCatalog
    from gnn.carbon import operational_co2_g
    from gnn.embodied import EmbodiedAssumptions, embodied_co2_g
    from llmco2.api import (
        DEFAULT_LIFETIME_YEARS,
        as_precision,
        as_predictor,
        carbon_grid,
        request_points,
    )

    if len(table) == 0:
        raise InvalidRequestError("the log has no requests")
    prompts = _lengths(table, PROMPT_COLUMNS, "prompt-token")
    gens = _lengths(table, GEN_COLUMNS, "generated-token")
    grid = carbon_grid(region, intensity, pue)
    bits = as_precision(precision)
    architecture, window = resolve_model(model)
    target = GpuCatalog.default().get(gpu)
    longest = int(np.argmax(prompts + gens))
    if window is not None and prompts[longest] + gens[longest] > window:
        raise InvalidRequestError(
            f"row {longest} of the log: prompt {prompts[longest]:,} + {gens[longest]:,} generated "
            f"tokens exceed the context window of {architecture.name} ({window:,} tokens)"
        )
    # The KV cache grows with the context: the longest request is the one that may not fit.
    _, unfit = request_points(
        architecture, window, target, [tp], 1, int(prompts[longest]), int(gens[longest]), bits
    )
    if unfit:
        raise InfeasibleConfigError(f"row {longest} of the log: {unfit[0][1]}")
    chosen = as_predictor(predictor)
    pairs = np.unique(np.stack([prompts, gens], axis=1), axis=0)
    prompt_axis = grid_axis(int(prompts.min()), int(prompts.max()))
    gen_axis = grid_axis(int(gens.min()), int(gens.max()))
    gridded = not exact and len(pairs) > len(prompt_axis) * len(gen_axis)
    price_grid = (
        PriceGrid.build(chosen, architecture, target, tp, 1, bits, prompt_axis, gen_axis)
        if gridded
        else None
    )
    # Every request fits (the longest does), but two lengths of different requests may not
    # together: rows next to such a cell are priced exactly.
    priced = price_lengths(chosen, architecture, target, tp, 1, bits, prompts, gens, price_grid)
    values, has_interval = priced.values, priced.interval_level is not None
    prefill, decode, latency, low, high = (values[:, c] for c in range(len(VALUE_COLUMNS)))
    total = prefill + decode
    years = DEFAULT_LIFETIME_YEARS if lifetime_years is None else lifetime_years
    per_second = embodied_co2_g(target, tp, 1.0, EmbodiedAssumptions(lifetime_years=years))
    out = table.copy()
    out["prefill_j"], out["decode_j"], out["total_j"] = prefill, decode, total
    out["total_low_j"] = low if has_interval else np.nan
    out["total_high_j"] = high if has_interval else np.nan
    out["latency_s"] = latency
    out["operational_g"] = (
        total * operational_co2_g(1.0, grid, pue) if grid is not None else np.full(len(out), np.nan)
    )
    out["embodied_g"] = per_second * latency
    out.attrs["llmco2"] = {
        "model": architecture.name,
        "gpu": target.id,
        "gpus": tp,
        "precision": bits.label,
        "method": "grid" if gridded else "exact",
        "grid": [len(prompt_axis), len(gen_axis)] if gridded else None,
        "extrapolated": priced.extrapolated,
        "carbon_intensity_g_per_kwh": grid.g_per_kwh if grid is not None else None,
        "carbon_intensity_source": grid.source if grid is not None else None,
        "pue": pue,
    }
    return out


@dataclass(frozen=True)
class LogSummary:
    """What a priced log adds up to.

    Attributes:
        requests: Rows of the log.
        total_kwh: Energy of all its requests (kWh).
        mean_j: Mean energy per request (J).
        p50_j: Median energy per request (J).
        p90_j: 90th percentile (J).
        p99_j: 99th percentile (J).
        operational_kg: Operational CO2eq of all of them (kg; None without an intensity).
        embodied_kg: Embodied CO2eq of all of them (kg).
    """

    requests: int
    total_kwh: float
    mean_j: float
    p50_j: float
    p90_j: float
    p99_j: float
    operational_kg: float | None
    embodied_kg: float


def summarise_log(priced: pd.DataFrame) -> LogSummary:
    """Totals and percentiles of a log priced by :func:`predict_log`."""
    total = priced["total_j"].to_numpy(dtype=np.float64)
    operational = priced["operational_g"].to_numpy(dtype=np.float64)
    return LogSummary(
        requests=len(priced),
        total_kwh=float(total.sum() / 3.6e6),
        mean_j=float(total.mean()),
        p50_j=float(np.percentile(total, 50)),
        p90_j=float(np.percentile(total, 90)),
        p99_j=float(np.percentile(total, 99)),
        operational_kg=None if np.isnan(operational).all() else float(operational.sum() / 1000),
        embodied_kg=float(priced["embodied_g"].sum() / 1000),
    )
