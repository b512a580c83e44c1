"""``llmco2 evaluate`` and ``llmco2 train``: the predictor's comparison report and its training.

Both read a dataset from a campaign in the store (``--db URL --campaign NAME``) or from exported
folders (``--data PATH``, repeatable).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gnn.names import (
    CORRECTION_EPOCHS,
    DEFAULT_METHODS,
    REAL_DATA_EPOCHS,
    REAL_DATA_PATIENCE,
    SPLIT_NAMES,
)
from llmco2.cli.options import DbOption, JsonFlag, invocation, stdout
from llmco2.defaults import DEFAULT_DATABASE_URL
from llmco2.redact import command_line

app = typer.Typer()

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
EpochsOption = Annotated[
    int, typer.Option(help="Most training epochs of the GNNs that stop early.", min=1)
]
PatienceOption = Annotated[int, typer.Option(help="Early-stopping patience (epochs).", min=1)]
CorrectionEpochsOption = Annotated[
    int,
    typer.Option(
        help="Epochs of llmco2's correction networks, on every row (0: early stopping as the "
        "GNNs).",
        min=0,
    ),
]
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


def _progress(quiet: bool = False) -> Progress:
    from rich.console import Console

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        # With --json, stdout carries the document alone.
        console=Console(stderr=True) if quiet else stdout,
        transient=quiet or not sys.stdout.isatty(),
        disable=quiet and not sys.stderr.isatty(),
    )


def _command_line() -> str:
    return command_line("llmco2", invocation)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def evaluate(
    db: DbOption = DEFAULT_DATABASE_URL,
    campaign: CampaignOption = None,
    data: DataOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default experiments/reports/NAME).")
    ] = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods (see the README for the list).")
    ] = ",".join(DEFAULT_METHODS),
    splits: Annotated[
        str, typer.Option(help="Comma-separated splits: shape, family, tp, size, gpu, random.")
    ] = ",".join(SPLIT_NAMES),
    folds: Annotated[int, typer.Option(help="Folds of the random split.")] = 5,
    shape_folds: Annotated[
        int | None,
        typer.Option(
            help="Hold out whole shapes in this many folds (default: one shape per fold)."
        ),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Fits at once, one core each (default: every core).")
    ] = None,
    epochs: EpochsOption = REAL_DATA_EPOCHS,
    patience: PatienceOption = REAL_DATA_PATIENCE,
    correction_epochs: CorrectionEpochsOption = CORRECTION_EPOCHS,
    seed: SeedOption = 0,
    include_simulated: SimulatedFlag = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report folder.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Compare llmco2 with its ablations and the baselines; write a report with plots.

    With --json, stdout is one JSON document {split: {method: {"mape", "eba10", "n", ...}}}.
    """
    import json
    import os

    from gnn.evaluation import count_fits
    from gnn.evaluation import evaluate as run_evaluation
    from gnn.report import write_report
    from gnn.training import TrainConfig
    from llmco2.errors import InvalidRequestError
    from llmco2.outputs import check_output_folder

    name = campaign or (data[0].resolve().name if data else "report")
    target = out if out is not None else Path("experiments") / "reports" / name
    # Checked before hours of training, not after.
    check_output_folder(target, overwrite=overwrite, what="report folder")
    dataset = _load(db, campaign, data, include_simulated)
    method_names, split_names = _csv(methods), _csv(splits)
    if not method_names or not split_names:
        raise InvalidRequestError(f"--{'methods' if not method_names else 'splits'} names nothing")
    if jobs is not None and jobs < 1:
        raise InvalidRequestError(f"--jobs must be ≥ 1, got {jobs}")
    workers = jobs if jobs is not None else max(1, os.cpu_count() or 1)
    config = TrainConfig(
        epochs=epochs, patience=patience, seed=seed, correction_epochs=correction_epochs
    )
    with _progress(quiet=as_json) as progress:
        task = progress.add_task(
            "training", total=count_fits(dataset, method_names, split_names, folds, shape_folds)
        )

        def advance(split: str, method: str, fold: str) -> None:
            progress.update(task, advance=1, description=f"{split}: {method}, {fold}")

        result = run_evaluation(
            dataset, method_names, split_names, folds=folds, train_config=config, on_fit=advance,
            jobs=workers, shape_folds=shape_folds,
        )  # fmt: skip
    folder = write_report(result, target, _command_line(), overwrite=overwrite)
    if as_json:
        print(json.dumps(result.summary(), indent=2))
        return
    table = Table(title=f"{dataset.source}: {len(dataset)} points, total energy")
    for header in ("split", "method", "MAPE %", "EBA5 %", "EBA10 %", "EBA30 %"):
        table.add_column(header, justify="left" if header in ("split", "method") else "right")
    for r in result.results:
        s = r.overall
        table.add_row(
            r.split, r.method, f"{s.mape:.1f}", f"{s.eba5:.0f}", f"{s.eba10:.0f}", f"{s.eba30:.0f}"
        )
    stdout.print(table)
    for split, why in result.skipped.items():
        stdout.print(f"split {split} not run: {why}")
    stdout.print(f"report: {folder / 'report.md'}")


