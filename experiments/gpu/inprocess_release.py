"""What a closed in-process vLLM engine leaves on the GPU, and which clean-up gives it back.

    PYTHONPATH=/tmp/site:$PWD python experiments/gpu/inprocess_release.py \
        --shape qwen2-0.5b --out $OUT/release

Starts the product's vLLM engine (:class:`workers.engines.vllm_engine.VllmEngine`) with its
engine core in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the ``uni`` executor), runs one
request, closes it as a campaign's actor does, then tries one further clean-up after another and
reads the GPU's memory after each: NVML's memory in use (every process) and torch's allocator
(this process: allocated, reserved). Where memory is still allocated, the largest CUDA tensors
still alive are listed with the types of what holds them. Then the question a campaign's actor
asks: can this process load another engine after all (``--reloads`` more, alternating
``--next-shape`` and ``--shape``), how long does each take, and does what a closed engine leaves
grow with every engine or stay put? Prints a table and writes ``inprocess_release.json`` under
``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

from featurize import Precision, resolve_architecture
from featurize.gpus import GpuCatalog
from featurize.request import InferenceRequest
from workers.actors import torch_memory_mib
from workers.devices import detect_gpu_names
from workers.engines import EngineConfig
from workers.engines.vllm_engine import VllmEngine
from workers.leftovers import live_cuda_tensors


def _memory(counters: Any) -> dict[str, float]:
    return {"gpu_used_mib": max(counters.memory_used_mib()), **torch_memory_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="qwen2-0.5b")
    parser.add_argument("--next-shape", default="qwen2-1.5b")
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ["LLMCO2_VLLM_EXECUTOR"] = "uni"
    names = detect_gpu_names()
    if not names:
        raise SystemExit("no NVIDIA GPU here: this script measures GPU memory")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"shape": args.shape, "gpu": names, "steps": []}

    def save() -> None:
        # Written after every step: a device call cut short still returns what it found.
        (args.out / "inprocess_release.json").write_text(json.dumps(report, indent=1, default=str))

    gpu = GpuCatalog.default().get(names[0])

    def config_of(shape: str) -> EngineConfig:
        return EngineConfig(resolve_architecture(shape), Precision(), 1, gpu, True)

    config = config_of(args.shape)
    engine = VllmEngine(config)
    began = time.monotonic()
    engine.load()
    report["load_s"] = time.monotonic() - began
    print(f"{args.shape}: loaded in {report['load_s']:.1f} s", flush=True)
    engine.run(InferenceRequest(1, 256, 16))
    counters = engine.counter_source()

    def step(name: str, live: bool = False) -> None:
        row: dict[str, Any] = {"step": name, **_memory(counters)}
        if live:
            row["live"] = live_cuda_tensors()
        report["steps"].append(row)
        save()
        print(
            f"{name:44s} {row['gpu_used_mib']:10.0f} {row['torch_allocated_mib']:10.0f}"
            f" {row['torch_reserved_mib']:10.0f}",
            flush=True,
        )
        for tensor in row.get("live", {}).get("largest", []):
            holders = " <- ".join(tensor["held_by"])
            print(f"    {tensor['mib']:9.1f} MiB {tensor['shape']} <- {holders}")

    print(f"{'after':44s} {'GPU used':>10s} {'allocated':>10s} {'reserved':>10s}  (MiB)")
    step("loaded")
    engine.close()
    step("engine.close()", live=True)

    import torch
    from vllm.compilation.cuda_graph import CUDAGraphWrapper
    from vllm.platforms import current_platform

    CUDAGraphWrapper.clear_all_graphs()
    gc.collect()
    torch.cuda.empty_cache()
    step("CUDAGraphWrapper.clear_all_graphs()")
    type(current_platform)._global_graph_pool = None
    gc.collect()
    torch.cuda.empty_cache()
    step("global graph pool dropped")
    torch._C._cuda_clearCublasWorkspaces()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    step("cuBLAS workspaces cleared", live=True)

    report["reloads"] = []
    for index in range(args.reloads):
        shape = args.next_shape if index % 2 == 0 else args.shape
        row: dict[str, Any] = {"shape": shape}
        report["reloads"].append(row)
        began = time.monotonic()
        again = VllmEngine(config_of(shape))
        try:
            again.load()
            row["load_s"] = time.monotonic() - began
            started = time.monotonic()
            again.run(InferenceRequest(1, 1024, 128))
            row["request_s"] = time.monotonic() - started
            row["loaded"] = _memory(again.counter_source())
        except Exception as exc:  # what a reload in this process meets is the finding
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            print(f"reload {index + 1} ({shape}) failed: {row['error']}", flush=True)
            save()
            break
        finally:
            again.close()
        print(f"reload {index + 1} ({shape}): loaded in {row['load_s']:.1f} s, 1x1024->128 in "
              f"{row['request_s']:.3f} s", flush=True)  # fmt: skip
        step(f"reload {index + 1} ({shape}) closed")


if __name__ == "__main__":
    main()
