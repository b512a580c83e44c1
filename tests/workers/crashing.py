"""A plug-in engine that kills its worker process on one request shape (for crash-path tests)."""

from __future__ import annotations

import os

from featurize.request import InferenceRequest
from workers.engines.base import RunResult
from workers.engines.simulated import SimulatedEngine

CRASH_PROMPT = 13


class CrashingEngine(SimulatedEngine):
    """The simulated engine, except that a prompt of 13 tokens takes the process down."""

    def run(self, request: InferenceRequest) -> RunResult:
        if request.prompt_tokens == CRASH_PROMPT:
            os._exit(17)  # like a segfault in a CUDA kernel: no exception, no cleanup
        return super().run(request)
