"""Embodied carbon of an inference by LLMCarbon's method (Faiz et al., ICLR 2024, Eq. 7-8).

Manufacturing carbon of the hardware, charged to a request by the share of the hardware's
lifetime the request occupies it:

    CO2eq_emb = Σ_hardware (units × CPA) × execution time ÷ lifetime

with the GPU die charged by area (cm²) at the carbon per area (CPA) of its process node, its HBM
and the host's DRAM and SSD by capacity (GB), and the host CPU by area. The constants are
LLMCarbon's (the hardware table published with its code): CPA 1.0 / 1.2 / 1.6 /
1.8 kgCO2eq/cm² for TSMC 16 / 12 / 7 / 4 nm, DRAM 0.4 kgCO2eq/GB, SSD 0.024 kgCO2eq/GB, a
147 mm² 16 nm host CPU; LLMCarbon's server holds 8 GPUs, one CPU, 256 GB DRAM and 32 TB SSD,
so each GPU carries an eighth of the host. Lifetime 5 years, as LLMCarbon. Nodes between the
table's are interpolated linearly in nm and clamped outside it (5 nm-class "4N" → 1.73).

HBM is charged at LLMCarbon's DRAM rate: LLMCarbon does not list HBM, and charging it at DRAM's
rate is this project's assumption, stated in every result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from featurize.gpus import Gpu
from llmco2.errors import InvalidRequestError

SECONDS_PER_YEAR = 365.0 * 86400.0

#: LLMCarbon's carbon per area (kgCO2eq/cm²) by process node (nm).
LLMCARBON_CPA_BY_NODE: dict[float, float] = {4.0: 1.8, 7.0: 1.6, 12.0: 1.2, 16.0: 1.0}


def carbon_per_area(process_nm: float) -> float:
    """kgCO2eq per cm² of die for a process node, interpolated in LLMCarbon's table."""
    nodes = sorted(LLMCARBON_CPA_BY_NODE)
    return float(np.interp(process_nm, nodes, [LLMCARBON_CPA_BY_NODE[n] for n in nodes]))


@dataclass(frozen=True)
class EmbodiedAssumptions:
    """Constants of the embodied model; every result carries them."""

    lifetime_years: float = 5.0
    dram_kg_per_gb: float = 0.4
    ssd_kg_per_gb: float = 0.024
    host_cpu_area_cm2: float = 1.47
    host_cpu_process_nm: float = 16.0
    host_dram_gb: float = 256.0
    host_ssd_gb: float = 32_000.0
    gpus_per_host: int = 8
    source: str = field(
        default="LLMCarbon (Faiz et al., ICLR 2024) Eq. 7-8 and hardware table; HBM at its DRAM "
        "rate (llmco2 assumption)"
    )

    def __post_init__(self) -> None:
        if not self.lifetime_years > 0:
            raise InvalidRequestError(
                f"hardware lifetime must be > 0 years, got {self.lifetime_years}"
            )
        if self.gpus_per_host < 1:
            raise InvalidRequestError(f"GPUs per host must be ≥ 1, got {self.gpus_per_host}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


@dataclass(frozen=True)
class EmbodiedBreakdown:
    """Manufacturing carbon (kgCO2eq) of one GPU with its host share."""

    die_kg: float
    hbm_kg: float
    host_kg: float

    @property
    def total_kg(self) -> float:
        """Die + HBM + host share."""
        return self.die_kg + self.hbm_kg + self.host_kg


def gpu_manufacturing_kg(gpu: Gpu, assumptions: EmbodiedAssumptions) -> EmbodiedBreakdown:
    """Manufacturing carbon charged to one GPU: its die, its HBM and its share of the host."""
    entry = gpu.entry
    die = entry.die_area_mm2 / 100.0 * carbon_per_area(entry.process_nm)
    hbm = entry.memory_gb * assumptions.dram_kg_per_gb
    host = (
        assumptions.host_cpu_area_cm2 * carbon_per_area(assumptions.host_cpu_process_nm)
        + assumptions.host_dram_gb * assumptions.dram_kg_per_gb
        + assumptions.host_ssd_gb * assumptions.ssd_kg_per_gb
    ) / assumptions.gpus_per_host
    return EmbodiedBreakdown(die, hbm, host)


def embodied_co2_g(
    gpu: Gpu, count: int, seconds: float, assumptions: EmbodiedAssumptions | None = None
) -> float:
    """Grams of embodied CO2eq charged to ``seconds`` on ``count`` GPUs (with their hosts).

    Raises:
        InvalidRequestError: Negative time or a GPU count below 1.
    """
    rules = assumptions or EmbodiedAssumptions()
    if seconds < 0:
        raise InvalidRequestError(f"execution time must be ≥ 0 s, got {seconds}")
    if count < 1:
        raise InvalidRequestError(f"GPU count must be ≥ 1, got {count}")
    lifetime_s = rules.lifetime_years * SECONDS_PER_YEAR
    return gpu_manufacturing_kg(gpu, rules).total_kg * 1000.0 * count * seconds / lifetime_s
