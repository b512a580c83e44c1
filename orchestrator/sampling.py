"""Sampling from the priors (𝒜 × ℐ × ℋ) and neighbours within ±C of a point.

Every point returned is valid (the TP divides the heads, ...) and fits its GPUs by the memory
model, so nothing infeasible is dispatched. Perturbed architectures are named after their base
and their changed dimensions (``meta-llama/Llama-3.1-8B~L28-I12544``), so their points have keys
of their own and vLLM gets a config of that shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from featurize import (
    Architecture,
    Gpu,
    GpuSetup,
    InferencePoint,
    InferenceRequest,
    Precision,
    check_fits,
    resolve_architecture,
)
from featurize.architecture import FIXED_MLP_RATIO
from featurize.priors import RequestPrior
from llmco2.errors import InvalidRequestError, Llmco2Error
from orchestrator.config import CampaignConfig

#: Widths are kept multiples of this (TP ≤ 8 splits them evenly, kernels stay aligned).
_WIDTH_QUANTUM = 128
_MAX_TRIES = 50


#: What one engine start serves: shape, precision and GPU setup.
EngineKey = tuple[Architecture, Precision, GpuSetup]


def engine_key(point: InferencePoint) -> EngineKey:
    """What one engine start serves: the points of equal key share a loaded engine."""
    return point.architecture, point.precision, point.setup


def _base_name(name: str) -> str:
    return name.split("~", 1)[0]


def _label(base: Architecture, arch: Architecture) -> str:
    parts = []
    if arch.num_layers != base.num_layers:
        parts.append(f"L{arch.num_layers}")
    if arch.intermediate_size != base.intermediate_size:
        parts.append(f"I{arch.intermediate_size}")
    if arch.num_heads != base.num_heads:
        parts.append(f"H{arch.num_heads}")
    name = _base_name(base.name)
    return f"{name}~{'-'.join(parts)}" if parts else name


def _quantise(value: float, quantum: int) -> int:
    return max(quantum, round(value / quantum) * quantum)


class Sampler(Protocol):
    """Where a campaign's points come from: the driver and the strategies draw through this.

    :class:`PointSampler` draws from the config's priors; an experiment may draw from
    elsewhere (the pool replay: from points measured before).
    """

    config: CampaignConfig

    def sample(self, count: int, rng: np.random.Generator) -> list[InferencePoint]:
        """Up to ``count`` distinct points."""
        ...

    def same_engine(
        self,
        point: InferencePoint,
        count: int,
        rng: np.random.Generator,
        exclude: set[InferencePoint] | frozenset[InferencePoint] = frozenset(),
    ) -> list[InferencePoint]:
        """Up to ``count`` distinct points one engine of ``point`` measures, none in ``exclude``."""
        ...

    def neighbours(
        self, point: InferencePoint, count: int, rng: np.random.Generator
    ) -> list[InferencePoint]:
        """Up to ``count`` distinct points near ``point`` (never ``point``)."""
        ...

    def reference_point(self) -> InferencePoint | None:
        """The campaign's reference point (None: none)."""
        ...


