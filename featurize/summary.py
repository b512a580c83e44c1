"""A summary of one point's kernels: what ``llmco2 featurize`` prints and ``--json`` emits."""

from __future__ import annotations

from typing import Any

import numpy as np

from featurize.kernels import KERNEL_TYPES, PHASES, QUANTITIES, kernel_counts
from featurize.memory import estimate_memory
from featurize.point import InferencePoint


def summarize_point(point: InferencePoint) -> dict[str, Any]:
    """Per-kernel and total quantities of each phase, with the inputs, as a JSON-ready dict.

    Keys say what they hold: ``prefill.total.flops``, ``decode.total.memory_bytes``,
    ``prefill.kernels.q_proj.roofline_time_s``, ... Quantities are per GPU for the whole request.
    """
    counts = kernel_counts([point])
    roof = counts.roofline()
    bound = roof.bound()
    memory_bytes = counts.memory_bytes
    arch, request, setup = point.architecture, point.request, point.setup
    memory = estimate_memory(point)
    result: dict[str, Any] = {
        "model": arch.name,
        "architecture": arch.to_dict(),
        "precision": {
            "weight_bits": point.precision.weight_bits,
            "activation_bits": point.precision.activation_bits,
            "kv_bits": point.precision.kv_bits,
            "expert_weight_bits": point.precision.expert_weight_bits,
            "label": point.precision.label,
        },
        "flash_attention": point.flash_attention,
        "request": {
            "batch_size": request.batch_size,
            "prompt_tokens": request.prompt_tokens,
            "generated_tokens": request.generated_tokens,
        },
        "hardware": {
            "gpu": setup.gpu.id,
            "gpu_count": setup.count,
            "tensor_peak_flops": setup.gpu.tensor_flops(point.precision),
            "vector_peak_flops": setup.gpu.vector_flops,
            "memory_bandwidth_bytes_per_s": setup.gpu.memory_bandwidth,
            "link_bandwidth_bytes_per_s": setup.gpu.link_bandwidth,
            "interconnect": setup.gpu.interconnect.lower(),
        },
        "memory_per_gpu": {
            "weights_bytes": memory.weight_bytes,
            "kv_cache_bytes": memory.kv_cache_bytes,
            "activations_bytes": memory.activation_bytes,
            "required_bytes": memory.required_bytes,
            "usable_bytes": memory.usable_bytes,
        },
        "per_gpu": True,
    }
    for ph_index, phase in enumerate(PHASES):
        kernels: dict[str, Any] = {}
        for k_index, kind in enumerate(KERNEL_TYPES):
            if not counts.present[0, k_index]:
                continue
            entry: dict[str, Any] = {"calls": int(counts.calls[0, k_index])}
            for q_index, name in enumerate(QUANTITIES):
                entry[name] = float(counts.values[0, ph_index, k_index, q_index])
            entry["memory_bytes"] = float(memory_bytes[0, ph_index, k_index])
            entry["memory_intensity"] = float(roof.memory_intensity[0, ph_index, k_index])
            nai = float(roof.network_intensity[0, ph_index, k_index])
            entry["network_intensity"] = nai if np.isfinite(nai) else None
            entry["roofline_performance_flops_per_s"] = float(
                roof.performance[0, ph_index, k_index]
            )
            entry["roofline_time_s"] = float(roof.time[0, ph_index, k_index])
            entry["bound"] = str(bound[0, ph_index, k_index]) if entry["roofline_time_s"] else None
            kernels[kind.value] = entry
        total = {
            name: sum(k[name] for k in kernels.values())
            for name in (*QUANTITIES, "memory_bytes", "roofline_time_s")
        }
        result[phase.value] = {"kernels": kernels, "total": total}
    result["total"] = {
        name: result["prefill"]["total"][name] + result["decode"]["total"][name]
        for name in result["prefill"]["total"]
    }
    return result
