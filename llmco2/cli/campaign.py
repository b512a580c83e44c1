"""``llmco2 campaign run | list | status``: the Algorithm 1 campaign from the command line.

``campaign run CONFIG`` is also what ``ray job submit`` runs
(``ray job submit --working-dir . -- python -m llmco2 campaign run CONFIG``): inside a Ray
job it joins the job's cluster, elsewhere it starts a local loopback-only Ray (or joins
``--ray-address``). Rerunning the same command continues the campaign where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from llmco2.cli.options import DbOption, JsonFlag, invocation, stdout
from llmco2.defaults import DEFAULT_DATABASE_URL
from llmco2.redact import command_line

app = typer.Typer(
    help="Active-learning measurement campaigns (the paper's Algorithm 1).",
    no_args_is_help=True,
)


def _cluster_gpus(config: Any, uses_gpus: bool) -> list[Any]:
    """GPU types to sample: the config's, checked against the cluster when the engine needs GPUs."""
    import ray

    from featurize import GpuCatalog
    from llmco2.errors import InvalidRequestError
    from workers.devices import detect_gpu_names

    catalog = GpuCatalog.default()
    wanted = [catalog.get(name) for name in config.priors.gpus.types]
    if not uses_gpus:
        if not wanted:
            raise InvalidRequestError(
                f"engine {config.engine!r} uses no GPUs: list the GPU types to simulate in "
                "priors.gpus.types"
            )
        return wanted
    if int(ray.cluster_resources().get("GPU", 0)) == 0:
        raise InvalidRequestError("the Ray cluster has no GPUs for engine " + repr(config.engine))
    names = ray.get(ray.remote(num_gpus=1, num_cpus=0)(detect_gpu_names).remote(), timeout=120)
    present = {catalog.get(name).id: catalog.get(name) for name in names}
    if not wanted:
        return list(present.values())
    missing = [g.id for g in wanted if g.id not in present]
    if missing:
        raise InvalidRequestError(
            f"no {', '.join(missing)} in the Ray cluster (it has {', '.join(present) or 'none'})"
        )
    return wanted


@app.command("run")
def run_campaign(
    config_path: Annotated[Path, typer.Argument(help="Campaign YAML file.", metavar="CONFIG")],
    new_name: Annotated[
        str | None, typer.Option(help="Run the config under another campaign name.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Continue an existing campaign with a changed config.")
    ] = False,
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: the config's).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: $RAY_ADDRESS or local).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Actors for engines without GPUs (simulated).", min=1)
    ] = 4,
    report: Annotated[
        Path | None, typer.Option(help="Report folder (default experiments/reports/NAME).")
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit",
            help="Seconds this run may take: no engine start or point that would end later is "
            "begun, and the run stops with its round unfinished (rerun to continue).",
            min=1.0,
        ),
    ] = None,
) -> None:
    """Run a campaign, or continue it: rerun the same command after any interruption."""
    from featurize import GpuCatalog
    from llmco2.outputs import check_output_folder
    from orchestrator.campaign import CampaignDriver, RoundReport
    from orchestrator.campaign_report import write_campaign_report
    from orchestrator.config import load_config
    from orchestrator.driver_lease import refuse_if_busy
    from orchestrator.sampling import check_priors
    from storage import CampaignStore
    from workers.cluster import connect, disconnect
    from workers.engines import engine_class

    config = load_config(config_path)
    if new_name is not None:
        from orchestrator.config import parse_config

        config = parse_config({**config.model_dump(mode="json"), "name": new_name}, "--new-name")
    engine = engine_class(config.engine)
    engine.check_environment()
    uses_gpus = bool(engine.uses_gpus)
    check_priors(config, [GpuCatalog.default().get(name) for name in config.priors.gpus.types])
    report_folder = check_output_folder(
        report or Path("experiments") / "reports" / config.name, overwrite=True,
        what="report folder",
    )  # fmt: skip
    store = CampaignStore(db or config.database)
    # An unreachable or foreign database, or a campaign another driver runs, fails here, before
    # Ray starts.
    refuse_if_busy(store, config.name)
    connect(ray_address)
    try:
        gpus = _cluster_gpus(config, uses_gpus)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), console=stdout, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("measuring", total=None)

            def on_result(result: Any) -> None:
                progress.advance(task)

            def on_phase(description: str, steps: int | None) -> None:
                progress.reset(task, total=steps, description=description)

            def on_round(r: RoundReport) -> None:
                duty = f"{100 * r.duty_cycle:.0f} %" if r.duty_cycle is not None else "-"
                scores = r.scores
                stdout.print(
                    f"round {r.round_index}: {r.measured} measured ({r.failed} failed), "
                    f"train {r.train_points} / test {r.test_points}, "
                    f"MAPE {scores.mape:.2f} %, EBA10 {scores.eba10:.0f} %, duty cycle {duty}, "
                    f"{r.gpu_hours:.3f} GPU-h; next: {r.selected} points"
                    if scores is not None
                    else f"round {r.round_index}: no scores"
                )

            driver = CampaignDriver(
                config, store, gpus=gpus, on_round=on_round, on_result=on_result,
                on_phase=on_phase, workers=workers, replace_config=force,
                time_limit_s=time_limit,
            )  # fmt: skip
            outcome = driver.run()
        folder = write_campaign_report(
            store, config.name, report_folder,
            target_mape=config.target_mape, stop_reason=outcome.stop_reason,
            command=command_line("llmco2", invocation),
            include_simulated=not uses_gpus,
        )  # fmt: skip
    finally:
        disconnect()
        store.close()
    stdout.print(f"campaign {config.name}: {outcome.stop_reason}")
    served = driver.serving_counts
    if any(served.values()):
        stdout.print(f"serving loads: {served['measured']} measured ({served['failed']} failed)")
    stdout.print(f"report: {folder / 'report.md'}")
    stdout.print(f"dataset: {folder / 'dataset'}")


