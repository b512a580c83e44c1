"""What the command groups share: the console, option types, number formats, the invocation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

# Pipes and CI logs get a fixed width wide enough for the kernel tables instead of Rich's 80.
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 150)

# Options shared by several commands, declared once.
ModelArg = Annotated[str, typer.Argument(help="Catalog id or alias, or a config.json path.")]
TpOption = Annotated[int, typer.Option(help="GPUs in tensor parallel.")]
BatchOption = Annotated[int, typer.Option(help="Batch size.")]
PromptOption = Annotated[int, typer.Option(help="Prompt tokens per sequence.")]
GenOption = Annotated[int, typer.Option(help="Generated tokens per sequence.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
GpuOption = Annotated[str, typer.Option(help="GPU type: catalog id, alias or NVML name.")]
RegionOption = Annotated[
    str | None, typer.Option(help="Country (ISO alpha-3, e.g. FRA) or cloud region.")
]
IntensityOption = Annotated[float | None, typer.Option(help="Grid carbon intensity in gCO2eq/kWh.")]
PueOption = Annotated[float, typer.Option(help="Data-centre power usage effectiveness (≥ 1).")]
GpuFileOption = Annotated[Path | None, typer.Option(help="YAML/JSON file with extra GPU entries.")]
ExpertBitsOption = Annotated[
    int | None,
    typer.Option(
        "--expert-wbits",
        help="Routed-expert weight bits where narrower than --wbits (4: MXFP4, as gpt-oss ships).",
    ),
]


def gpu_catalog(gpu_file: Path | None) -> Any:
    """The default GPU catalog, plus a user's GPU file."""
    from featurize import GpuCatalog

    catalog = GpuCatalog.default()
    return catalog.with_file(gpu_file) if gpu_file is not None else catalog


def si(value: float, unit: str = "") -> str:
    """Three significant digits with an SI prefix: 1.43e13 → '14.3 T'."""
    if value == 0:
        return f"0 {unit}".rstrip()
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def seconds(value: float) -> str:
    """Three significant digits in s, ms or µs."""
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} µs"


DbOption = Annotated[
    str, typer.Option("--db", help="SQLAlchemy URL (sqlite:///FILE or postgresql+psycopg://...).")
]


#: The arguments of the running invocation (reports record the exact command).
invocation: list[str] = []
