"""The GPU catalog: dense datasheet figures, lookup by id, alias or NVML name, user entries.

All throughput figures are **dense** (no 2:4 structured sparsity). The LLMCO2 paper's Table 2 mixes
in sparse figures for Ampere, Ada and Hopper (its "FP32" column is sparse TF32 and its FP16/INT8
columns are sparse, i.e. twice the dense rate); nothing in an LLM inference uses structured
sparsity, so dense figures are the right roofline ceilings.

A user adds a GPU with a YAML or JSON file holding one entry or a list of entries in the schema of
:class:`GpuEntry` (``llmco2 featurize ... --gpu-file my_gpus.yaml``, or ``LLMCO2_GPU_FILE``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from featurize.precision import Precision
from llmco2.errors import ConfigFileError, UnknownGpuError

GPU_FILE_ENV = "LLMCO2_GPU_FILE"
_TERA = 1e12
_GIGA = 1e9


class PeakThroughput(BaseModel):
    """Dense peak throughput per data type in TFLOP/s (TOP/s for integers); None = unsupported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fp32: float = Field(gt=0)
    tf32: float | None = Field(default=None, gt=0)
    fp16: float = Field(gt=0)
    bf16: float | None = Field(default=None, gt=0)
    fp8: float | None = Field(default=None, gt=0)
    fp6: float | None = Field(default=None, gt=0)
    fp4: float | None = Field(default=None, gt=0)
    int8: float | None = Field(default=None, gt=0)
    int4: float | None = Field(default=None, gt=0)


class GpuEntry(BaseModel):
    """One GPU as written in the catalog or in a user's YAML/JSON file.

    ``link_gbps`` is the bandwidth of the GPU-to-GPU link named by ``interconnect`` (NVLink,
    AMD's Infinity Fabric, ...) as its maker quotes it (bidirectional); without one, GPUs talk
    over PCIe. Files written before ``interconnect`` existed give ``nvlink_gbps``, read as an
    NVLink's ``link_gbps``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    nvml_names: tuple[str, ...] = ()
    architecture: str = ""
    peak_tflops_dense: PeakThroughput
    memory_gb: float = Field(gt=0)
    memory_type: str = ""
    memory_bandwidth_gbps: float = Field(gt=0)
    interconnect: str | None = Field(default=None, min_length=1)
    link_gbps: float | None = Field(default=None, gt=0)
    pcie_gbps: float = Field(gt=0)
    tdp_w: float = Field(gt=0)
    die_area_mm2: float = Field(gt=0)
    process: str = ""
    process_nm: float = Field(gt=0)
    source: str = ""

    @model_validator(mode="before")
    @classmethod
    def _nvlink_gbps_is_an_nvlink(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "nvlink_gbps" not in data:
            return data
        if "link_gbps" in data:
            raise ValueError("give link_gbps (with interconnect) or nvlink_gbps, not both")
        data = dict(data)
        data["link_gbps"] = data.pop("nvlink_gbps")
        if data["link_gbps"] is not None:
            data.setdefault("interconnect", "NVLink")
        return data

    @model_validator(mode="after")
    def _a_link_has_a_name(self) -> GpuEntry:
        if (self.link_gbps is None) != (self.interconnect is None):
            raise ValueError("interconnect and link_gbps go together (neither: PCIe only)")
        return self


@dataclass(frozen=True, slots=True)
class Gpu:
    """A GPU type with the figures the roofline, the memory model and the carbon model use."""

    entry: GpuEntry

    @property
    def id(self) -> str:
        """Catalog id, e.g. ``H100-SXM``."""
        return self.entry.id

    @property
    def memory_bytes(self) -> float:
        """Device memory in bytes (datasheet GB = 1e9 bytes)."""
        return self.entry.memory_gb * _GIGA

    @property
    def memory_bandwidth(self) -> float:
        """Peak memory bandwidth in bytes/s."""
        return self.entry.memory_bandwidth_gbps * _GIGA

    @property
    def vector_flops(self) -> float:
        """Peak non-tensor FP32 throughput in FLOP/s (norms, softmax, element-wise kernels)."""
        return self.entry.peak_tflops_dense.fp32 * _TERA

    def tensor_flops(self, precision: Precision) -> float:
        """Peak tensor-core throughput for the matmuls of ``precision``, in FLOP/s.

        Falls back to the next wider data type the GPU supports (e.g. INT8 on a V100 runs as a
        dequantised FP16 matmul).
        """
        peaks = self.entry.peak_tflops_dense
        for key in precision.tensor_peak_keys:
            value = getattr(peaks, key)
            if value is not None:
                return float(value) * _TERA
        return peaks.fp16 * _TERA

    @property
    def has_gpu_link(self) -> bool:
        """Whether GPUs of this type talk over a GPU-to-GPU link (NVLink, Infinity Fabric, ...)."""
        return self.entry.link_gbps is not None

    @property
    def interconnect(self) -> str:
        """The link GPUs of this type talk over: the entry's ``interconnect``, else ``PCIe``."""
        return self.entry.interconnect or "PCIe"

    @property
    def link_bandwidth(self) -> float:
        """Per-direction GPU-to-GPU bandwidth in bytes/s.

        Makers quote NVLink, Infinity Fabric and PCIe bandwidth bidirectionally; a ring
        all-reduce sends and receives at once, so each direction gets half of the quoted figure.
        """
        quoted = self.entry.link_gbps if self.entry.link_gbps else self.entry.pcie_gbps
        return quoted * _GIGA / 2


