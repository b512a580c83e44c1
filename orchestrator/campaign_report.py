"""The report a campaign leaves: its rounds, how the test MAPE fell, and its exported dataset.

Written under ``experiments/reports/NAME/`` (or another folder): ``report.md`` (one row per
round: points measured, train/test sizes, MAPE, EBA10, duty cycle, GPU-hours; the stop reason),
``mape_per_round.png``, and ``dataset/`` — the campaign exported as Parquet with its manifest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from storage import CampaignStore
from storage.export import export_campaign
from storage.records import RoundRecord


def _plot(rounds: list[RoundRecord], path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    measured, total = [], 0
    for record in rounds:
        total += record.points_selected
        measured.append(total)
    ax.plot(
        measured,
        [r.mape if r.mape is not None else float("nan") for r in rounds],
        "o-",
        label="test MAPE",
    )
    ax.axhline(target, color="grey", linestyle="--", label=f"target {target:g} %")
    ax.set_xlabel("points measured")
    ax.set_ylabel("test MAPE of total energy (%)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_campaign_report(
    store: CampaignStore,
    name: str,
    folder: Path,
    *,
    target_mape: float,
    stop_reason: str,
    command: str,
    include_simulated: bool,
) -> Path:
    """Write (replace) the campaign's report folder; returns it."""
    campaign = store.get_campaign(name)
    rounds = store.rounds(campaign.id)
    counts = store.status_counts(campaign.id)
    folder.mkdir(parents=True, exist_ok=True)
    dataset = folder / "dataset"
    if dataset.exists():
        shutil.rmtree(dataset)
    export = export_campaign(store, name, "parquet", dataset, include_simulated=include_simulated)
    lines = [
        f"# Campaign {name}",
        "",
        f"- Database: {store.url}",
        f"- Strategy: {campaign.config.get('strategy')}; engine: {campaign.config.get('engine')}",
        f"- Points: {', '.join(f'{k} {v}' for k, v in counts.items() if v)}",
        f"- Stopped: {stop_reason}",
        f"- Dataset: `dataset/` ({export.points} points, Parquet, with manifest)",
        "",
        "Made by:",
        "",
        f"    {command}",
        "",
        "| round | points measured | train | test | MAPE % | EBA10 % | duty cycle | GPU-hours |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rounds:
        duty = f"{100 * r.duty_cycle:.0f} %" if r.duty_cycle is not None else "-"
        lines.append(
            f"| {r.round_index} | {r.points_selected} | {r.train_points} | {r.test_points} | "
            f"{r.mape:.2f} | {r.eba10:.0f} | {duty} | {r.gpu_hours or 0:.3f} |"
        )
    if rounds:
        _plot(rounds, folder / "mape_per_round.png", target_mape)
        lines += ["", "![MAPE per round](mape_per_round.png)"]
    (folder / "report.md").write_text("\n".join(lines) + "\n", "utf-8")
    return folder
