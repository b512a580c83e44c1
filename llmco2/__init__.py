"""llmco2: energy and carbon of LLM inference requests, predicted before they run.

    import llmco2
    llmco2.predict("llama3.1-8b", gpu="H100-SXM", prompt=1024, gen=128, region="FRA")

This core package holds the Python API (:mod:`llmco2.api`: :func:`predict`, :func:`predict_many`,
:class:`Predictor`, the catalogs), the version and the typed error hierarchy that the CLI maps to
exit codes. The product itself lives in the sibling packages ``featurize``, ``workers``,
``storage``, ``gnn`` and ``orchestrator``, imported only when a function needs them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from llmco2.api import (
    DeploymentPrediction,
    Prediction,
    Predictor,
    gpus,
    models,
    predict,
    predict_many,
    regions,
)
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


def __getattr__(name: str) -> object:
    # predict_log needs NumPy and pandas at import: loaded on first use, not with the package.
    if name == "predict_log":
        from llmco2.request_log import predict_log

        return predict_log
    raise AttributeError(f"module 'llmco2' has no attribute {name!r}")


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
    "DeploymentPrediction",
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
    "Prediction",
    "Predictor",
    "SchemaVersionError",
    "UnknownCampaignError",
    "UnknownGpuError",
    "UnknownModelError",
    "UnknownNameError",
    "UnknownRegionError",
    "UnsupportedArchitectureError",
    "__version__",
    "gpus",
    "models",
    "predict",
    "predict_log",
    "predict_many",
    "regions",
]