class GpuCatalog:
    """A set of GPUs searchable by id, alias or NVML name (case-insensitive)."""

    def __init__(self, gpus: Iterable[Gpu]) -> None:
        self._gpus: dict[str, Gpu] = {}
        self._index: dict[str, Gpu] = {}
        for gpu in gpus:
            self._gpus[gpu.id] = gpu
            for key in (gpu.id, *gpu.entry.aliases, *gpu.entry.nvml_names):
                self._index[_normalise(key)] = gpu

    @classmethod
    def builtin(cls) -> GpuCatalog:
        """The catalog shipped with llmco2."""
        return _builtin_catalog()

    @classmethod
    def default(cls) -> GpuCatalog:
        """The built-in catalog plus the entries of ``$LLMCO2_GPU_FILE`` if it is set."""
        extra = os.environ.get(GPU_FILE_ENV)
        return cls.builtin().with_file(Path(extra)) if extra else cls.builtin()

    def with_file(self, path: Path) -> GpuCatalog:
        """A new catalog with the entries of a user's YAML/JSON file added.

        Raises:
            ConfigFileError: When the file is unreadable, an entry is malformed, or an entry's
                id, alias or NVML name is one the catalog knows already (it would silently
                replace a GPU every stored campaign and predictor refers to).
        """
        added = load_gpu_file(path)
        for gpu in added:
            for key in (gpu.id, *gpu.entry.aliases, *gpu.entry.nvml_names):
                known = self._index.get(_normalise(key))
                if known is not None:
                    raise ConfigFileError(
                        f"GPU file {str(path)!r}: entry {gpu.id!r} reuses the name {key!r} of "
                        f"the known GPU {known.id!r}; give it a name of its own"
                    )
        return GpuCatalog([*self._gpus.values(), *added])

    def __iter__(self) -> Any:
        return iter(self._gpus.values())

    def __len__(self) -> int:
        return len(self._gpus)

    def names(self) -> list[str]:
        """Every id, alias and NVML name known."""
        names: list[str] = []
        for gpu in self._gpus.values():
            names.extend((gpu.id, *gpu.entry.aliases, *gpu.entry.nvml_names))
        return names

    def get(self, name: str) -> Gpu:
        """Look a GPU up by id, alias or NVML name.

        Raises:
            UnknownGpuError: With the closest known names, when nothing matches.
        """
        gpu = self._index.get(_normalise(name))
        if gpu is None:
            raise UnknownGpuError(name, [g.id for g in self._gpus.values()])
        return gpu


def _normalise(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", "-").split())


def _entries_from_document(document: Any, source: str) -> list[GpuEntry]:
    items = document.get("gpus", document) if isinstance(document, dict) else document
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise ConfigFileError(f"{source}: expected a GPU entry or a list of entries")
    entries = []
    for position, item in enumerate(items):
        try:
            entries.append(GpuEntry.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise ConfigFileError(
                f"{source}: GPU entry {position + 1}: {where}: {first['msg']}"
            ) from exc
    return entries


def load_gpu_file(path: Path) -> list[Gpu]:
    """Read user GPU entries from a YAML or JSON file.

    Raises:
        ConfigFileError: When the file is missing, is not YAML/JSON, or an entry is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read GPU file {str(path)!r}: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigFileError(f"GPU file {str(path)!r} is not valid YAML/JSON{where}") from exc
    return [Gpu(entry) for entry in _entries_from_document(document, str(path))]


@cache
def _builtin_catalog() -> GpuCatalog:
    raw = json.loads(resources.files("featurize").joinpath("data/gpus.json").read_text("utf-8"))
    return GpuCatalog(Gpu(entry) for entry in _entries_from_document(raw, "built-in catalog"))


def get_gpu(name: str) -> Gpu:
    """Look a GPU up in the default catalog (built-in plus ``$LLMCO2_GPU_FILE``)."""
    return GpuCatalog.default().get(name)
