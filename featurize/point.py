"""A point of the campaign's design space: architecture × precision × request × GPU setup."""

from __future__ import annotations

from dataclasses import dataclass, field

from featurize.architecture import Architecture
from featurize.gpus import Gpu
from featurize.precision import Precision
from featurize.request import InferenceRequest
from llmco2.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class GpuSetup:
    """GPUs of one type running one model replica with tensor parallelism.

    Attributes:
        gpu: The GPU type.
        count: GPUs in the tensor-parallel group (the TP degree).
    """

    gpu: Gpu
    count: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InvalidRequestError(
                f"GPU count (TP) must be a positive integer, got {self.count}"
            )

    @property
    def label(self) -> str:
        """Short label such as ``2xH100-SXM``."""
        return f"{self.count}x{self.gpu.id}"


@dataclass(frozen=True, slots=True)
class InferencePoint:
    """Everything that determines the cost of one inference request.

    Attributes:
        architecture: The LLM's shape.
        request: Batch size, prompt length, generated tokens.
        setup: GPU type and TP degree.
        precision: Bit widths of weights, activations and KV cache.
        flash_attention: Whether attention runs as one fused kernel (vLLM always does).
    """

    architecture: Architecture
    request: InferenceRequest
    setup: GpuSetup
    precision: Precision = field(default_factory=Precision)
    flash_attention: bool = True

    def validate(self) -> None:
        """Raise if the point cannot be run as asked.

        That is: the TP degree cannot shard the architecture, or the precision names experts the
        architecture does not have.

        Raises:
            InfeasibleConfigError: When TP does not divide the heads.
            InvalidRequestError: Expert weight bits for a model without routed experts.
        """
        self.architecture.check_tensor_parallel(self.setup.count)
        if self.precision.expert_weight_bits is not None and not self.architecture.is_moe:
            raise InvalidRequestError(
                f"{self.architecture.name}: expert weight bits given for a model without routed "
                "experts"
            )