def _check_checkpoint_target(path: Path) -> Path:
    """The absolute checkpoint path, refused before any training if it cannot be written.

    Raises:
        ExportError: A folder, a suffix other than ``.pt``/``.npz``, or a missing parent.
    """
    from llmco2.errors import ExportError

    target = path.expanduser().absolute()
    if target.is_dir():
        raise ExportError(f"--out {str(path)!r} is a folder; give a checkpoint file (.pt, .npz)")
    if target.suffix not in (".pt", ".npz"):
        raise ExportError(
            f"--out {str(path)!r}: a checkpoint ends in .pt (torch) or .npz (portable copy)"
        )
    if not target.parent.is_dir():
        raise ExportError(f"folder {str(target.parent)!r} does not exist")
    return target


@app.command()
def train(
    db: DbOption = DEFAULT_DATABASE_URL,
    campaign: CampaignOption = None,
    data: DataOption = None,
    hpo: Annotated[
        int, typer.Option(help="Optuna trials in all (0: no search); the study is resumable.")
    ] = 0,
    folds: Annotated[int, typer.Option(help="Cross-validation folds of each HPO trial.")] = 3,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write.")] = None,
    epochs: EpochsOption = REAL_DATA_EPOCHS,
    patience: PatienceOption = REAL_DATA_PATIENCE,
    correction_epochs: CorrectionEpochsOption = CORRECTION_EPOCHS,
    seed: SeedOption = 0,
    include_simulated: SimulatedFlag = False,
    study_db: Annotated[
        str | None,
        typer.Option(help="Where the Optuna study lives (default: --db; with --data: required)."),
    ] = None,
    interval: Annotated[
        bool,
        typer.Option(
            help="Calibrate the interval on leave-one-shape-out errors (one fit per shape)."
        ),
    ] = True,
    jobs: Annotated[
        int | None, typer.Option(help="Fits at once for the interval (default: every core).")
    ] = None,
) -> None:
    """Train the llmco2 predictor (physics + GNN correction) and save a checkpoint.

    The GNN's shape and training knobs can come from an Optuna search (--hpo). A ``.npz`` --out
    writes the portable copy that `predict` loads without torch.
    """
    import os
    import tempfile

    import numpy as np

    from gnn.baselines import NetworkShape
    from gnn.evaluation import evaluate
    from gnn.hpo import tune
    from gnn.hybrid import CorrectionSettings, Interval, held_out_log_ratios, train_hybrid
    from gnn.training import TrainConfig
    from llmco2.errors import InvalidRequestError

    storage = study_db or (db if campaign is not None else None)
    if hpo and storage is None:
        raise InvalidRequestError("--hpo with --data needs --study-db URL for the Optuna study")
    if out is not None:
        _check_checkpoint_target(out)
    dataset = _load(db, campaign, data, include_simulated)
    name = campaign or (data[0].resolve().name if data else "predictor")
    target = _check_checkpoint_target(out if out is not None else Path(f"{name}-predictor.pt"))
    config = TrainConfig(
        epochs=epochs, patience=patience, seed=seed, correction_epochs=correction_epochs
    )
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
    settings = CorrectionSettings(hidden=shape.hidden)
    shapes = len(set(dataset.model_name.tolist()))
    calibration = None
    if interval and shapes >= 3:
        with _progress() as progress:
            task = progress.add_task("interval: leave one shape out", total=shapes)
            held_out = evaluate(
                dataset, ["llmco2"], ["shape"], train_config=config,
                on_fit=lambda *_: progress.update(task, advance=1),
                jobs=jobs if jobs is not None else max(1, os.cpu_count() or 1),
            )  # fmt: skip
        scores = held_out.get("llmco2", "shape")
        assert scores is not None
        measured = np.concatenate([dataset.energy_j, dataset.total_j[:, None]], axis=1)
        calibration = Interval.of(
            held_out_log_ratios(measured, scores.predicted), groups=dataset.model_name
        )
        summary.add_row(
            "leave-one-shape-out MAPE", f"{scores.overall.mape:.2f} % ({shapes} shapes)"
        )
        summary.add_row(
            f"{calibration.level:.0%} interval of the total",
            f"× {np.exp(calibration.low[2]):.3f} … × {np.exp(calibration.high[2]):.3f}",
        )
    elif interval:
        summary.add_row("interval", f"none: {shapes} shape(s), at least 3 are needed")
    with _progress() as progress:
        progress.add_task("training the final model", total=None)
        predictor = train_hybrid(
            dataset, np.arange(len(dataset)), config, settings, shape.graph_layers, shape.dropout
        )
    predictor.interval = calibration
    predictor.metadata.update(
        {
            "trained_on": dataset.source,
            "points": len(dataset),
            **dataset.coverage(),
            "simulated": dataset.simulated,
        }
    )
    # Written beside the target and renamed: a crash never leaves half a checkpoint.
    handle, staging_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix
    )
    os.close(handle)
    staging = Path(staging_name)
    try:
        predictor.save(staging)
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    for gpu, fitted in predictor.physics.gpus.items():
        summary.add_row(f"analytical model, {gpu}", f"{fitted.measured_points} points, static "
                        f"{fitted.energy.static_w:.0f} W, {fitted.energy.per_byte_j * 1e12:.0f} "
                        f"pJ/byte, step floor {fitted.time.step_floor_s * 1e3:.2f} ms")  # fmt: skip
    summary.add_row("checkpoint", str(target))
    stdout.print(summary)
