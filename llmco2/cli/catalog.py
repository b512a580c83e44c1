"""The catalogs: ``models``, ``gpus``, ``regions``, and ``featurize`` of one request."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from llmco2.cli.options import (
    BatchOption,
    ExpertBitsOption,
    GenOption,
    GpuFileOption,
    GpuOption,
    JsonFlag,
    ModelArg,
    PromptOption,
    TpOption,
    gpu_catalog,
    seconds,
    si,
    stdout,
)

app = typer.Typer()


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
    setup = GpuSetup(gpu_catalog(gpu_file).get(gpu), tp)
    architecture = resolve_architecture(model)
    point = InferencePoint(architecture, request, setup, precision, flash)
    check_fits(point)
    summary = summarize_point(point)
    if as_json:
        stdout.print_json(json.dumps(summary))
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, object]) -> None:
    request = summary["request"]
    hardware = summary["hardware"]
    assert isinstance(request, dict) and isinstance(hardware, dict)
    stdout.print(
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
            ("O (FLOP)", si(total["flops"]), "right"),
            ("M (bytes)", si(total["memory_bytes"], "B"), "right"),
            ("weights", si(total["weight_bytes"], "B"), "right"),
            ("KV cache", si(total["kv_read_bytes"] + total["kv_write_bytes"], "B"), "right"),
            ("I (bytes)", si(total["network_bytes"], "B"), "right"),
            ("O/M", "", "right"),
            ("P (FLOP/s)", "", "right"),
            ("time", seconds(total["roofline_time_s"]), "right"),
            ("bound", "", "left"),
        ]
        for header, footer, justify in columns:
            table.add_column(header, footer=footer, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for name, k in data["kernels"].items():
            table.add_row(
                name,
                str(k["calls"]),
                si(k["flops"]),
                si(k["memory_bytes"], "B"),
                si(k["weight_bytes"], "B"),
                si(k["kv_read_bytes"] + k["kv_write_bytes"], "B"),
                si(k["network_bytes"], "B"),
                f"{k['memory_intensity']:.3g}",
                si(k["roofline_performance_flops_per_s"]),
                seconds(k["roofline_time_s"]),
                k["bound"] or "-",
            )
        stdout.print(table)
    memory = summary["memory_per_gpu"]
    assert isinstance(memory, dict)
    stdout.print(
        f"memory per GPU: weights {si(memory['weights_bytes'], 'B')}, "
        f"KV cache {si(memory['kv_cache_bytes'], 'B')}, "
        f"activations {si(memory['activations_bytes'], 'B')}; "
        f"needs {si(memory['required_bytes'], 'B')} of {si(memory['usable_bytes'], 'B')} usable"
    )


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """List the built-in LLM architectures (the paper's 17 models and later ones)."""
    from featurize import catalog_models

    if as_json:
        stdout.print_json(
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
    stdout.print(table)


@app.command()
def gpus(
    gpu_file: GpuFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List the GPU catalog with dense datasheet figures."""
    catalog = gpu_catalog(gpu_file)
    if as_json:
        stdout.print_json(json.dumps([gpu.entry.model_dump(mode="json") for gpu in catalog]))
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
    stdout.print(table)


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
        stdout.print_json(
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
    stdout.print(table)
