"""llmco2: energy and carbon of LLM inference requests, predicted before they run.

This core package holds what every other package shares: the version and the typed error
hierarchy that the CLI maps to exit codes. The product itself lives in the sibling packages
``featurize``, ``workers``, ``storage``, ``gnn`` and ``orchestrator``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from llmco2.errors import (
    CampaignBusyError,
    CampaignConflictError,
    ClusterUnreachableError,
    ConfigFileError,
    DatabaseError,
    DatabaseUnreachableError,
    EngineNotInstalledError,
    EngineUnavailableError,
    EnvironmentProblemError,
    ExportError,
    GpuLostError,
    GpuUnavailableError,
    InfeasibleConfigError,
    InvalidRequestError,
    Llmco2Error,
    MeasurementError,
    MissingDependencyError,
    NvmlError,
    NvmlNotSupportedError,
    SchemaVersionError,
    UnknownCampaignError,
    UnknownGpuError,
    UnknownModelError,
    UnknownNameError,
    UnknownRegionError,
    UnsupportedArchitectureError,
)

try:
    __version__ = version("llmco2")
except PackageNotFoundError:  # running from a source tree that was never installed (the GPU box)
    __version__ = "0.0.0+source"

__all__ = [
    "CampaignBusyError",
    "CampaignConflictError",
    "ClusterUnreachableError",
    "ConfigFileError",
    "DatabaseError",
    "DatabaseUnreachableError",
    "EngineNotInstalledError",
    "EngineUnavailableError",
    "EnvironmentProblemError",
    "ExportError",
    "GpuLostError",
    "GpuUnavailableError",
    "InfeasibleConfigError",
    "InvalidRequestError",
    "Llmco2Error",
    "MeasurementError",
    "MissingDependencyError",
    "NvmlError",
    "NvmlNotSupportedError",
    "SchemaVersionError",
    "UnknownCampaignError",
    "UnknownGpuError",
    "UnknownModelError",
    "UnknownNameError",
    "UnknownRegionError",
    "UnsupportedArchitectureError",
    "__version__",
]
