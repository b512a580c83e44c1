"""An inference request: batch size, prompt length and number of generated tokens."""

from __future__ import annotations

from dataclasses import dataclass

from llmco2.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """One batched inference request as a serving engine sees it.

    Attributes:
        batch_size: Sequences processed together (``|B|`` in the paper).
        prompt_tokens: Prompt length per sequence (``L_seq``).
        generated_tokens: Output tokens per sequence (``N_gT``), the first of which comes from the
            prefill; the decode phase produces the other ``generated_tokens - 1``.
    """

    batch_size: int
    prompt_tokens: int
    generated_tokens: int

    def __post_init__(self) -> None:
        for name, value in (
            ("batch size", self.batch_size),
            ("prompt length", self.prompt_tokens),
            ("generated tokens", self.generated_tokens),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequestError(f"{name} must be a positive integer, got {value!r}")

    @property
    def decode_steps(self) -> int:
        """Decode iterations: every generated token after the first."""
        return self.generated_tokens - 1

    @property
    def context_tokens(self) -> int:
        """Tokens per sequence held in the KV cache at the end of the request."""
        return self.prompt_tokens + self.generated_tokens