@app.command("list")
def list_campaigns(db: DbOption = DEFAULT_DATABASE_URL, as_json: JsonFlag = False) -> None:
    """Every campaign in the database with its points and its latest test MAPE."""
    from storage import CampaignStore

    store = CampaignStore(db, create=False)
    try:
        listed: list[dict[str, Any]] = []
        for campaign in store.list_campaigns():
            counts = store.status_counts(campaign.id)
            rounds = store.rounds(campaign.id)
            listed.append(
                {
                    "name": campaign.name,
                    "status": campaign.status,
                    "points": sum(counts.values()),
                    "complete": counts["COMPLETE"],
                    "rounds": len(rounds),
                    "last_mape": rounds[-1].mape if rounds else None,
                }
            )
        url = store.url
    finally:
        store.close()
    if as_json:
        stdout.print_json(json.dumps({"database": url, "campaigns": listed}))
        return
    table = Table(title=f"campaigns in {url}")
    for header in ("name", "status", "points", "complete", "rounds", "last MAPE %"):
        table.add_column(header, justify="left" if header in ("name", "status") else "right")
    for row in listed:
        mape = row["last_mape"]
        table.add_row(
            row["name"], row["status"], str(row["points"]), str(row["complete"]),
            str(row["rounds"]), f"{mape:.2f}" if mape is not None else "-",
        )  # fmt: skip
    stdout.print(table)


@app.command("status")
def campaign_status(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: JsonFlag = False,
) -> None:
    """One campaign: points per status and every round's metrics."""
    from storage import CampaignStore

    store = CampaignStore(db, create=False)
    try:
        campaign = store.get_campaign(name)
        counts = store.status_counts(campaign.id)
        serving = store.serving_status_counts(campaign.id)
        rounds = store.rounds(campaign.id)
    finally:
        store.close()
    if as_json:
        stdout.print_json(
            json.dumps(
                {
                    "name": name,
                    "status": campaign.status,
                    "strategy": campaign.config.get("strategy"),
                    "engine": campaign.config.get("engine"),
                    "points": counts,
                    "serving_loads": serving,
                    "rounds": [
                        {
                            "round": r.round_index,
                            "points": r.points_selected,
                            "train": r.train_points,
                            "test": r.test_points,
                            "mape": r.mape,
                            "eba10": r.eba10,
                            "duty_cycle": r.duty_cycle,
                            "gpu_hours": r.gpu_hours,
                        }
                        for r in rounds
                    ],
                }
            )
        )
        return
    stdout.print(
        f"campaign {name} ({campaign.status}, strategy {campaign.config.get('strategy')}, "
        f"engine {campaign.config.get('engine')}): "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    if any(serving.values()):
        stdout.print("serving loads: " + ", ".join(f"{k} {v}" for k, v in serving.items()))
    table = Table()
    for header in ("round", "points", "train", "test", "MAPE %", "EBA10 %", "duty", "GPU-h"):
        table.add_column(header, justify="right")
    for r in rounds:
        table.add_row(
            str(r.round_index), str(r.points_selected), str(r.train_points), str(r.test_points),
            f"{r.mape:.2f}" if r.mape is not None else "-",
            f"{r.eba10:.0f}" if r.eba10 is not None else "-",
            f"{100 * r.duty_cycle:.0f} %" if r.duty_cycle is not None else "-",
            f"{r.gpu_hours or 0:.3f}",
        )  # fmt: skip
    stdout.print(table)
