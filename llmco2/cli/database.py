"""The campaign database: ``db upgrade``, ``db current`` and ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmco2.cli.options import (
    DbOption,
    GpuFileOption,
    gpu_catalog,
    stdout,
)
from llmco2.defaults import DEFAULT_DATABASE_URL

app = typer.Typer()


db_app = typer.Typer(
    help="Database schema: show the revision, migrate to the newest.", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Migrate a campaign database to the newest schema (creates it when empty)."""
    from storage import make_engine, mask_url, upgrade
    from storage.database import parse_url, probe

    engine = make_engine(parse_url(db))
    try:
        probe(engine)
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        stdout.print(f"{mask_url(db)}: schema already at revision {after}")
    else:
        stdout.print(f"{mask_url(db)}: schema upgraded from {before or 'empty'} to {after}")


@db_app.command("current")
def db_current(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Show the schema revision of a database and the one this llmco2 needs."""
    from storage import current_revision, head_revision, make_engine, mask_url
    from storage.database import parse_url

    engine = make_engine(parse_url(db))
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    stdout.print(f"{mask_url(db)}: revision {revision or 'none'} (this llmco2: {head_revision()})")


@app.command("export")
def export(
    campaign: Annotated[str, typer.Option(help="Campaign name.")],
    out: Annotated[Path, typer.Option(help="Folder to write (must not exist or be empty).")],
    db: DbOption = DEFAULT_DATABASE_URL,
    format: Annotated[str, typer.Option(help="parquet, csv or pyg.")] = "parquet",
    include_simulated: Annotated[
        bool, typer.Option(help="Also export rows of the simulated engine.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty folder.")] = False,
    gpu_file: GpuFileOption = None,
) -> None:
    """Export a campaign's measured points (features and labels) with a manifest."""
    from llmco2.errors import InvalidRequestError
    from storage import CampaignStore
    from storage.export import ExportFormat, export_campaign

    try:
        fmt = ExportFormat(format)
    except ValueError:
        raise InvalidRequestError(
            f"unknown export format {format!r} (use parquet, csv or pyg)"
        ) from None
    catalog = gpu_catalog(gpu_file)
    store = CampaignStore(db, create=False)
    try:
        result = export_campaign(
            store,
            campaign,
            fmt,
            out,
            include_simulated=include_simulated,
            overwrite=overwrite,
            gpus=catalog,
        )
    finally:
        store.close()
    note = (
        f"; {result.excluded_simulated} simulated rows left out (--include-simulated)"
        if result.excluded_simulated
        else ""
    )
    served = f", {result.serving} serving loads" if result.serving else ""
    stdout.print(
        f"exported {result.points} points{served} and {result.failures} failures of {campaign!r} "
        f"to {result.out_dir}{note}"
    )
