"""``measure``: one point on this machine's engine."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from llmco2.cli.options import (
    BatchOption,
    ExpertBitsOption,
    GenOption,
    GpuFileOption,
    JsonFlag,
    ModelArg,
    PromptOption,
    TpOption,
    gpu_catalog,
    seconds,
    stdout,
)

app = typer.Typer()


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
    target, note = resolve_measurement_gpu(engine, gpu, tp, gpu_catalog(gpu_file))

    from workers.engines import EngineConfig
    from workers.local import measure_locally
    from workers.protocol import ProtocolSettings

    config = EngineConfig(architecture, precision, tp, target, flash, seed)
    settings = ProtocolSettings(windows=repeats, min_window_s=min_window)
    result, timing = measure_locally(engine, config, request, settings, ray_address)
    if as_json:
        record = dataclasses.asdict(result.record) if result.record is not None else None
        stdout.print_json(
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
    stdout.print(
        f"[bold]{name}[/] on {where} with {engine}: batch {request.batch_size}, "
        f"prompt {request.prompt_tokens}, generate {request.generated_tokens}"
    )
    if note:
        stdout.print(f"note: {note}")
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
        seconds(record.prefill_latency_s) if record.prefill_latency_s is not None else "-",
        "",
    )
    table.add_row(
        "decode",
        joules(record.decode_energy_j),
        seconds(decode_latency) if decode_latency is not None else "-",
        "",
    )
    power = f"{record.avg_power_w:.0f} W" if record.avg_power_w is not None else "-"
    table.add_row("total", joules(record.energy_j), seconds(record.latency_s), power)
    stdout.print(table)
    cv = f"{record.energy_cv:.2%}" if record.energy_cv is not None else "n/a"
    idle = f"{record.idle_power_w:.0f} W" if record.idle_power_w is not None else "n/a"
    period = f"{record.counter_period_s * 1000:.0f} ms" if record.counter_period_s else "n/a"
    stdout.print(
        f"repeats {record.repeats}, energy CV {cv}{' (noisy)' if record.noisy else ''}, "
        f"idle power {idle}, counter period {period}, engine {record.engine_version}, "
        f"duty cycle {timing.get('duty_cycle', 0):.0%} of {timing.get('held_s', 0):.0f} s held"
        + (" (simulated)" if record.simulated else "")
    )
