"""The report a campaign leaves: its rounds, how the test MAPE fell, and its exported dataset.

Written under ``experiments/reports/NAME/`` (or another folder): ``report.md`` (one row per
round: points measured, train/test sizes, MAPE, EBA10, duty cycle, GPU-hours; the stop reason;
the reference point's energy per GPU; the final model's measured vs predicted energy on the test
points, with the worst of them; the strategy comparison: every campaign in the same database,
its strategy and how its test MAPE fell), ``mape_per_round.png`` (this campaign's curve, the
others' dashed),
``measured_vs_predicted.png``, and ``dataset/`` — the campaign exported as Parquet with its
manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gnn.metrics import Scores, first_reaching
from llmco2.errors import Llmco2Error
from llmco2.outputs import atomic_directory
from storage import CampaignStore
from storage.export import MANIFEST_NAME, export_campaign
from storage.records import CampaignInfo, RoundRecord

#: Test points listed by name in the report, worst first.
WORST_LISTED = 5


@dataclass(frozen=True)
class FinalPredictions:
    """The final model on the campaign's test points."""

    labels: list[str]
    measured_j: np.ndarray
    predicted_j: np.ndarray
    #: Absolute relative error of each prediction.
    errors: np.ndarray


def _measured_curve(rounds: list[RoundRecord]) -> tuple[list[int], list[float]]:
    """Points measured so far and the test MAPE after each round."""
    measured, total = [], 0
    for record in rounds:
        total += record.points_selected
        measured.append(total)
    return measured, [r.mape if r.mape is not None else float("nan") for r in rounds]


def final_test_predictions(store: CampaignStore, campaign_id: int, rounds: list[RoundRecord]) -> (
    FinalPredictions | None
):  # fmt: skip
    """The last round's model on every measured test point (None before the first model)."""
    from gnn.training import ensemble_energies
    from orchestrator.campaign import unpack_members

    if not rounds or rounds[-1].model_id is None:
        return None
    pairs = [
        (p, r) for p, r in store.labelled_points(campaign_id)
        if p.split == "test" and r["energy_j"] and r["prefill_energy_j"]
    ]  # fmt: skip
    if not pairs:
        return None
    members = unpack_members(store.load_model(rounds[-1].model_id)["checkpoint"])
    points = [p.inference_point() for p, _ in pairs]
    predicted = ensemble_energies(members, points).mean(axis=0)
    labels = [
        f"{pt.architecture.name} {pt.setup.label} b{pt.request.batch_size} "
        f"p{pt.request.prompt_tokens} g{pt.request.generated_tokens}"
        for pt in points
    ]
    measured = np.array([r["energy_j"] for _, r in pairs], dtype=float)
    return FinalPredictions(labels, measured, predicted, np.abs(predicted - measured) / measured)


