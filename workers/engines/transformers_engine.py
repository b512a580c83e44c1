"""The transformers engine: a random-weight Hugging Face model, the fallback where vLLM is absent.

The model is built from the architecture's ``config.json`` with random weights on one GPU (or the
CPU), and requests run through ``generate`` with exactly ``generated_tokens`` new tokens. Flash
attention maps to PyTorch's SDPA kernels, its absence to the eager implementation that
materialises the score matrix. No tensor parallelism.
"""

from __future__ import annotations

import time
from typing import Any

from featurize.hf_config import to_hf_config
from featurize.request import InferenceRequest
from llmco2.errors import EngineNotInstalledError, GpuUnavailableError, InfeasibleConfigError
from workers.devices import NvmlCounterSource
from workers.engines.base import EngineConfig, InferenceEngine, RunResult
from workers.engines.vllm_engine import is_infeasible_error


class TransformersEngine(InferenceEngine):
    """``transformers`` with random weights on one device."""

    name = "transformers"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._torch: Any = None
        self._device = "cpu"

    def load(self) -> None:
        """Build the model from the config with random weights.

        Raises:
            EngineUnavailableError: transformers or torch is missing.
            InfeasibleConfigError: TP > 1, quantised weights, or out of memory.
        """
        if self.config.tp != 1:
            raise InfeasibleConfigError("the transformers engine runs without tensor parallelism")
        if self.config.precision.label != "w16a16kv16":
            raise InfeasibleConfigError(
                "the transformers engine runs 16-bit weights, activations and KV only"
            )
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise EngineNotInstalledError(
                "transformers and torch are not installed: pip install transformers torch"
            ) from exc
        self._torch = torch
        self._version = f"transformers-{transformers.__version__}"
        raw = to_hf_config(self.config.architecture)
        config_class = transformers.AutoConfig.for_model(raw.pop("model_type"))
        hf_config = config_class.from_dict(raw)
        attention = "sdpa" if self.config.flash_attention else "eager"
        if self.config.gpu is not None:
            if not torch.cuda.is_available():
                raise GpuUnavailableError("torch sees no CUDA GPU for the transformers engine")
            self._device = "cuda"
            self._counters = NvmlCounterSource(1)
        torch.manual_seed(self.config.seed)
        try:
            model = transformers.AutoModelForCausalLM.from_config(
                hf_config, torch_dtype=torch.bfloat16, attn_implementation=attention
            )
            self._model = model.to(self._device).eval()
        except Exception as exc:
            if is_infeasible_error(exc):
                raise InfeasibleConfigError(f"transformers cannot run the model: {exc}") from exc
            raise

    def run(self, request: InferenceRequest) -> RunResult:
        """``generate`` exactly ``generated_tokens`` new tokens for a batch of random prompts."""
        if self._model is None:
            raise RuntimeError("load() the engine first")
        torch = self._torch
        ids = torch.tensor(self.prompt_token_ids(request), device=self._device)
        if self._device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = self._model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=request.generated_tokens,
                min_new_tokens=request.generated_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        if self._device == "cuda":
            torch.cuda.synchronize()
        latency = time.perf_counter() - start
        produced = int((out.shape[1] - ids.shape[1]) * out.shape[0])
        return RunResult(latency, produced)

    def close(self) -> None:
        """Free the model."""
        self._model = None
        if self._torch is not None and self._device == "cuda":
            self._torch.cuda.empty_cache()
