"""Featurize: catalogs, per-kernel roofline counts and graphs of LLM inference requests.

No GPU is needed: everything here is analytic. ``featurize.graphs`` (PyTorch Geometric) is
imported on demand so that the catalogs and counts stay light.
"""

from __future__ import annotations

from featurize.architecture import SUPPORTED_FAMILIES, Architecture
from featurize.gpus import Gpu, GpuCatalog, GpuEntry, get_gpu, load_gpu_file
from featurize.hf_config import architecture_from_hf_config, load_hf_config, to_hf_config
from featurize.kernels import (
    KERNEL_TYPES,
    PHASES,
    QUANTITIES,
    KernelCounts,
    KernelType,
    Phase,
    PointArrays,
    Roofline,
    kernel_counts,
)
from featurize.memory import MemoryEstimate, check_fits, estimate_memory
from featurize.models import (
    CatalogModel,
    catalog_models,
    context_window,
    get_catalog_model,
    resolve_architecture,
    resolve_model,
)
from featurize.point import GpuSetup, InferencePoint
from featurize.precision import Precision
from featurize.request import InferenceRequest
from featurize.summary import summarize_point

__all__ = [
    "KERNEL_TYPES",
    "PHASES",
    "QUANTITIES",
    "SUPPORTED_FAMILIES",
    "Architecture",
    "CatalogModel",
    "Gpu",
    "GpuCatalog",
    "GpuEntry",
    "GpuSetup",
    "InferencePoint",
    "InferenceRequest",
    "KernelCounts",
    "KernelType",
    "MemoryEstimate",
    "Phase",
    "PointArrays",
    "Precision",
    "Roofline",
    "architecture_from_hf_config",
    "catalog_models",
    "check_fits",
    "context_window",
    "estimate_memory",
    "get_catalog_model",
    "get_gpu",
    "kernel_counts",
    "load_gpu_file",
    "load_hf_config",
    "resolve_architecture",
    "resolve_model",
    "summarize_point",
    "to_hf_config",
]
