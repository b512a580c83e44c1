"""Numeric precision of an inference: bit widths of weights, activations and KV cache.

A precision maps to bytes per element (for memory traffic) and to the GPU peak throughput that its
matrix multiplications can reach (for the roofline). The compute data type of a matmul is the wider
of the weight and activation types: weight-only quantisation (W8A16, W4A16) still multiplies in
16-bit after dequantising, while W8A8 runs on the 8-bit tensor cores.

A mixture of experts may store its routed experts narrower than the rest (gpt-oss ships them in
MXFP4 and the attention in bf16): ``expert_weight_bits`` then gives their width. Four-bit experts
are MXFP4, whose blocks of 32 FP4 values share one 8-bit (E8M0) scale: 4.25 bits per weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmco2.errors import InvalidRequestError

SUPPORTED_BITS: tuple[int, ...] = (16, 8, 4)

_LABEL = re.compile(r"w(\d+)a(\d+)kv(\d+)(?:e(\d+))?")

#: Bits of scale per 4-bit expert weight: MXFP4 shares one E8M0 byte among 32 values.
MXFP4_SCALE_BITS = 8 / 32

# Tensor-core peak to use for a compute width, widest fallback last: an 8-bit matmul runs as INT8
# where the GPU has INT8 tensor cores, else as FP8, else (V100) it is dequantised to FP16.
_TENSOR_PEAK_KEYS: dict[int, tuple[str, ...]] = {
    16: ("bf16", "fp16"),
    8: ("int8", "fp8", "fp16"),
    4: ("int4", "int8", "fp8", "fp16"),
}


@dataclass(frozen=True, slots=True)
class Precision:
    """Bit widths of one inference configuration.

    Attributes:
        weight_bits: Bits per weight element (16, 8 or 4).
        activation_bits: Bits per activation element (16 or 8).
        kv_bits: Bits per KV-cache element (16, 8 or 4).
        expert_weight_bits: Bits per routed-expert weight where they differ from
            ``weight_bits`` (8, or 4 for MXFP4); None: as the other weights.
    """

    weight_bits: int = 16
    activation_bits: int = 16
    kv_bits: int = 16
    expert_weight_bits: int | None = None

    def __post_init__(self) -> None:
        for name, bits in (
            ("weight", self.weight_bits),
            ("activation", self.activation_bits),
            ("KV-cache", self.kv_bits),
        ):
            if bits not in SUPPORTED_BITS:
                raise InvalidRequestError(
                    f"{name} bit width must be one of {', '.join(map(str, SUPPORTED_BITS))}, "
                    f"got {bits}"
                )
        if self.activation_bits == 4:
            raise InvalidRequestError("4-bit activations are not supported (use 16 or 8)")
        experts = self.expert_weight_bits
        if experts == self.weight_bits:  # one name for one precision
            object.__setattr__(self, "expert_weight_bits", None)
            experts = None
        if experts is not None and (experts not in SUPPORTED_BITS or experts > self.weight_bits):
            raise InvalidRequestError(
                f"expert weight bit width must be one of "
                f"{', '.join(str(b) for b in SUPPORTED_BITS if b <= self.weight_bits)} "
                f"(at most the other weights' {self.weight_bits}), got {experts}"
            )

    @property
    def weight_bytes(self) -> float:
        """Bytes per weight element."""
        return self.weight_bits / 8

    @property
    def expert_weight_bytes(self) -> float:
        """Bytes per routed-expert weight element (MXFP4's block scales included)."""
        bits = self.expert_weight_bits
        if bits is None:
            return self.weight_bytes
        return (bits + (MXFP4_SCALE_BITS if bits == 4 else 0.0)) / 8

    @property
    def activation_bytes(self) -> float:
        """Bytes per activation element."""
        return self.activation_bits / 8

    @property
    def kv_bytes(self) -> float:
        """Bytes per KV-cache element."""
        return self.kv_bits / 8

    @property
    def compute_bits(self) -> int:
        """Bit width the matrix multiplications run at (the wider of weights and activations)."""
        return max(self.weight_bits, self.activation_bits)

    @property
    def tensor_peak_keys(self) -> tuple[str, ...]:
        """GPU peak-throughput keys for the matmuls, preferred first."""
        return _TENSOR_PEAK_KEYS[self.compute_bits]

    @property
    def label(self) -> str:
        """Short label such as ``w16a16kv16`` (``w16a16kv16e4`` with 4-bit experts)."""
        label = f"w{self.weight_bits}a{self.activation_bits}kv{self.kv_bits}"
        return label if self.expert_weight_bits is None else f"{label}e{self.expert_weight_bits}"

    @classmethod
    def from_label(cls, label: str) -> Precision:
        """The precision a label such as ``w8a8kv8`` names (the inverse of :attr:`label`).

        Raises:
            InvalidRequestError: Not of the form ``w<bits>a<bits>kv<bits>[e<bits>]``, or bits not
                supported.
        """
        match = _LABEL.fullmatch(label.strip().lower())
        if match is None:
            raise InvalidRequestError(
                f"precision {label!r} is not of the form w<bits>a<bits>kv<bits>[e<bits>] "
                "(e.g. w8a8kv8, or w16a16kv16e4 for MXFP4 experts)"
            )
        weight, activation, kv, experts = match.groups()
        return cls(int(weight), int(activation), int(kv), None if experts is None else int(experts))

    def identity(self) -> dict[str, int]:
        """The fields that name this precision in stored keys.

        ``expert_weight_bits`` only when set, so that the keys of points stored before it
        existed stay the same.
        """
        fields = {"weight_bits": self.weight_bits, "activation_bits": self.activation_bits}
        fields["kv_bits"] = self.kv_bits
        if self.expert_weight_bits is not None:
            fields["expert_weight_bits"] = self.expert_weight_bits
        return fields
