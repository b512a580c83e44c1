"""The evaluation report: tables, plots and the exact command, written atomically to a folder.

``report.md`` holds one table per split (methods × MAPE / EBA5 / EBA10 / EBA30, per-phase and
latency MAPE, interval coverage), llmco2's and the analytical model's breakdown on unseen shapes
(per family, size band, TP degree, phase), the points each model gets most wrong, and the quality
bars; ``scatter.png`` shows measured against predicted energy and ``error_cdf.png`` the CDF of
absolute relative errors (on unseen shapes when that split ran, else the first split);
``results.json`` holds every number and prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gnn.evaluation import SIZE_SPLIT_B, EvaluationResult, MethodScores
from gnn.hybrid import INTERVAL_LEVEL
from gnn.metrics import Scores
from llmco2.outputs import atomic_directory
from llmco2.version import code_version

#: The bars of the specification, on real held-out data: (split, what, target, higher is better).
BARS: tuple[tuple[str, str, str, float, bool], ...] = (
    ("shape", "mape", "MAPE, unseen architecture shape", 5.0, False),
    ("shape", "eba10", "EBA10, unseen architecture shape", 90.0, True),
    ("family", "mape", "MAPE, unseen family", 6.0, False),
    ("tp", "mape", "MAPE, unseen TP degree", 8.0, False),
    ("gpu", "mape", "MAPE, unseen GPU type", 12.0, False),
    ("random", "mape", "MAPE, random held-out configurations", 4.1, False),
)
#: Size extrapolation: each direction ≤ this MAPE.
SIZE_BAR = 6.0
#: The interval's coverage on held-out shapes: within this many points of its nominal level.
COVERAGE_TOLERANCE = 3.0


def _row(name: str, s: Scores) -> str:
    return f"| {name} | {s.count} | {s.mape:.1f} | {s.eba5:.0f} | {s.eba10:.0f} | {s.eba30:.0f} |"


_HEADER = (
    "| | points | MAPE % | EBA5 % | EBA10 % | EBA30 % |\n| --- | --- | --- | --- | --- | --- |"
)


def _split_table(result: EvaluationResult, split: str) -> list[str]:
    lines = [
        "| | points | MAPE % | EBA5 % | EBA10 % | EBA30 % | prefill MAPE % | decode MAPE % "
        "| latency MAPE % | 80 % interval coverage % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for method in result.methods:
        scores = result.get(method, split)
        if scores is not None:
            s = scores.overall
            lines.append(
                f"| {method} | {s.count} | {s.mape:.1f} | {s.eba5:.0f} | {s.eba10:.0f} "
                f"| {s.eba30:.0f} | {cell(scores.prefill.mape if scores.prefill else None)} "
                f"| {cell(scores.decode.mape if scores.decode else None)} "
                f"| {cell(scores.latency.mape if scores.latency else None)} "
                f"| {cell(scores.coverage)} |"
            )
    return lines


def _breakdown(scores: MethodScores, attribute: str) -> list[str]:
    lines = [_HEADER]
    for group, s in getattr(scores, attribute).items():
        lines.append(_row(group, s))
    return lines


def _bars(result: EvaluationResult) -> list[str]:
    lines = ["| bar | target | llmco2 | met |", "| --- | --- | --- | --- |"]

    def add(label: str, target: str, value: float | None, ok: bool | None) -> None:
        shown = "not run" if value is None else f"{value:.1f} %"
        lines.append(
            f"| {label} | {target} | {shown} | {'-' if ok is None else 'yes' if ok else 'no'} |"
        )

    for split, key, label, target, higher in BARS:
        ours = result.get("llmco2", split)
        value = None if ours is None else getattr(ours.overall, key)
        ok = None if value is None else (value >= target if higher else value <= target)
        add(label, f"{'≥' if higher else '≤'} {target:g} %", value, ok)
    size = result.get("llmco2", "size")
    for fold, scores in size.by_fold.items() if size else []:
        add(f"MAPE, size extrapolation {fold}", f"≤ {SIZE_BAR:g} %", scores.mape,
            scores.mape <= SIZE_BAR)  # fmt: skip
    shape = result.get("llmco2", "shape")
    coverage = shape.coverage if shape else None
    nominal = 100 * INTERVAL_LEVEL
    add(
        f"coverage of the {nominal:.0f} % interval, unseen shapes",
        f"{nominal:.0f} ± {COVERAGE_TOLERANCE:g}",
        coverage,
        None if coverage is None else abs(coverage - nominal) <= COVERAGE_TOLERANCE,
    )
    physics, gnn = result.get("physics", "shape"), result.get("gnn", "shape")
    if shape is not None and physics is not None and gnn is not None:
        lines += [
            "",
            f"On unseen shapes llmco2 scores {shape.overall.mape:.1f} % MAPE against "
            f"{physics.overall.mape:.1f} % for the analytical model alone and "
            f"{gnn.overall.mape:.1f} % for the pure GNN.",
        ]
    return lines


def _worst(result: EvaluationResult, method: str, split: str, count: int = 8) -> list[str]:
    """The points a method gets most wrong on a split, with what characterises them."""
    scores = result.get(method, split)
    measured = result.measured_total_j
    if scores is None or measured is None or not result.point_info:
        return []
    errors = scores.predicted[:, 2] / measured - 1.0
    order = [i for i in np.argsort(-np.abs(np.nan_to_num(errors))) if np.isfinite(errors[i])]
    lines = [
        f"{method}, {split} split: the {count} points it gets most wrong",
        "",
        "| shape | TP | size (B) | batch × prompt → generated | prefill share of energy "
        "| measured J | error % |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i in order[:count]:
        info = result.point_info[i]
        lines.append(
            f"| {info['shape']} | {info['tp']} | {info['size_b']:.1f} "
            f"| {info['batch']} × {info['prompt']} → {info['generated']} "
            f"| {100 * info['prefill_share']:.0f} % | {measured[i]:.1f} | {100 * errors[i]:+.1f} |"
        )
    return [*lines, ""]


def _plots(result: EvaluationResult, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = result.measured_total_j
    present = {r.split for r in result.results}
    split = next((s for s in ("shape", "random", *sorted(present)) if s in present), None)
    if measured is None or split is None:
        return []
    runs = [r for r in result.results if r.split == split]
    columns = min(len(runs), 3)
    rows = (len(runs) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.0 * rows), squeeze=False)
    low, high = float(measured.min()) * 0.5, float(measured.max()) * 2.0
    for ax, run in zip(axes.flat, runs, strict=False):
        ax.loglog(measured, run.predicted[:, 2], ".", alpha=0.6, markersize=4)
        ax.plot([low, high], [low, high], "k--", linewidth=0.8)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_title(f"{run.method} ({split}): MAPE {run.overall.mape:.1f} %")
        ax.set_xlabel("measured energy (J)")
        ax.set_ylabel("predicted energy (J)")
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(folder / "scatter.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        errors = np.sort(np.abs(run.predicted[:, 2] - measured) / measured * 100)
        ax.plot(errors, np.arange(1, len(errors) + 1) / len(errors), label=run.method)
    for bound in (5, 10, 30):
        ax.axvline(bound, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(f"absolute relative error of total energy (%), {split} split")
    ax.set_ylabel("share of held-out points")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "error_cdf.png", dpi=110)
    plt.close(fig)
    return ["scatter.png", "error_cdf.png"]


def _noise_floor(result: EvaluationResult) -> list[str]:
    if result.noise_floor is None:
        return [
            "Not measured: it needs the random split and configurations measured on two or more "
            "physical GPUs (recorded UUIDs)."
        ]
    method, spread = result.noise_floor
    lines = [
        f"{spread.configurations} configurations (shape, GPU setup, precision) were measured on "
        f"two or more of {spread.gpus} physical GPUs ({spread.points} points). Through {method}'s "
        "residuals on random held-out configurations, the same configuration's energy differs "
        f"between GPUs by **{spread.spread_pct:.1f} %** (one standard deviation): a predictor "
        f"exact for the average GPU would still be **{spread.floor_mape:.1f} %** off (MAPE). "
        "Per GPU, its mean offset:",
        "",
        "| GPU (first UUID) | offset % |",
        "| --- | --- |",
    ]
    lines += [
        f"| {gpu} | {100 * np.expm1(offset):+.1f} |"
        for gpu, offset in sorted(spread.offsets.items(), key=lambda item: item[1])
    ]
    return lines


def _markdown(result: EvaluationResult, command: str, plots: list[str]) -> str:
    kind = "simulated (digital twin)" if result.simulated else "real measurements"
    cfg = result.train_config
    out = [
        "# Predictor evaluation",
        "",
        f"- Data: {result.source} — {result.points} points, {kind}",
        f"- Code: llmco2 {code_version()}",
        f"- GNN training: {cfg.epochs} epochs max, patience {cfg.patience}, "
        f"lr {cfg.learning_rate}, batch {cfg.batch_size}, seed {cfg.seed}; llmco2's corrections: "
        + (
            f"{cfg.correction_epochs} epochs on every training row"
            if cfg.correction_epochs
            else "early stopping as the GNNs"
        ),
        "- Scores are of total energy per request; each point is predicted once per split, by the "
        "model that did not see it.",
        "",
        "Made by:",
        "",
        f"    {command}",
        "",
    ]
    out += [f"- Evaluation time: {result.seconds:.0f} s", ""]
    titles = {
        "shape": "Leave one architecture shape out (primary)"
        if result.shape_folds is None
        else f"Whole architecture shapes held out, {result.shape_folds} folds (primary)",
        "family": "Leave one model family out",
        "tp": "Leave one TP degree out",
        "size": f"Size extrapolation (≤ {SIZE_SPLIT_B:g}B ↔ > {SIZE_SPLIT_B:g}B parameters)",
        "gpu": "Leave one GPU type out",
        "random": "Random held-out configurations (the paper's split)",
    }
    for split, title in titles.items():
        out.append(f"## {title}")
        out.append("")
        if split in result.skipped:
            out += [f"Not run: {result.skipped[split]}.", ""]
            continue
        if not any(r.split == split for r in result.results):
            out += ["Not requested.", ""]
            continue
        out += [*_split_table(result, split), ""]
        ours = result.get("llmco2", split)
        if ours is not None and split != "random":
            out += [f"llmco2 per held-out {split}:", "", *_breakdown(ours, "by_fold"), ""]
    for method in ("llmco2", "physics"):
        ours = result.get(method, "shape")
        if ours is None:
            continue
        out += [f"## {method} on unseen shapes: per family, size band, TP degree and phase", ""]
        for attribute in ("by_family", "by_size", "by_tp"):
            out += [*_breakdown(ours, attribute), ""]
        phases = []
        if ours.prefill:
            phases.append(_row("prefill", ours.prefill))
        if ours.decode:
            phases.append(_row("decode (requests with > 1 token)", ours.decode))
        if phases:
            out += [_HEADER, *phases, ""]
    out += ["## Where the models are most wrong (unseen shapes)", ""]
    for method in ("llmco2", "physics", "gnn"):
        out += _worst(result, method, "shape")
    out += ["## Quality bars", "", *_bars(result), ""]
    out += ["## The noise floor: one configuration on different GPUs", ""]
    out += [*_noise_floor(result), ""]
    if result.simulated:
        out += ["These are simulated data: the bars apply to real measurements.", ""]
    for plot in plots:
        out += [f"![{plot}]({plot})", ""]
    return "\n".join(out)


def write_report(
    result: EvaluationResult, out_dir: Path, command: str, *, overwrite: bool = False
) -> Path:
    """Write the report folder atomically (see :mod:`llmco2.outputs`).

    Raises:
        ExportError: The target is a file, a non-empty folder llmco2 did not write (or one it
            wrote, without ``overwrite``), or cannot be written.
    """
    out_dir = out_dir.expanduser().absolute()
    with atomic_directory(out_dir, overwrite=overwrite, what="report folder") as staging:
        plots = _plots(result, staging)
        (staging / "report.md").write_text(_markdown(result, command, plots), "utf-8")
        (staging / "results.json").write_text(
            json.dumps({"command": command, **result.to_dict()}, indent=1), "utf-8"
        )
    return out_dir
