"""Shared fixtures: catalog architectures, GPUs and a point factory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from featurize import (
    Architecture,
    Gpu,
    GpuSetup,
    InferencePoint,
    InferenceRequest,
    Precision,
    get_gpu,
    resolve_architecture,
)

PointFactory = Callable[..., InferencePoint]


@pytest.fixture
def llama8b() -> Architecture:
    return resolve_architecture("meta-llama/Llama-3.1-8B")


@pytest.fixture
def h100() -> Gpu:
    return get_gpu("H100-SXM")


@pytest.fixture
def make_point() -> PointFactory:
    """Build a point from short keyword arguments (model, gpu, tp, batch, prompt, gen, ...)."""

    def factory(
        model: str | Architecture = "llama3.1-8b",
        gpu: str = "H100-SXM",
        tp: int = 1,
        batch: int = 1,
        prompt: int = 1024,
        gen: int = 128,
        flash: bool = True,
        wbits: int = 16,
        abits: int = 16,
        kvbits: int = 16,
    ) -> InferencePoint:
        arch = resolve_architecture(model) if isinstance(model, str) else model
        return InferencePoint(
            arch,
            InferenceRequest(batch, prompt, gen),
            GpuSetup(get_gpu(gpu), tp),
            Precision(wbits, abits, kvbits),
            flash,
        )

    return factory
