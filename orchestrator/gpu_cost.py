"""What measuring points will cost in GPU-seconds, before they are measured.

A campaign pays GPU time, not measurements: each engine configuration costs an engine start
(minutes on a real GPU) and each point its measurement windows (seconds). Strategies that weigh
what a point teaches against what it costs read both here, from the simulated twin — its start
model (fitted on the real H200 starts) and its request latencies — and the protocol's window
rules.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from featurize.point import GpuSetup, InferencePoint
from llmco2.errors import Llmco2Error
from orchestrator.sampling import EngineKey, engine_key
from workers.engines import EngineConfig
from workers.engines.simulated import TwinParameters, engine_start_seconds, twin_costs_of
from workers.protocol_settings import ProtocolSettings
from workers.serving import ServingLoad


def loaded_engines(configs: Iterable[EngineConfig]) -> frozenset[EngineKey]:
    """The engines of ``configs`` as :func:`orchestrator.sampling.engine_key` names a point's."""
    return frozenset(
        (c.architecture, c.precision, GpuSetup(c.gpu, c.tp)) for c in configs if c.gpu is not None
    )


#: Seconds between updates of the GPUs' energy counter (the twin's, as NVML's on H100 and H200).
COUNTER_PERIOD_S = TwinParameters().counter_period_s
#: Seconds a window waits for the energy counter's ticks around its work (~one period at each end).
WINDOW_OVERHEAD_S = 2 * COUNTER_PERIOD_S


def protocol_seconds(
    latency_s: np.ndarray, prefill_s: np.ndarray, generated: np.ndarray, settings: ProtocolSettings
) -> np.ndarray:
    """Seconds the measurement protocol takes for requests of the given latencies.

    Warm-ups of the request and of its prefill, then ``windows`` windows of each, a window
    lasting at least ``min_window_s``, ``min_periods`` counter updates and ``min_requests``
    requests (a request of one generated token has no prefill pass of its own).

    Args:
        latency_s: Latency of each request.
        prefill_s: Latency of its prefill alone.
        generated: Generated tokens of each request.
        settings: The protocol.
    """
    with_prefill = (generated > 1) & settings.measure_prefill

    def shape(seconds: np.ndarray) -> np.ndarray:
        shortest = max(settings.min_window_s, settings.min_periods * COUNTER_PERIOD_S)
        window = np.maximum(shortest, settings.min_requests * seconds)
        warm = max(settings.warmups, 1) * seconds
        return np.asarray(warm + settings.windows * (window + WINDOW_OVERHEAD_S))

    return np.asarray(shape(latency_s) + np.where(with_prefill, shape(prefill_s), 0.0))


@dataclass
class GpuCostModel:
    """GPU-seconds of engine starts and points, as the twin expects them.

    Attributes:
        settings: The campaign's measurement protocol.
        loaded: Engines already loaded (:func:`loaded_engines`), which cost no start.
    """

    settings: ProtocolSettings = field(default_factory=ProtocolSettings)
    loaded: frozenset[EngineKey] = frozenset()

    def start_seconds(self, point: InferencePoint) -> float:
        """GPU-seconds of starting the engine of ``point`` (all its GPUs; 0 if loaded)."""
        if engine_key(point) in self.loaded:
            return 0.0
        return engine_start_seconds(point) * point.setup.count

    def point_seconds(self, points: Sequence[InferencePoint]) -> np.ndarray:
        """GPU-seconds of measuring each of ``points`` on its loaded engine (all its GPUs)."""
        costs = twin_costs_of(points)
        prefill, decode = costs[:, 0], costs[:, 1]
        generated = np.array([p.request.generated_tokens for p in points], dtype=float)
        gpus = np.array([p.setup.count for p in points], dtype=float)
        return np.asarray(
            protocol_seconds(prefill + decode, prefill, generated, self.settings) * gpus
        )

    def serving_seconds(self, config: EngineConfig, load: ServingLoad, max_num_seqs: int) -> float:
        """GPU-seconds of serving ``load`` on the loaded engine of ``config`` (all its GPUs).

        The serving prediction's run length (:func:`gnn.serving.predict_serving`: the default
        predictor's twin with the shipped serving correction); 0 for an engine without GPUs
        or a load the prediction cannot replay.
        """
        if config.gpu is None:
            return 0.0
        return _serving_seconds(config, load, max_num_seqs) * config.tp


@functools.lru_cache(maxsize=4096)
def _serving_seconds(config: EngineConfig, load: ServingLoad, max_num_seqs: int) -> float:
    from gnn.predict import default_predictor
    from gnn.serving import predict_serving

    assert config.gpu is not None
    setup = GpuSetup(config.gpu, config.tp)
    try:
        prediction = predict_serving(
            default_predictor(), config.architecture, setup, load, config.precision, max_num_seqs
        )
    except Llmco2Error:
        return 0.0
    return prediction.result.total_s
