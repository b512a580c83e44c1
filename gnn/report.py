"""The evaluation report: tables, plots and the exact command, written atomically to a folder.

``report.md`` holds one table per split (methods × MAPE / EBA5 / EBA10 / EBA30), the per-family
and per-setup breakdown of our model and the best baseline, per-phase scores, and the quality
bars; ``scatter.png`` shows measured against predicted energy and ``error_cdf.png`` the CDF of
absolute relative errors (random split); ``results.json`` holds every number and prediction.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np

from gnn.evaluation import EvaluationResult, MethodScores
from gnn.metrics import Scores
from llmco2.errors import ExportError
from llmco2.version import code_version

#: The bars of the specification, on real held-out data.
BARS = {"mape": 5.0, "eba10": 90.0, "family_mape": 10.0, "gpu_mape": 12.0}


def _row(name: str, s: Scores) -> str:
    return f"| {name} | {s.count} | {s.mape:.1f} | {s.eba5:.0f} | {s.eba10:.0f} | {s.eba30:.0f} |"


_HEADER = (
    "| | points | MAPE % | EBA5 % | EBA10 % | EBA30 % |\n| --- | --- | --- | --- | --- | --- |"
)


def _split_table(result: EvaluationResult, split: str) -> list[str]:
    lines = [_HEADER]
    for method in result.methods:
        scores = result.get(method, split)
        if scores is not None:
            lines.append(_row(method, scores.overall))
    return lines


def _breakdown(scores: MethodScores, attribute: str) -> list[str]:
    lines = [_HEADER]
    for group, s in getattr(scores, attribute).items():
        lines.append(_row(group, s))
    return lines


def _bars(result: EvaluationResult) -> list[str]:
    ours = {split: result.get("llmco2", split) for split in ("random", "family", "gpu")}
    lines = ["| bar | target | ours | met |", "| --- | --- | --- | --- |"]

    def add(label: str, target: str, value: float | None, ok: bool | None) -> None:
        shown = "not run" if value is None else f"{value:.1f} %"
        lines.append(
            f"| {label} | {target} | {shown} | {'-' if ok is None else 'yes' if ok else 'no'} |"
        )

    rnd = ours["random"]
    add("MAPE, held-out configurations", "≤ 5 %", rnd.overall.mape if rnd else None,
        rnd.overall.mape <= BARS["mape"] if rnd else None)  # fmt: skip
    add("EBA10, held-out configurations", "≥ 90 %", rnd.overall.eba10 if rnd else None,
        rnd.overall.eba10 >= BARS["eba10"] if rnd else None)  # fmt: skip
    fam = ours["family"]
    add("MAPE, unseen family", "≤ 10 %", fam.overall.mape if fam else None,
        fam.overall.mape <= BARS["family_mape"] if fam else None)  # fmt: skip
    gpu = ours["gpu"]
    add("MAPE, unseen GPU type", "≤ 12 %", gpu.overall.mape if gpu else None,
        gpu.overall.mape <= BARS["gpu_mape"] if gpu else None)  # fmt: skip
    return lines


def _plots(result: EvaluationResult, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = result.measured_total_j
    split = "random" if any(r.split == "random" for r in result.results) else None
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
        ax.set_title(f"{run.method}: MAPE {run.overall.mape:.1f} %")
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
    ax.set_xlabel("absolute relative error of total energy (%)")
    ax.set_ylabel("share of held-out points")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "error_cdf.png", dpi=110)
    plt.close(fig)
    return ["scatter.png", "error_cdf.png"]


def _markdown(result: EvaluationResult, command: str, plots: list[str]) -> str:
    kind = "simulated (digital twin)" if result.simulated else "real measurements"
    cfg = result.train_config
    out = [
        "# Predictor evaluation",
        "",
        f"- Data: {result.source} — {result.points} points, {kind}",
        f"- Code: llmco2 {code_version()}",
        f"- GNN training: {cfg.epochs} epochs max, patience {cfg.patience}, "
        f"lr {cfg.learning_rate}, batch {cfg.batch_size}, seed {cfg.seed}",
        "- Scores are of total energy per request; each point is predicted once per split, by the "
        "model that did not see it.",
        "",
        "Made by:",
        "",
        f"    {command}",
        "",
    ]
    titles = {
        "random": "Random held-out configurations",
        "family": "Leave one model family out",
        "gpu": "Leave one GPU type out",
        "tp": "Leave one GPU count out",
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
    ours = result.get("llmco2", "random")
    if ours is not None:
        out += ["## llmco2 per family and GPU setup (random split)", ""]
        out += [*_breakdown(ours, "by_family"), "", *_breakdown(ours, "by_setup"), ""]
        phases = []
        if ours.prefill:
            phases.append(_row("prefill", ours.prefill))
        if ours.decode:
            phases.append(_row("decode (requests with > 1 token)", ours.decode))
        if phases:
            out += ["Per phase (random split):", "", _HEADER, *phases, ""]
    out += ["## Quality bars", "", *_bars(result), ""]
    if result.simulated:
        out += ["These are simulated data: the bars apply to real measurements.", ""]
    for plot in plots:
        out += [f"![{plot}]({plot})", ""]
    return "\n".join(out)


def write_report(
    result: EvaluationResult, out_dir: Path, command: str, *, overwrite: bool = False
) -> Path:
    """Write the report folder atomically (a staging folder renamed into place).

    Raises:
        ExportError: The folder exists (without ``overwrite``) or cannot be written.
    """
    out_dir = out_dir.expanduser().absolute()
    if out_dir.exists() and not overwrite:
        raise ExportError(f"report folder {str(out_dir)!r} exists; pass --overwrite to replace it")
    staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
        plots = _plots(result, staging)
        (staging / "report.md").write_text(_markdown(result, command, plots), "utf-8")
        (staging / "results.json").write_text(
            json.dumps({"command": command, **result.to_dict()}, indent=1), "utf-8"
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"cannot write the report to {str(out_dir)!r}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