class PointSampler:
    """Draws points from a campaign's priors and neighbours around given points."""

    def __init__(
        self,
        config: CampaignConfig,
        gpus: Sequence[Gpu],
        requests: RequestPrior | None = None,
    ) -> None:
        """Set up the priors.

        Args:
            config: The campaign (its priors and radius).
            gpus: The GPU types to sample (the config's, or those the cluster reports).
            requests: The request prior (default: the config's trace or the Azure histogram).

        Raises:
            InvalidRequestError: No GPU types.
            UnknownModelError: A model name that is not in the catalog.
        """
        if not gpus:
            raise InvalidRequestError("no GPU types to sample: name them in priors.gpus.types")
        self.config = config
        self.gpus = list(gpus)
        self.bases = [resolve_architecture(m) for m in config.priors.architectures.models]
        prior = config.priors.requests
        self.requests = requests or (
            RequestPrior.from_trace(prior.trace) if prior.trace else RequestPrior.azure()
        )
        self.tp_low, self.tp_high = config.priors.gpus.tp
        self.precisions = config.priors.architectures.precision_choices()
        self.variants = self._variants(config.priors.architectures.perturbed_variants)

    def _variants(self, count: int) -> list[Architecture]:
        """The shared perturbed shapes (``perturbed_variants``), the same for every run."""
        rng = np.random.default_rng([self.config.seed, 0x5A1E])
        variants: list[Architecture] = []
        for index in range(count):
            base = self.bases[index % len(self.bases)]
            variant = self.perturb(base, rng)
            if variant != base and variant not in variants:
                variants.append(variant)
        return variants

    def _valid(self, point: InferencePoint) -> bool:
        try:
            check_fits(point)
        except Llmco2Error:
            return False
        return True

    def _point(
        self,
        arch: Architecture,
        request: InferenceRequest,
        gpu: Gpu,
        tp: int,
        precision: Precision,
    ) -> InferencePoint | None:
        try:
            point = InferencePoint(arch, request, GpuSetup(gpu, tp), precision)
        except Llmco2Error:
            return None
        return point if self._valid(point) else None

    def _precision(self, rng: np.random.Generator) -> Precision:
        architectures = self.config.priors.architectures
        if architectures.precisions is None:
            # Drawn as before whole precisions could be given, so stored campaigns draw the same.
            return Precision(weight_bits=int(rng.choice(architectures.weight_bits)))
        return self.precisions[int(rng.integers(len(self.precisions)))]

    def perturb(self, base: Architecture, rng: np.random.Generator) -> Architecture:
        """A random shape around ``base`` within the configured relative ranges."""
        ranges = self.config.priors.architectures.perturbation
        for _ in range(_MAX_TRIES):
            scale_layers = rng.uniform(1 - ranges.num_layers, 1 + ranges.num_layers)
            layers = max(1, round(base.num_layers * scale_layers))
            inter = _quantise(
                base.intermediate_size
                * rng.uniform(1 - ranges.intermediate_size, 1 + ranges.intermediate_size),
                _WIDTH_QUANTUM,
            )
            group = base.num_heads // base.num_kv_heads
            scale = rng.uniform(1 - ranges.num_heads, 1 + ranges.num_heads)
            kv = max(1, round(base.num_kv_heads * scale))
            heads = kv * group
            changes: dict[str, int] = {"intermediate_size": inter}
            if heads != base.num_heads:
                hidden = heads * base.head_dim if base.q_size == base.hidden_size else None
                changes |= {"num_heads": heads, "num_kv_heads": kv}
                if hidden is not None:
                    changes["hidden_size"] = hidden
            ratio = FIXED_MLP_RATIO.get(base.family)
            if ratio is not None:
                changes["intermediate_size"] = ratio * int(
                    changes.get("hidden_size", base.hidden_size)
                )
            try:
                arch = base.with_depth(layers).replace(**changes)
            except Llmco2Error:
                continue
            return arch.replace(name=_label(base, arch))
        return base

    def _requests(self, count: int, rng: np.random.Generator) -> list[InferenceRequest]:
        """About ``count`` requests of the request prior (none over ``max_generated``)."""
        prior = self.config.priors.requests
        requests = self.requests.sample(
            max(count, 16), rng, mix=prior.mix, batch_sizes=prior.batch,
            max_context=prior.max_context,
        )  # fmt: skip
        if prior.max_generated is None:
            return requests
        return [r for r in requests if r.generated_tokens <= prior.max_generated]

    def _distinct(
        self,
        count: int,
        rng: np.random.Generator,
        point_for: Callable[[InferenceRequest], InferencePoint | None],
        seen: set[InferencePoint],
    ) -> list[InferencePoint]:
        """Up to ``count`` distinct valid points ``point_for`` makes of prior requests."""
        points: list[InferencePoint] = []
        for _ in range(_MAX_TRIES):
            for request in self._requests(count, rng):
                point = point_for(request)
                if point is not None and point not in seen:
                    seen.add(point)
                    points.append(point)
                    if len(points) == count:
                        return points
        return points

    def sample(self, count: int, rng: np.random.Generator) -> list[InferencePoint]:
        """``count`` distinct valid points from the priors (fewer only if the priors are tiny)."""
        prior = self.config.priors

        def point_for(request: InferenceRequest) -> InferencePoint | None:
            base = self.bases[int(rng.integers(len(self.bases)))]
            perturbed = rng.random() < prior.architectures.perturbed_fraction
            if perturbed and self.variants:
                arch = self.variants[int(rng.integers(len(self.variants)))]
            else:
                arch = self.perturb(base, rng) if perturbed else base
            gpu = self.gpus[int(rng.integers(len(self.gpus)))]
            tp = int(rng.integers(self.tp_low, self.tp_high + 1))
            return self._point(arch, request, gpu, tp, self._precision(rng))

        return self._distinct(count, rng, point_for, set())

    def same_engine(
        self,
        point: InferencePoint,
        count: int,
        rng: np.random.Generator,
        exclude: set[InferencePoint] | frozenset[InferencePoint] = frozenset(),
    ) -> list[InferencePoint]:
        """Up to ``count`` distinct valid points that one engine of ``point`` measures.

        The architecture, precision and GPU setup of ``point`` with requests drawn from the
        request prior: an engine start costs minutes of GPU time and a point seconds, so an
        engine that is loaded anyway measures many requests.

        Args:
            point: The point whose engine is loaded.
            count: How many points to draw.
            rng: Random generator (seeded by the caller).
            exclude: Points not to return (measured or already chosen); ``point`` never is.
        """

        def point_for(request: InferenceRequest) -> InferencePoint | None:
            setup = point.setup
            return self._point(point.architecture, request, setup.gpu, setup.count, point.precision)

        return self._distinct(count, rng, point_for, set(exclude) | {point})

    def reference_point(self) -> InferencePoint | None:
        """The campaign's reference point on the first GPU type it samples (None: no reference).

        Raises:
            UnknownModelError: The reference model is not in the catalog nor a readable config.
            InvalidRequestError: The reference does not fit its GPUs.
        """
        reference = self.config.reference
        if reference is None:
            return None
        point = InferencePoint(
            resolve_architecture(reference.model),
            InferenceRequest(reference.batch, reference.prompt_tokens, reference.generated_tokens),
            GpuSetup(self.gpus[0], reference.tp),
            Precision.from_label(reference.precision),
        )
        try:
            check_fits(point)
        except Llmco2Error as exc:
            raise InvalidRequestError(f"reference: {exc}") from None
        return point

    def neighbours(
        self, point: InferencePoint, count: int, rng: np.random.Generator
    ) -> list[InferencePoint]:
        """Up to ``count`` distinct valid points within ±C of ``point`` (never ``point``)."""
        radius = self.config.sampling.radius
        request = point.request
        arch = point.architecture
        base = next((b for b in self.bases if b.name == _base_name(arch.name)), arch)
        result: list[InferencePoint] = []
        seen = {point}
        for _ in range(count * 10):
            if len(result) == count:
                break

            def jitter(value: int, c: int, low: int = 1, high: int | None = None) -> int:
                moved = value + int(rng.integers(-c, c + 1)) if c else value
                return max(low, moved if high is None else min(high, moved))

            layers = jitter(arch.num_layers, radius.num_layers)
            inter = jitter(arch.intermediate_size, radius.intermediate_size)
            try:
                candidate_arch = arch.with_depth(layers).replace(intermediate_size=inter)
                candidate_arch = candidate_arch.replace(name=_label(base, candidate_arch))
                candidate_request = InferenceRequest(
                    jitter(request.batch_size, radius.batch_size),
                    jitter(request.prompt_tokens, radius.prompt_tokens),
                    jitter(request.generated_tokens, radius.generated_tokens),
                )
            except Llmco2Error:
                continue
            tp = jitter(point.setup.count, radius.gpu_count, self.tp_low, self.tp_high)
            candidate = self._point(
                candidate_arch, candidate_request, point.setup.gpu, tp, point.precision
            )
            if candidate is not None and candidate not in seen:
                seen.add(candidate)
                result.append(candidate)
        return result