def _plot_scatter(predictions: FinalPredictions, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.loglog(predictions.measured_j, predictions.predicted_j, "o", alpha=0.7, label="test point")
    low = float(min(predictions.measured_j.min(), predictions.predicted_j.min()))
    high = float(max(predictions.measured_j.max(), predictions.predicted_j.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="exact")
    ax.set_xlabel("measured energy (J)")
    ax.set_ylabel("predicted energy (J)")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot(
    rounds: list[RoundRecord],
    path: Path,
    target: float,
    others: dict[str, list[RoundRecord]] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    measured, mape = _measured_curve(rounds)
    ax.plot(measured, mape, "o-", label=f"test MAPE ({rounds[0].strategy})")
    for name, records in (others or {}).items():
        if records:
            x, y = _measured_curve(records)
            ax.plot(x, y, ".--", alpha=0.7, label=f"{name} ({records[0].strategy})")
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
    """Write the campaign's report folder whole, replacing the one llmco2 wrote before.

    Raises:
        ExportError: ``folder`` is a file or holds files llmco2 did not write, or cannot be
            written (see :mod:`llmco2.outputs`).
    """
    campaign = store.get_campaign(name)
    rounds = store.rounds(campaign.id)
    counts = store.status_counts(campaign.id)
    with atomic_directory(folder, overwrite=True, what="report folder") as staging:
        _write_report(store, name, campaign, rounds, counts, staging,
                      target_mape=target_mape, stop_reason=stop_reason, command=command,
                      include_simulated=include_simulated)  # fmt: skip
    return folder.expanduser().absolute()


def _write_report(
    store: CampaignStore,
    name: str,
    campaign: CampaignInfo,
    rounds: list[RoundRecord],
    counts: dict[str, int],
    folder: Path,
    *,
    target_mape: float,
    stop_reason: str,
    command: str,
    include_simulated: bool,
) -> None:
    export = export_campaign(
        store, name, "parquet", folder / "dataset", include_simulated=include_simulated
    )
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
    manifest = json.loads((export.out_dir / MANIFEST_NAME).read_text("utf-8"))
    lines += _reference_section(manifest.get("reference"))
    lines += _serving_section(export.out_dir, manifest["counts"])
    predictions = final_test_predictions(store, campaign.id, rounds)
    if predictions is not None:
        scores = Scores.of(predictions.predicted_j, predictions.measured_j)
        lines += [
            "", "## Measured vs predicted",
            "",
            f"The last round's model on the {scores.count} test points: MAPE {scores.mape:.2f} %, "
            f"EBA5 {scores.eba5:.0f} %, EBA10 {scores.eba10:.0f} %, EBA30 {scores.eba30:.0f} %, "
            f"median error {100 * float(np.median(predictions.errors)):.2f} %.",
            "", "| worst test points | measured J | predicted J | error % |",
            "| --- | --- | --- | --- |",
        ]  # fmt: skip
        for i in np.argsort(-predictions.errors, kind="stable")[:WORST_LISTED]:
            lines.append(
                f"| {predictions.labels[i]} | {predictions.measured_j[i]:.4g} | "
                f"{predictions.predicted_j[i]:.4g} | {100 * predictions.errors[i]:.1f} |"
            )
        _plot_scatter(predictions, folder / "measured_vs_predicted.png")
        lines += ["", "![measured vs predicted](measured_vs_predicted.png)"]
    others = {c.name: store.rounds(c.id) for c in store.list_campaigns() if c.name != campaign.name}
    lines += _comparison(name, rounds, others, target_mape)
    if rounds:
        _plot(rounds, folder / "mape_per_round.png", target_mape, others)
        lines += ["", "![MAPE per round](mape_per_round.png)"]
    (folder / "report.md").write_text("\n".join(lines) + "\n", "utf-8")


def _reference_section(summary: dict[str, Any] | None) -> list[str]:
    """The reference point's energy over the campaign's runs, overall and per GPU."""
    if summary is None:
        return []
    point = summary["point"]
    lines = [
        "", "## Reference point",
        "",
        f"{point['model_name']}, {point['batch_size']} × {point['prompt_tokens']} → "
        f"{point['generated_tokens']} tokens on {point['gpu_count']} × {point['gpu_type']}, "
        "measured once per run: its spread is the noise floor of the data.",
        "", "| GPU (first UUID) | measurements | mean J | min J | max J | CV % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for label, spread in [*summary["per_gpu"].items(), ("all", summary["all"])]:
        cv = spread["cv_percent"]
        lines.append(
            f"| {label} | {spread['measurements']} | {spread['mean_j']:.4g} | "
            f"{spread['min_j']:.4g} | {spread['max_j']:.4g} | "
            f"{'-' if cv is None else f'{cv:.2f}'} |"
        )
    return lines


def _serving_section(dataset: Path, counts: dict[str, Any]) -> list[str]:
    """Every measured serving load beside what the serving prediction expects of it."""
    from gnn.predict import default_predictor
    from gnn.serving import predict_serving
    from storage.export import read_exported_serving
    from workers.serving import ServingLoad

    loads = read_exported_serving([dataset], include_simulated=True)
    if not loads:
        return []
    lines = [
        "", "## Serving loads",
        "",
        f"{len(loads)} loads measured ({counts.get('serving_failures', 0)} failed or "
        "infeasible): energy per request at steady state beside the serving prediction "
        "(`llmco2 predict --concurrency/--rate`, with the shipped serving correction).",
        "", "| model | GPUs | trace | load | requests | J/request | predicted J | error % | "
        "req/s | TTFT p50 s | TPOT p50 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    predictor = default_predictor()
    errors = []
    for served in loads:
        row = served.row
        load = ServingLoad(
            row["trace"], row["requests"], row["concurrency"], row["rate_per_s"],
            row["max_context"], row["seed"],
        )  # fmt: skip
        measured = row["per_request_j"]
        try:
            predicted: float | None = predict_serving(
                predictor, served.architecture, served.setup, load, served.precision,
                row["engine_max_num_seqs"] or row["max_num_seqs"],
            ).result.per_request_j  # fmt: skip
        except Llmco2Error:
            predicted = None
        error = "-"
        if predicted is not None and measured:
            errors.append(abs(predicted - measured) / measured)
            error = f"{100 * errors[-1]:.1f}"
        tpot = row["tpot_p50_s"]
        lines.append(
            f"| {row['model_name']} | {row['gpu_count']} × {row['gpu_type']} | {row['trace']} | "
            f"{load.name} | {row['requests']} | {_number(measured)} | {_number(predicted)} | "
            f"{error} | {row['requests_per_s']:.3g} | {_number(row['ttft_p50_s'])} | "
            f"{_number(None if tpot is None else 1000 * tpot)} |"
        )
    if errors:
        lines += ["", f"Serving prediction MAPE on these loads: {100 * np.mean(errors):.2f} %."]
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _comparison(
    name: str,
    rounds: list[RoundRecord],
    others: dict[str, list[RoundRecord]],
    target: float,
) -> list[str]:
    """The strategy comparison: every campaign of the database, this one first."""
    lines = [
        "", "## Strategy comparison",
        "",
        "Campaigns in this database (each on its own test points: compare them when their "
        "priors match; `experiments/benchmarks/strategy_benchmark.py` compares the strategies "
        "on one yardstick).",
        "", f"| campaign | strategy | rounds | points measured | last test MAPE % | "
        f"measured when ≤ {target:g} % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for campaign, records in {name: rounds, **others}.items():
        if not records:
            lines.append(f"| {campaign} | - | 0 | 0 | - | - |")
            continue
        measured, mape = _measured_curve(records)
        reached = first_reaching(list(zip(measured, mape, strict=True)), target)
        lines.append(
            f"| {campaign} | {records[0].strategy} | {len(records)} | {measured[-1]} | "
            f"{mape[-1]:.2f} | {reached if reached is not None else '-'} |"
        )
    return lines
