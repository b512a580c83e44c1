"""Predicted energy and CO2eq on the completions a program already makes.

    import openai, llmco2
    from llmco2.hooks import Deployment, annotate_openai

    client = annotate_openai(openai.OpenAI(base_url=...), Deployment("llama3.1-8b", gpu="H200"))
    response = client.chat.completions.create(model=..., messages=[...])
    response.llmco2.total_j, response.llmco2.operational_g

A :class:`Deployment` says what serves the requests (model, GPU type and count, and optionally the
load it serves them at); every completion the wrapped client returns gains an ``llmco2`` attribute
(an :class:`Impact`) priced from the completion's own token counts (``usage``), as EcoLogits
annotates its clients with ``impacts``. Streams without usage, and responses without it, are
returned untouched.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmco2.api import DeploymentPrediction, Predictor, as_predictor, predict, predict_many

__all__ = ["Deployment", "Impact", "annotate_openai"]


@dataclass(frozen=True)
class Impact:
    """What one completion cost, predicted from its token counts.

    Attributes:
        prompt_tokens: Tokens of the prompt (from the response's usage).
        completion_tokens: Tokens generated.
        total_j: Energy of the request on the deployment (J, all its GPUs).
        total_low_j: Lower bound of its interval (None without one).
        total_high_j: Its upper bound.
        latency_s: Predicted latency served alone (None at a load: the load sets it).
        operational_g: Operational CO2eq (g), None without a carbon intensity.
        embodied_g: Embodied CO2eq of the hardware time the request takes (g).
        basis: ``"request"`` (served alone) or ``"load"`` (a share of the deployment's energy
            at its concurrency, by output tokens).
    """

    prompt_tokens: int
    completion_tokens: int
    total_j: float
    total_low_j: float | None
    total_high_j: float | None
    latency_s: float | None
    operational_g: float | None
    embodied_g: float
    basis: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass(frozen=True)
class Deployment:
    """What serves the requests being annotated.

    Attributes:
        model: The served model's architecture (a catalog name or a ``config.json``).
        gpu: Its GPU type.
        tp: GPUs of its tensor-parallel group.
        concurrency: Requests it serves at once, if known: each completion is then charged the
            deployment's energy per output token at that load (continuous batching) times its own
            output tokens, instead of the energy of running alone.
        trace: Request lengths the load is modelled with (``conv`` or ``code``).
        precision: Bit widths (label or ``Precision``), bf16 by default.
        region: Grid region for operational CO2eq.
        intensity: Or the grid's intensity (gCO2eq/kWh).
        pue: Power usage effectiveness of the data centre.
        predictor: A :class:`~llmco2.api.Predictor` or checkpoint path (the shipped one if None).
    """

    model: str
    gpu: str = "H100-SXM"
    tp: int = 1
    concurrency: int | None = None
    trace: str = "conv"
    precision: str | None = None
    region: str | None = None
    intensity: float | None = None
    pue: float = 1.0
    predictor: Predictor | str | Path | None = None

    def impact(self, prompt_tokens: int, completion_tokens: int) -> Impact:
        """The predicted cost of one completion of these token counts.

        Raises:
            Llmco2Error: As :func:`llmco2.predict` (unknown model or GPU, a request that does not
                fit or is longer than the context window, ...).
        """
        common: dict[str, Any] = {
            "gpu": self.gpu, "tp": self.tp, "precision": self.precision, "region": self.region,
            "intensity": self.intensity, "pue": self.pue, "predictor": self._predictor(),
        }  # fmt: skip
        if self.concurrency is not None:
            load = _cached_load(self)
            # This completion's share of a mean request of the load, by output tokens.
            share = max(completion_tokens, 1) / self._mean_output(load)
            return Impact(
                prompt_tokens, completion_tokens, load.per_request_j * share,
                None if load.per_request_low_j is None else load.per_request_low_j * share,
                None if load.per_request_high_j is None else load.per_request_high_j * share,
                None,
                None if load.operational_g is None else load.operational_g * share,
                load.embodied_g * share,
                "load",
            )  # fmt: skip
        alone = predict(
            self.model, **common, prompt=max(prompt_tokens, 1), gen=max(completion_tokens, 1)
        )
        return Impact(
            prompt_tokens, completion_tokens, alone.total_j, alone.total_low_j, alone.total_high_j,
            alone.latency_s, alone.operational_g, alone.embodied_g, "request",
        )  # fmt: skip

    def impacts(
        self, prompt_tokens: Sequence[int], completion_tokens: Sequence[int]
    ) -> list[Impact]:
        """The predicted costs of many completions, through the predictor at once.

        Raises:
            Llmco2Error: As :meth:`impact`, for the first completion that cannot be priced.
            ValueError: Not as many completion token counts as prompt token counts.
        """
        pairs = list(zip(prompt_tokens, completion_tokens, strict=True))
        if self.concurrency is not None or not pairs:
            return [self.impact(p, c) for p, c in pairs]
        table = predict_many(
            {"prompt": [max(p, 1) for p in prompt_tokens],
             "gen": [max(c, 1) for c in completion_tokens]},
            model=self.model, gpu=self.gpu, tp=self.tp, precision=self.precision,
            region=self.region, intensity=self.intensity, pue=self.pue, predictor=self._predictor(),
        )  # fmt: skip
        column = {
            name: table[name].to_numpy(dtype=float)
            for name in ("total_j", "total_low_j", "total_high_j", "latency_s", "operational_g",
                         "embodied_g")
        }  # fmt: skip
        return [
            Impact(
                int(prompt), int(completion), float(column["total_j"][i]),
                _optional(column["total_low_j"][i]), _optional(column["total_high_j"][i]),
                float(column["latency_s"][i]), _optional(column["operational_g"][i]),
                float(column["embodied_g"][i]), "request",
            )
            for i, (prompt, completion) in enumerate(pairs)
        ]  # fmt: skip

    def _predictor(self) -> Predictor:
        return _cached_predictor(self.predictor)

    @staticmethod
    def _mean_output(load: DeploymentPrediction) -> float:
        """Mean output tokens per request of the modelled load."""
        if load.per_output_token_j:
            return load.per_request_j / load.per_output_token_j
        return 1.0


def _optional(value: float) -> float | None:
    """A float of a results table, None where it holds none (NaN)."""
    return None if math.isnan(value) else float(value)


@functools.lru_cache(maxsize=8)
def _cached_predictor(predictor: Predictor | str | Path | None) -> Predictor:
    return as_predictor(predictor)


@functools.lru_cache(maxsize=32)
def _cached_load(deployment: Deployment) -> DeploymentPrediction:
    # One twin replay per deployment: every completion it annotates reads the same load.
    assert deployment.concurrency is not None
    return predict(
        deployment.model, gpu=deployment.gpu, tp=deployment.tp, precision=deployment.precision,
        region=deployment.region, intensity=deployment.intensity, pue=deployment.pue,
        concurrency=deployment.concurrency, trace=deployment.trace,
        predictor=deployment._predictor(),
    )  # fmt: skip


def _annotated(create: Callable[..., Any], deployment: Deployment) -> Callable[..., Any]:
    @functools.wraps(create)
    def call(*args: Any, **kwargs: Any) -> Any:
        response = create(*args, **kwargs)
        usage = getattr(response, "usage", None)
        if usage is None or getattr(usage, "prompt_tokens", None) is None:
            return response  # a stream, or a server that reports no usage
        impact = deployment.impact(int(usage.prompt_tokens), int(usage.completion_tokens or 0))
        response.llmco2 = impact
        return response

    return call


def annotate_openai(client: Any, deployment: Deployment) -> Any:
    """``client`` (an ``openai.OpenAI``) with its completions annotated; returned for chaining.

    ``client.chat.completions.create`` and ``client.completions.create`` return their usual
    responses with an ``llmco2`` :class:`Impact` attached.
    """
    client.chat.completions.create = _annotated(client.chat.completions.create, deployment)
    client.completions.create = _annotated(client.completions.create, deployment)
    return client
