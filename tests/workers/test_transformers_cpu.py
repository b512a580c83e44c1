"""The transformers engine for real on the CPU: a tiny random-weight model, exact output lengths."""

from __future__ import annotations

import pytest

from featurize import Architecture, InferenceRequest, Precision
from llmco2.errors import InfeasibleConfigError
from workers.engines import EngineConfig, create_engine
from workers.protocol import MeasurementProtocol, ProtocolSettings

pytest.importorskip("transformers")

TINY = Architecture(
    name="tiny-qwen2",
    family="qwen2",
    hidden_size=128,
    intermediate_size=256,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=32,
    vocab_size=512,
    qkv_bias=True,
)


@pytest.mark.parametrize("flash", [True, False])
def test_transformers_generates_exactly_the_requested_tokens(flash: bool) -> None:
    engine = create_engine("transformers", EngineConfig(TINY, Precision(), 1, None, flash, 0))
    engine.load()
    try:
        result = engine.run(InferenceRequest(2, 12, 5))
        assert result.output_tokens == 10 and result.latency_s > 0
        protocol = MeasurementProtocol(
            engine, ProtocolSettings(warmups=1, windows=2, min_window_s=0.05, min_requests=2)
        )
        record = protocol.measure(InferenceRequest(1, 16, 4))
        assert record.engine_version is not None
        assert record.engine_version.startswith("transformers-")
        assert record.energy_j is None and record.latency_s is not None
        assert record.prefill_latency_s is not None and record.prefill_latency_s < record.latency_s
    finally:
        engine.close()


def test_transformers_refuses_tensor_parallelism() -> None:
    engine = create_engine("transformers", EngineConfig(TINY, Precision(), 2, None))
    with pytest.raises(InfeasibleConfigError, match="tensor parallelism"):
        engine.load()
