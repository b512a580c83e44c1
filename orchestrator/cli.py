"""The ``llmco2`` command line (also ``python -m orchestrator``).

Every error a user can cause ends in one line on stderr (``llmco2: error: ...``) and a non-zero
exit code (2 for bad input), never a traceback. Heavy dependencies are imported inside the
commands that need them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from llmco2 import __version__
from llmco2.defaults import DEFAULT_DATABASE_URL
from llmco2.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, Llmco2Error, MissingDependencyError

app = typer.Typer(
    name="llmco2",
    help="Energy and carbon of LLM inference requests, predicted before they run.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Pipes and CI logs get a fixed width wide enough for the kernel tables instead of Rich's 80.
_stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 150)

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


def _gpu_catalog(gpu_file: Path | None) -> Any:
    """The default GPU catalog, plus a user's GPU file."""
    from featurize import GpuCatalog

    catalog = GpuCatalog.default()
    return catalog.with_file(gpu_file) if gpu_file is not None else catalog


def _si(value: float, unit: str = "") -> str:
    """Three significant digits with an SI prefix: 1.43e13 → '14.3 T'."""
    if value == 0:
        return f"0 {unit}".rstrip()
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} µs"


@app.command()
def featurize(
    model: ModelArg,
    gpu: GpuOption = "H100-SXM",
    tp: TpOption = 1,
    batch: BatchOption = 1,
    prompt: PromptOption = 1024,
    gen: GenOption = 128,
    flash: Annotated[bool, typer.Option(help="Fused flash attention (vLLM's default).")] = True,
    wbits: Annotated[int, typer.Option(help="Weight bits (16, 8, 4).")] = 16,
    abits: Annotated[int, typer.Option(help="Activation bits (16, 8).")] = 16,
    kvbits: Annotated[int, typer.Option(help="KV-cache bits (16, 8, 4).")] = 16,
    expert_wbits: ExpertBitsOption = None,
    gpu_file: GpuFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Per-kernel roofline features of one request, for the prefill and the decode phase."""
    from featurize import (
        GpuSetup,
        InferencePoint,
        InferenceRequest,
        Precision,
        check_fits,
        resolve_architecture,
        summarize_point,
    )

    request = InferenceRequest(batch, prompt, gen)
    precision = Precision(wbits, abits, kvbits, expert_wbits)
    setup = GpuSetup(_gpu_catalog(gpu_file).get(gpu), tp)
    architecture = resolve_architecture(model)
    point = InferencePoint(architecture, request, setup, precision, flash)
    check_fits(point)
    summary = summarize_point(point)
    if as_json:
        _stdout.print_json(json.dumps(summary))
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, object]) -> None:
    request = summary["request"]
    hardware = summary["hardware"]
    assert isinstance(request, dict) and isinstance(hardware, dict)
    _stdout.print(
        f"[bold]{summary['model']}[/] on {hardware['gpu_count']}×{hardware['gpu']} "
        f"({hardware['interconnect']}), batch {request['batch_size']}, "
        f"prompt {request['prompt_tokens']}, generate {request['generated_tokens']}; "
        "per GPU, whole request"
    )
    for phase in ("prefill", "decode"):
        data = summary[phase]
        assert isinstance(data, dict)
        table = Table(title=f"{phase} phase", title_justify="left", show_footer=True)
        total = data["total"]
        columns = [
            ("kernel", "total", "left"),
            ("calls", "", "right"),
            ("O (FLOP)", _si(total["flops"]), "right"),
            ("M (bytes)", _si(total["memory_bytes"], "B"), "right"),
            ("weights", _si(total["weight_bytes"], "B"), "right"),
            ("KV cache", _si(total["kv_read_bytes"] + total["kv_write_bytes"], "B"), "right"),
            ("I (bytes)", _si(total["network_bytes"], "B"), "right"),
            ("O/M", "", "right"),
            ("P (FLOP/s)", "", "right"),
            ("time", _seconds(total["roofline_time_s"]), "right"),
            ("bound", "", "left"),
        ]
        for header, footer, justify in columns:
            table.add_column(header, footer=footer, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for name, k in data["kernels"].items():
            table.add_row(
                name,
                str(k["calls"]),
                _si(k["flops"]),
                _si(k["memory_bytes"], "B"),
                _si(k["weight_bytes"], "B"),
                _si(k["kv_read_bytes"] + k["kv_write_bytes"], "B"),
                _si(k["network_bytes"], "B"),
                f"{k['memory_intensity']:.3g}",
                _si(k["roofline_performance_flops_per_s"]),
                _seconds(k["roofline_time_s"]),
                k["bound"] or "-",
            )
        _stdout.print(table)
    memory = summary["memory_per_gpu"]
    assert isinstance(memory, dict)
    _stdout.print(
        f"memory per GPU: weights {_si(memory['weights_bytes'], 'B')}, "
        f"KV cache {_si(memory['kv_cache_bytes'], 'B')}, "
        f"activations {_si(memory['activations_bytes'], 'B')}; "
        f"needs {_si(memory['required_bytes'], 'B')} of {_si(memory['usable_bytes'], 'B')} usable"
    )


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """List the built-in LLM architectures (the paper's 17 models and later ones)."""
    from featurize import catalog_models

    if as_json:
        _stdout.print_json(
            json.dumps(
                [
                    {
                        "id": entry.id,
                        "aliases": list(entry.aliases),
                        "total_params": entry.architecture.total_params,
                        "context_window": entry.context_window,
                        "architecture": entry.architecture.to_dict(),
                        "source": entry.source,
                    }
                    for entry in catalog_models()
                ]
            )
        )
        return
    table = Table(title="LLM catalog")
    for header in ("id", "aliases", "family", "params", "layers", "hidden", "heads/kv", "vocab"):
        table.add_column(header)
    for entry in catalog_models():
        a = entry.architecture
        experts = f", {a.num_experts} experts top-{a.experts_per_token}" if a.is_moe else ""
        table.add_row(
            entry.id,
            ", ".join(entry.aliases),
            a.family + experts,
            f"{a.total_params / 1e9:.2f} B",
            str(a.num_layers),
            str(a.hidden_size),
            f"{a.num_heads}/{a.num_kv_heads}",
            str(a.vocab_size),
        )
    _stdout.print(table)


@app.command()
def gpus(
    gpu_file: GpuFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List the GPU catalog with dense datasheet figures."""
    catalog = _gpu_catalog(gpu_file)
    if as_json:
        _stdout.print_json(json.dumps([gpu.entry.model_dump(mode="json") for gpu in catalog]))
        return
    table = Table(title="GPU catalog (dense peak throughput)")
    for header in (
        "id",
        "memory",
        "bandwidth",
        "BF16/FP16",
        "INT8",
        "FP32",
        "GPU link",
        "TDP",
        "die",
        "NVML names",
    ):
        table.add_column(header)
    for gpu in catalog:
        e = gpu.entry
        peaks = e.peak_tflops_dense
        link = f"{gpu.interconnect} {e.link_gbps or e.pcie_gbps:g} GB/s"
        table.add_row(
            e.id,
            f"{e.memory_gb:g} GB",
            f"{e.memory_bandwidth_gbps:g} GB/s",
            f"{peaks.bf16 or peaks.fp16:g} T",
            f"{peaks.int8:g} T" if peaks.int8 else "-",
            f"{peaks.fp32:g} T",
            link,
            f"{e.tdp_w:g} W",
            f"{e.die_area_mm2:g} mm²",
            ", ".join(e.nvml_names),
        )
    _stdout.print(table)


db_app = typer.Typer(
    help="Database schema: show the revision, migrate to the newest.", no_args_is_help=True
)
app.add_typer(db_app, name="db")

DbOption = Annotated[
    str, typer.Option("--db", help="SQLAlchemy URL (sqlite:///FILE or postgresql+psycopg://...).")
]


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
        _stdout.print(f"{mask_url(db)}: schema already at revision {after}")
    else:
        _stdout.print(f"{mask_url(db)}: schema upgraded from {before or 'empty'} to {after}")


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
    _stdout.print(f"{mask_url(db)}: revision {revision or 'none'} (this llmco2: {head_revision()})")


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
    catalog = _gpu_catalog(gpu_file)
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
    _stdout.print(
        f"exported {result.points} points{served} and {result.failures} failures of {campaign!r} "
        f"to {result.out_dir}{note}"
    )


@app.command()
def measure(
    model: ModelArg,
    gpu: Annotated[str, typer.Option(help="GPU type, or 'auto' to detect it.")] = "auto",
    tp: TpOption = 1,
    batch: BatchOption = 1,
    prompt: PromptOption = 1024,
    gen: GenOption = 128,
    engine: Annotated[str, typer.Option(help="vllm, transformers or simulated.")] = "vllm",
    repeats: Annotated[int, typer.Option(help="Measurement windows per phase.")] = 3,
    min_window: Annotated[float, typer.Option(help="Shortest window in seconds.")] = 2.0,
    flash: Annotated[bool, typer.Option(help="Fused flash attention.")] = True,
    wbits: Annotated[int, typer.Option(help="Weight bits (16, 8).")] = 16,
    abits: Annotated[
        int, typer.Option(help="Activation bits (16, 8; 8 with --wbits 8 is FP8 W8A8).")
    ] = 16,
    kvbits: Annotated[int, typer.Option(help="KV-cache bits (16, 8).")] = 16,
    expert_wbits: ExpertBitsOption = None,
    seed: Annotated[int, typer.Option(help="Seed of prompts and weights.")] = 0,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to use (default: a local one).")
    ] = None,
    gpu_file: GpuFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Measure one request's energy and latency on this machine through a Ray worker actor."""
    import dataclasses

    from featurize import InferenceRequest, Precision, resolve_architecture
    from llmco2.errors import EngineUnavailableError, InvalidRequestError
    from workers.engines import ENGINE_NAMES
    from workers.local import resolve_measurement_gpu

    if engine not in ENGINE_NAMES:
        raise EngineUnavailableError(
            f"unknown engine {engine!r} (choose one of {', '.join(ENGINE_NAMES)})"
        )
    if repeats < 1 or min_window <= 0:
        raise InvalidRequestError("--repeats must be ≥ 1 and --min-window > 0")
    request = InferenceRequest(batch, prompt, gen)
    precision = Precision(wbits, abits, kvbits, expert_wbits)
    architecture = resolve_architecture(model)
    architecture.check_tensor_parallel(tp)
    target, note = resolve_measurement_gpu(engine, gpu, tp, _gpu_catalog(gpu_file))

    from workers.engines import EngineConfig
    from workers.local import measure_locally
    from workers.protocol import ProtocolSettings

    config = EngineConfig(architecture, precision, tp, target, flash, seed)
    settings = ProtocolSettings(windows=repeats, min_window_s=min_window)
    result, timing = measure_locally(engine, config, request, settings, ray_address)
    if as_json:
        record = dataclasses.asdict(result.record) if result.record is not None else None
        _stdout.print_json(
            json.dumps(
                {
                    "model": architecture.name,
                    "gpu": target.id if target is not None else "cpu",
                    "tp": tp,
                    "engine": engine,
                    "request": dataclasses.asdict(request),
                    "status": result.status,
                    "error": result.error_message,
                    "measurement": record,
                    "timing": timing,
                    "note": note,
                },
                default=str,
            )
        )
    else:
        _print_measurement(architecture.name, target, tp, engine, request, result, timing, note)
    if result.status != "COMPLETE":
        raise _measure_failure(result)


def _measure_failure(result: Any) -> Exception:
    from llmco2.errors import InfeasibleConfigError, MeasurementError

    message = f"{result.status.lower()}: {result.error_message}"
    if result.status == "INFEASIBLE":
        return InfeasibleConfigError(message)
    return MeasurementError(message)


def _print_measurement(
    name: str,
    target: Any,
    tp: int,
    engine: str,
    request: Any,
    result: Any,
    timing: dict[str, float],
    note: str | None,
) -> None:
    where = f"{tp}×{target.id}" if target is not None else "CPU"
    _stdout.print(
        f"[bold]{name}[/] on {where} with {engine}: batch {request.batch_size}, "
        f"prompt {request.prompt_tokens}, generate {request.generated_tokens}"
    )
    if note:
        _stdout.print(f"note: {note}")
    record = result.record
    if record is None:
        return
    table = Table(show_header=True)
    for header in ("phase", "energy", "latency", "power"):
        table.add_column(header, justify="right" if header != "phase" else "left")

    def joules(value: float | None) -> str:
        return f"{value:.2f} J" if value is not None else "n/a (no energy counter)"

    decode_latency = (
        record.decode_latency_per_token_s * (request.generated_tokens - 1)
        if record.decode_latency_per_token_s is not None
        else None
    )
    table.add_row(
        "prefill",
        joules(record.prefill_energy_j),
        _seconds(record.prefill_latency_s) if record.prefill_latency_s is not None else "-",
        "",
    )
    table.add_row(
        "decode",
        joules(record.decode_energy_j),
        _seconds(decode_latency) if decode_latency is not None else "-",
        "",
    )
    power = f"{record.avg_power_w:.0f} W" if record.avg_power_w is not None else "-"
    table.add_row("total", joules(record.energy_j), _seconds(record.latency_s), power)
    _stdout.print(table)
    cv = f"{record.energy_cv:.2%}" if record.energy_cv is not None else "n/a"
    idle = f"{record.idle_power_w:.0f} W" if record.idle_power_w is not None else "n/a"
    period = f"{record.counter_period_s * 1000:.0f} ms" if record.counter_period_s else "n/a"
    _stdout.print(
        f"repeats {record.repeats}, energy CV {cv}{' (noisy)' if record.noisy else ''}, "
        f"idle power {idle}, counter period {period}, engine {record.engine_version}, "
        f"duty cycle {timing.get('duty_cycle', 0):.0%} of {timing.get('held_s', 0):.0f} s held"
        + (" (simulated)" if record.simulated else "")
    )


@app.command()
def predict(
    model: ModelArg,
    gpu: GpuOption = "H100-SXM",
    tp: TpOption = 1,
    batch: BatchOption = 1,
    prompt: PromptOption = 1024,
    gen: GenOption = 128,
    region: RegionOption = None,
    intensity: IntensityOption = None,
    pue: PueOption = 1.0,
    model_path: Annotated[
        Path | None, typer.Option("--model", help="Predictor checkpoint (default: shipped).")
    ] = None,
    sweep_gpus: Annotated[str | None, typer.Option(help="Compare GPU counts, e.g. 1,2,4.")] = None,
    lifetime_years: Annotated[
        float, typer.Option(help="Hardware lifetime for embodied carbon (years).")
    ] = 5.0,
    plot: Annotated[
        Path | None, typer.Option(help="With --sweep-gpus: write a PNG of energy and carbon.")
    ] = None,
    wbits: Annotated[int, typer.Option(help="Weight bits (16, 8, 4).")] = 16,
    abits: Annotated[int, typer.Option(help="Activation bits (16, 8).")] = 16,
    kvbits: Annotated[int, typer.Option(help="KV-cache bits (16, 8, 4).")] = 16,
    expert_wbits: ExpertBitsOption = None,
    gpu_file: GpuFileOption = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Serving: requests in flight (closed loop); energy per request."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Serving: Poisson arrivals per second (open loop).")
    ] = None,
    sweep_concurrency: Annotated[
        str | None, typer.Option(help="Serving: compare concurrencies, e.g. 1,4,16,64.")
    ] = None,
    trace: Annotated[
        str,
        typer.Option(help="Serving: request lengths from conv, code or a CSV file of requests."),
    ] = "conv",
    requests: Annotated[
        int | None,
        typer.Option(help="Serving: requests replayed (default max(200, 8 × C); 400 at a rate)."),
    ] = None,
    max_num_seqs: Annotated[
        int | None,
        typer.Option(help="Serving: sequences the engine runs at once (default: vLLM's, 256)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Predict energy per phase, latency, operational and embodied CO2eq of a request.

    With --concurrency, --rate or --sweep-concurrency: the mean energy per request of a serving
    deployment at that load (continuous batching, requests drawn from --trace), at steady state.
    """
    import dataclasses

    from featurize import InferenceRequest, Precision, resolve_model
    from gnn.embodied import EmbodiedAssumptions
    from gnn.predict import load_predictor, predict_energy
    from llmco2.api import carbon_grid, request_points
    from llmco2.errors import InfeasibleConfigError, InvalidRequestError
    from orchestrator.serving_commands import ServingRequestSpec, serving_loads
    from workers.serving import DEFAULT_MAX_CONTEXT

    embodied = EmbodiedAssumptions(lifetime_years=lifetime_years)
    serving = ServingRequestSpec(
        concurrency, rate, sweep_concurrency, trace, requests, max_num_seqs, DEFAULT_MAX_CONTEXT
    )
    if serving.asked and sweep_gpus:
        raise InvalidRequestError(
            "--sweep-gpus compares single requests: leave out the serving load"
        )
    if serving.asked and batch != 1:
        raise InvalidRequestError(
            "--batch is for a single request: a serving load's requests come from --trace"
        )
    if plot is not None and not sweep_gpus and not sweep_concurrency:
        raise InvalidRequestError(
            "--plot draws a sweep: add --sweep-gpus (e.g. 1,2,4) or --sweep-concurrency"
        )
    if plot is not None:
        if plot.expanduser().is_dir():
            raise InvalidRequestError(f"--plot {str(plot)!r} is a folder; give a .png file")
        if plot.suffix.lower() != ".png":
            raise InvalidRequestError(f"--plot {str(plot)!r}: the plot is a PNG, name it *.png")
        if not plot.expanduser().absolute().parent.is_dir():
            raise InvalidRequestError(f"folder of --plot {str(plot)!r} does not exist")
    grid = carbon_grid(region, intensity, pue)
    request = InferenceRequest(batch, prompt, gen)
    precision = Precision(wbits, abits, kvbits, expert_wbits)
    architecture, window = resolve_model(model)
    if serving.asked:
        # Requests drawn from a trace fit the model's context window as well.
        limit = min(window or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
        _predict_serving(
            serving_loads(dataclasses.replace(serving, max_context=limit)),
            serving, architecture, _gpu_catalog(gpu_file).get(gpu), tp, precision, model_path,
            grid, pue, embodied, plot, as_json,
        )  # fmt: skip
        return
    target = _gpu_catalog(gpu_file).get(gpu)
    try:
        counts = [int(c) for c in sweep_gpus.split(",")] if sweep_gpus else [tp]
    except ValueError:
        raise InvalidRequestError(
            f"--sweep-gpus takes counts like 1,2,4, got {sweep_gpus!r}"
        ) from None
    points, unfit = request_points(
        architecture, window, target, counts, batch, prompt, gen, precision
    )
    if unfit and not sweep_gpus:
        raise InfeasibleConfigError(unfit[0][1])
    skipped = [{"gpus": count, "reason": reason} for count, reason in unfit]
    if not points:
        raise InfeasibleConfigError(f"no GPU count of {counts} can run {architecture.name}")
    predictor = load_predictor(model_path)
    results = predict_energy(predictor, points, grid, pue, embodied)
    trained_on = ", ".join(predictor.metadata.get("setups", [])) or "unknown"
    if plot is not None:
        _plot_sweep(
            results, plot, f"{architecture.name}: batch {batch}, prompt {prompt}, gen {gen}"
        )
    if as_json:
        _stdout.print_json(
            json.dumps(
                {
                    "model": architecture.name,
                    "request": dataclasses.asdict(request),
                    "gpu": target.id,
                    "units": {
                        "energy": "J",
                        "latency": "s",
                        "operational_co2": "gCO2eq",
                        "embodied_co2": "gCO2eq",
                    },
                    "assumptions": {
                        "pue": pue,
                        "carbon_intensity_g_per_kwh": grid.g_per_kwh if grid else None,
                        "carbon_intensity_source": grid.source if grid else None,
                        "predictor_trained_on": trained_on,
                        "latency": results[0].latency_source,
                        "interval": (
                            f"{results[0].interval_level:.0%} interval, conformal on "
                            "held-out architecture shapes"
                            if results[0].interval_level is not None
                            else None
                        ),
                        "embodied": embodied.to_dict(),
                    },
                    "predictions": [dataclasses.asdict(r) for r in results],
                    "skipped": skipped,
                }
            )
        )
        return
    table = Table(title=f"{architecture.name}: batch {batch}, prompt {prompt}, generate {gen}")
    level = results[0].interval_level
    interval_header = f"total {level:.0%} interval" if level is not None else "interval"
    headers = ("GPUs", "prefill", "decode", "total", interval_header, "latency",
               "operational CO2eq", "embodied CO2eq", "note")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header in ("GPUs", "note") else "right")
    for r in results:
        table.add_row(
            f"{r.gpus}×{r.gpu}",
            f"{r.prefill_j:.1f} J",
            f"{r.decode_j:.1f} J",
            f"{r.total_j:.1f} J",
            f"{r.total_low_j:.1f}-{r.total_high_j:.1f} J"
            if r.total_low_j is not None and r.total_high_j is not None
            else "-",
            _seconds(r.latency_s),
            f"{r.operational_g:.3g} g" if r.operational_g is not None else "-",
            f"{r.embodied_g:.3g} g",
            "extrapolated" if r.extrapolated else "",
        )
    for skip in skipped:
        table.add_row(f"{skip['gpus']}×{target.id}", *["-"] * 7, "does not fit")
    _stdout.print(table)
    if grid is not None:
        _stdout.print(f"grid: {grid.g_per_kwh:.0f} gCO2eq/kWh ({grid.source}), PUE {pue:g}")
    else:
        _stdout.print("no --region or --intensity given: operational CO2eq not computed")
    _stdout.print(
        f"predictor trained on {trained_on}; 'extrapolated' rows lie outside that data "
        f"(GPU setup, model family or a GPU type without measurements). Latency from the "
        f"{results[0].latency_source}; embodied CO2eq by LLMCarbon's method over a "
        f"{lifetime_years:g}-year lifetime (die, HBM, host share)."
    )
    if plot is not None:
        _stdout.print(f"plot: {plot}")


def _predict_serving(
    loads: list[Any],
    spec: Any,
    architecture: Any,
    gpu: Any,
    tp: int,
    precision: Any,
    model_path: Path | None,
    grid: Any,
    pue: float,
    embodied: Any,
    plot: Path | None,
    as_json: bool,
) -> None:
    """The serving half of ``predict``: one row per load."""
    from featurize import GpuSetup
    from gnn.predict import load_predictor
    from orchestrator.serving_commands import (
        plot_serving,
        predict_deployment,
        serving_correction_note,
    )

    setup = GpuSetup(gpu, tp)
    predictor = load_predictor(model_path)
    rows = predict_deployment(
        predictor, architecture, setup, precision, loads, spec.sequences, grid, pue, embodied
    )
    trained_on = ", ".join(predictor.metadata.get("setups", [])) or "unknown"
    title = f"{architecture.name} on {tp}×{gpu.id}, {spec.trace} trace"
    serving_note = serving_correction_note()
    if plot is not None:
        plot_serving(rows, plot, title)
    if as_json:
        _stdout.print_json(
            json.dumps(
                {
                    "model": architecture.name,
                    "gpu": gpu.id,
                    "gpus": tp,
                    "trace": spec.trace,
                    "units": {
                        "energy": "J per request",
                        "latency": "s",
                        "operational_co2": "gCO2eq per request",
                        "embodied_co2": "gCO2eq per request",
                    },
                    "assumptions": {
                        "max_num_seqs": spec.sequences,
                        "pue": pue,
                        "carbon_intensity_g_per_kwh": grid.g_per_kwh if grid else None,
                        "carbon_intensity_source": grid.source if grid else None,
                        "predictor_trained_on": trained_on,
                        "serving_correction": serving_note,
                        "steady_state": "closed loop: from C running to fewer than C; open "
                        "loop: the arrivals after the first 10 %",
                        "embodied": embodied.to_dict(),
                    },
                    "predictions": rows,
                }
            )
        )
        return
    table = Table(title=title)
    level = rows[0]["interval_level"]
    headers = ("load", "J / request", f"{level:.0%} interval" if level else "interval",
               "mJ / output token", "requests/s", "TTFT p50", "TPOT p50",
               "operational CO2eq", "embodied CO2eq")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header == "load" else "right")
    for r in rows:
        low, high = r["per_request_low_j"], r["per_request_high_j"]
        table.add_row(
            f"C={r['concurrency']}" if r["concurrency"] is not None else f"{r['rate_per_s']:g}/s",
            f"{r['per_request_j']:.1f}",
            f"{low:.1f}-{high:.1f}" if low is not None and high is not None else "-",
            f"{1000 * (r['per_output_token_j'] or 0):.0f}",
            f"{r['requests_per_s']:.2f}",
            _seconds(r["ttft_s"].get("p50", 0.0)),
            _seconds(r["tpot_s"].get("p50", 0.0)),
            f"{r['operational_g']:.3g} g" if r["operational_g"] is not None else "-",
            f"{r['embodied_g']:.3g} g",
        )
    _stdout.print(table)
    _stdout.print(
        f"continuous batching of {loads[0].requests} requests from the {spec.trace} trace per "
        f"load, up to {spec.sequences} at once, replayed on the step costs of the predictor "
        f"trained on {trained_on}, {serving_note}; energy per request at steady state."
    )
    if plot is not None:
        _stdout.print(f"plot: {plot}")


def _plot_sweep(results: list[Any], path: Path, title: str) -> None:
    """Energy and carbon per GPU count (the paper's Figures 9-11 view) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.gpus}×{r.gpu}" for r in results]
    fig, (energy_ax, carbon_ax) = plt.subplots(1, 2, figsize=(10, 4))
    energy_ax.bar(labels, [r.prefill_j for r in results], label="prefill")
    energy_ax.bar(
        labels, [r.decode_j for r in results], bottom=[r.prefill_j for r in results],
        label="decode",
    )  # fmt: skip
    energy_ax.set_ylabel("energy per request (J)")
    energy_ax.legend()
    embodied = [r.embodied_g for r in results]
    carbon_ax.bar(labels, embodied, label="embodied")
    if all(r.operational_g is not None for r in results):
        carbon_ax.bar(
            labels, [r.operational_g for r in results], bottom=embodied, label="operational"
        )
    carbon_ax.set_ylabel("gCO2eq per request")
    carbon_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model_path: Annotated[
        Path | None, typer.Option("--model", help="Predictor checkpoint (default: shipped).")
    ] = None,
) -> None:
    """Serve predictions over HTTP: POST /v1/predict, /v1/models, /v1/gpus, /metrics, /docs."""
    from llmco2.api import Predictor
    from llmco2.errors import InvalidRequestError
    from llmco2.service import create_app

    if not 0 < port < 65536:
        raise InvalidRequestError(f"--port must be 1-65535, got {port}")
    import socket

    from llmco2.errors import EnvironmentProblemError

    # Refused here, in one line, rather than by uvicorn's log after the predictor is loaded.
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise EnvironmentProblemError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    predictor = Predictor.load(model_path) if model_path is not None else Predictor.default()
    application = create_app(predictor)
    import uvicorn

    print(f"llmco2 service on http://{host}:{port} (OpenAPI docs at /docs)", file=sys.stderr)
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command()
def regions(
    search: Annotated[
        str | None, typer.Argument(help="Show only names or places containing this text.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the countries and cloud regions whose grid carbon intensity --region knows."""
    from gnn.carbon import lookup_intensity, region_names

    needle = (search or "").lower()
    found = []
    for name in region_names():
        intensity = lookup_intensity(name)
        if needle in name.lower() or needle in intensity.source.lower():
            found.append((name, intensity))
    if as_json:
        _stdout.print_json(
            json.dumps(
                [{"region": n, "g_per_kwh": i.g_per_kwh, "source": i.source} for n, i in found]
            )
        )
        return
    table = Table(title="grid carbon intensity (gCO2eq/kWh) for --region")
    for header in ("region", "gCO2eq/kWh", "source"):
        table.add_column(header, justify="right" if header == "gCO2eq/kWh" else "left")
    for name, intensity in found:
        table.add_row(name, f"{intensity.g_per_kwh:g}", intensity.source)
    _stdout.print(table)


def _print_version(asked: bool) -> None:
    if asked:
        _stdout.print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the llmco2 version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Energy and carbon of LLM inference requests, predicted before they run."""


@app.command()
def version() -> None:
    """Print the llmco2 version."""
    _stdout.print(__version__)


def _fail(message: str, code: int) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"llmco2: error: {first_line}", file=sys.stderr)
    return code


def _message_of(exc: BaseException) -> str:
    """An error's message; for one raised in a Ray task, the task's own error's.

    ``ray.get`` re-raises a task's error as a ``RayTaskError`` that is an instance of the error's
    class too, but whose text starts with the task's name and traceback.
    """
    cause = getattr(exc, "cause", None)
    return str(cause) if isinstance(cause, BaseException) else str(exc)


#: The arguments of the running invocation (reports record the exact command).
invocation: list[str] = []


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (errors become one line on stderr)."""
    args = sys.argv[1:] if argv is None else argv
    invocation[:] = args
    try:
        result = app(args=args or ["--help"], prog_name="llmco2", standalone_mode=False)
    except Llmco2Error as exc:
        return _fail(_message_of(exc), exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return _fail("aborted", 130)
    except typer.TyperException as exc:  # usage errors: unknown option, bad integer, ...
        return _fail(exc.format_message(), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except ModuleNotFoundError as exc:  # an optional dependency imported lazily
        if exc.name is None or os.environ.get("LLMCO2_DEBUG"):
            raise
        missing = MissingDependencyError.for_module(exc.name, f"`llmco2 {' '.join(args[:1])}`")
        return _fail(str(missing), missing.exit_code)
    except Exception as exc:  # a bug: one line, or the traceback with LLMCO2_DEBUG=1
        if os.environ.get("LLMCO2_DEBUG"):
            raise
        return _fail(f"internal error ({type(exc).__name__}): {exc}", EXIT_INTERNAL)
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


# Commands defined in their own modules register on `app` when imported.
import orchestrator.campaign_commands  # noqa: E402
import orchestrator.log_commands  # noqa: E402
import orchestrator.predictor_commands  # noqa: E402, F401