def fill_engines(
    sampler: Sampler,
    points: Sequence[InferencePoint],
    wanted: int | None,
    rng: np.random.Generator,
    exclude: set[InferencePoint],
    room: int | None = None,
) -> list[InferencePoint]:
    """Points that bring each engine configuration of ``points`` to ``wanted`` points.

    An engine start costs minutes of GPU time and a point seconds: an engine a round loads
    anyway measures requests drawn from the request prior beside the chosen ones.

    Args:
        sampler: The campaign's sampler.
        points: The round's chosen points.
        wanted: Least points per engine configuration (None: no fill).
        rng: Random generator (seeded by the caller).
        exclude: Points already measured.
        room: Most points to add (what the measurement budget leaves), None for no limit.
    """
    if wanted is None:
        return []
    counts: dict[EngineKey, int] = {}
    first: dict[EngineKey, InferencePoint] = {}
    for point in points:
        key = engine_key(point)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, point)
    taken = set(exclude) | set(points)
    fill: list[InferencePoint] = []
    for key, point in first.items():
        count = wanted - counts[key]
        if room is not None:
            count = min(count, room - len(fill))
        if count <= 0:
            continue
        extra = sampler.same_engine(point, count, rng, taken)
        taken.update(extra)
        fill.extend(extra)
    return fill


def check_priors(config: CampaignConfig, gpus: Sequence[Gpu]) -> None:
    """Refuse priors that cannot produce a point, before a database or Ray is touched.

    Args:
        config: The campaign.
        gpus: The GPU types it samples, when known before the cluster is (the config's own
            list); empty to check the models only.

    Raises:
        UnknownModelError: A model that is not in the catalog and not a readable config.
        InvalidRequestError: No point of the priors fits its GPUs, with the first reason.
    """
    if not gpus:
        for model in config.priors.architectures.models:
            resolve_architecture(model)
        if config.reference is not None:
            resolve_architecture(config.reference.model)
        return
    sampler = PointSampler(config, gpus)
    sampler.reference_point()
    if sampler.sample(1, np.random.default_rng(config.seed)):
        return
    low, high = config.priors.gpus.tp
    reasons: list[str] = []
    for arch in sampler.bases:
        for gpu in gpus:
            for tp in range(low, high + 1):
                try:
                    check_fits(InferencePoint(arch, InferenceRequest(1, 16, 16), GpuSetup(gpu, tp)))
                except Llmco2Error as exc:
                    reasons.append(str(exc))
                else:
                    break
    reason = reasons[0] if reasons else "no request of the request prior fits"
    raise InvalidRequestError(f"the priors produced no point that fits its GPUs: {reason}")
