"""``llmco2 evaluate`` and ``llmco2 train``: the predictor's comparison report and its training.

Both read a dataset from a campaign in the store (``--db URL --campaign NAME``) or from exported
folders (``--data PATH``, repeatable).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.cli import DbOption, _stdout, app, invocation

if TYPE_CHECKING:
    from gnn.dataset import LabelledData

CampaignOption = Annotated[
    str | None, typer.Option(help="Campaign to read from --db (or use --data).")
]
DataOption = Annotated[
    list[Path] | None,
    typer.Option("--data", help="Exported dataset folder (points.parquet); repeatable."),
]
SimulatedFlag = Annotated[
    bool, typer.Option(help="Use rows of the simulated engine (a twin campaign).")
]
EpochsOption = Annotated[int, typer.Option(help="Most training epochs of the GNNs.", min=1)]
SeedOption = Annotated[int, typer.Option(help="Seed of splits and training.")]


def _load(
    db: str, campaign: str | None, data: list[Path] | None, include_simulated: bool
) -> LabelledData:
    from gnn.dataset import LabelledData
    from llmco2.errors import InvalidRequestError

    if (campaign is None) == (not data):
        raise InvalidRequestError("give --campaign (with --db) or --data, exactly one of them")
    if data:
        return LabelledData.from_exported(data, include_simulated=include_simulated)
    assert campaign is not None
    return LabelledData.from_campaign(db, campaign, include_simulated=include_simulated)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stdout,
        transient=not sys.stdout.isatty(),
    )


def _command_line() -> str:
    return " ".join(["llmco2", *(shlex.quote(a) for a in invocation)])


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def evaluate(
    db: DbOption = "sqlite:///llmco2.db",
    campaign: CampaignOption = None,
    data: DataOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default experiments/reports/NAME).")
    ] = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods.")
    ] = "llmcarbon,deepen-rf,nnlqp,gnn+phases,llmco2",
    splits: Annotated[str, typer.Option(help="Comma-separated splits.")] = "random,family,gpu,tp",
    folds: Annotated[int, typer.Option(help="Folds of the random split.")] = 5,
    epochs: EpochsOption = 300,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).", min=1)] = 40,
    seed: SeedOption = 0,
    include_simulated: SimulatedFlag = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report folder.")] = False,
) -> None:
    """Compare our GNN with its ablations and the baselines; write a report with plots."""
    from gnn.evaluation import count_fits
    from gnn.evaluation import evaluate as run_evaluation
    from gnn.report import write_report
    from gnn.training import TrainConfig
    from llmco2.errors import ExportError

    dataset = _load(db, campaign, data, include_simulated)
    name = campaign or (data[0].resolve().name if data else "report")
    target = out if out is not None else Path("experiments") / "reports" / name
    if target.exists() and not overwrite:  # checked before hours of training, not after
        raise ExportError(f"report folder {str(target)!r} exists; pass --overwrite to replace it")
    method_names, split_names = _csv(methods), _csv(splits)
    config = TrainConfig(epochs=epochs, patience=patience, seed=seed)
    with _progress() as progress:
        task = progress.add_task(
            "training", total=count_fits(dataset, method_names, split_names, folds)
        )

        def advance(split: str, method: str, fold: str) -> None:
            progress.update(task, advance=1, description=f"{split}: {method}, {fold}")

        result = run_evaluation(
            dataset, method_names, split_names, folds=folds, train_config=config, on_fit=advance
        )
    folder = write_report(result, target, _command_line(), overwrite=overwrite)
    table = Table(title=f"{dataset.source}: {len(dataset)} points, total energy")
    for header in ("split", "method", "MAPE %", "EBA5 %", "EBA10 %", "EBA30 %"):
        table.add_column(header, justify="left" if header in ("split", "method") else "right")
    for r in result.results:
        s = r.overall
        table.add_row(
            r.split, r.method, f"{s.mape:.1f}", f"{s.eba5:.0f}", f"{s.eba10:.0f}", f"{s.eba30:.0f}"
        )
    _stdout.print(table)
    for split, why in result.skipped.items():
        _stdout.print(f"split {split} not run: {why}")
    _stdout.print(f"report: {folder / 'report.md'}")


@app.command()
def train(
    db: DbOption = "sqlite:///llmco2.db",
    campaign: CampaignOption = None,
    data: DataOption = None,
    hpo: Annotated[
        int, typer.Option(help="Optuna trials in all (0: no search); the study is resumable.")
    ] = 0,
    folds: Annotated[int, typer.Option(help="Cross-validation folds of each HPO trial.")] = 3,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write.")] = None,
    epochs: EpochsOption = 300,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).", min=1)] = 40,
    seed: SeedOption = 0,
    include_simulated: SimulatedFlag = False,
    study_db: Annotated[
        str | None,
        typer.Option(help="Where the Optuna study lives (default: --db; with --data: required)."),
    ] = None,
) -> None:
    """Train the LLMCO2 predictor (optionally after an Optuna search) and save a checkpoint."""
    import os
    import tempfile

    from gnn.baselines import NetworkShape
    from gnn.hpo import tune
    from gnn.training import TrainConfig, train_predictor
    from llmco2.errors import ExportError, InvalidRequestError

    storage = study_db or (db if campaign is not None else None)
    if hpo and storage is None:
        raise InvalidRequestError("--hpo with --data needs --study-db URL for the Optuna study")
    dataset = _load(db, campaign, data, include_simulated)
    name = campaign or (data[0].resolve().name if data else "predictor")
    target = (out if out is not None else Path(f"{name}-predictor.pt")).expanduser().absolute()
    if not target.parent.is_dir():
        raise ExportError(f"folder {str(target.parent)!r} does not exist")
    config = TrainConfig(epochs=epochs, patience=patience, seed=seed)
    shape = NetworkShape()
    summary = Table(title=f"llmco2 train: {dataset.source}, {len(dataset)} points")
    summary.add_column("")
    summary.add_column("value", justify="right")
    if hpo:
        assert storage is not None
        with _progress() as progress:
            task = progress.add_task("HPO trials", total=hpo)

            def advance(number: int, value: float) -> None:
                progress.update(
                    task, advance=1, description=f"trial {number}: CV MAPE {value:.2f} %"
                )

            tuned = tune(
                dataset, storage, f"llmco2-{name}", hpo, base=config, folds=folds,
                on_trial=advance,
            )  # fmt: skip
        config, shape = tuned.config, tuned.shape
        summary.add_row("Optuna study", f"{tuned.study_name} ({tuned.trials} trials, "
                        f"{tuned.new_trials} new)")  # fmt: skip
        summary.add_row(f"best {folds}-fold CV MAPE", f"{tuned.best_mape:.2f} %")
        for key, value in tuned.params.items():
            summary.add_row(key, f"{value:.3g}" if isinstance(value, float) else str(value))
    with _progress() as progress:
        progress.add_task("training the final model", total=None)
        predictor, history = train_predictor(
            dataset.graphs,
            dataset.prefill_j,
            dataset.decode_j,
            config,
            shape.model_config(dataset.graphs[0]),
        )
    predictor.metadata.update(
        {
            "trained_on": dataset.source,
            "points": len(dataset),
            "setups": sorted(set(dataset.setup.tolist())),
            "models": sorted(set(dataset.model_name.tolist())),
            "simulated": dataset.simulated,
        }
    )
    # Written beside the target and renamed: a crash never leaves half a checkpoint.
    handle, staging_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(handle)
    staging = Path(staging_name)
    try:
        predictor.save(staging)
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    summary.add_row("epochs (best)", f"{len(history.train_loss)} ({history.best_epoch + 1})")
    summary.add_row("validation loss (log² J)", f"{min(history.validation_loss):.4f}")
    summary.add_row("checkpoint", str(target))
    _stdout.print(summary)
