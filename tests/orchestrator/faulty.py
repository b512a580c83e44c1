"""A plug-in engine with injected faults for the campaign driver's tests.

- A request whose prompt length ends in 3 kills its worker process the first time any worker
  runs it (a marker file in ``$LLMCO2_FAULT_DIR`` remembers), like a segfault in a kernel.
- A request whose prompt length ends in 7 runs out of GPU memory, every time.
- An engine of the family named by ``$LLMCO2_FAIL_LOAD_FAMILY`` fails to start, every time, with
  the same error (as vLLM's engine core does for a model it builds but cannot run).
"""

from __future__ import annotations

import os
from pathlib import Path

from featurize.request import InferenceRequest
from workers.engines.base import RunResult
from workers.engines.simulated import SimulatedEngine


class FaultyEngine(SimulatedEngine):
    """The simulated engine with a one-off crash and a permanent out-of-memory shape."""

    def load(self) -> None:
        if self.config.architecture.family == os.environ.get("LLMCO2_FAIL_LOAD_FAMILY"):
            raise RuntimeError("Engine core initialization failed. See root cause above.")
        super().load()

    def run(self, request: InferenceRequest) -> RunResult:
        if request.prompt_tokens % 10 == 7:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if request.prompt_tokens % 10 == 3:
            marker = Path(os.environ["LLMCO2_FAULT_DIR"]) / f"crashed-{request.prompt_tokens}"
            if not marker.exists():
                marker.touch()
                os._exit(17)  # no exception, no cleanup
        return super().run(request)
