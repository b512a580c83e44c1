"""Does vLLM build and run a dummy-weight engine of each shape? One short generate per shape.

    python experiments/gpu/load_check.py SHAPE[:LAYERS][+QUANT] ...

A shape is a catalog name or a config.json path, optionally cut to LAYERS layers and declared
quantised with QUANT (a ``quant_method`` of vLLM such as ``mxfp4``: the checkpoint format gpt-oss
ships its experts in, which vLLM then runs with its own kernels on dummy weights). The engine is
built from the config.json the workers write (``featurize.to_hf_config``), eager (no graph
capture: a load check, not a measurement). Prints one line per shape and writes
``$OUT/load_check.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from featurize import Architecture, resolve_architecture, to_hf_config


def shape_folder(spec: str) -> tuple[Architecture, str, Path]:
    """The architecture of ``SHAPE[:LAYERS][+QUANT]``, its quantisation and a config-only folder."""
    shape, _, quantization = spec.partition("+")
    name, _, layers = shape.partition(":")
    arch = resolve_architecture(name)
    if layers:
        arch = arch.with_depth(int(layers))
    folder = Path(tempfile.mkdtemp(prefix="load-check-"))
    config = {**to_hf_config(arch), "torch_dtype": "bfloat16"}
    if quantization:
        config["quantization_config"] = {"quant_method": quantization}
    (folder / "config.json").write_text(json.dumps(config))
    return arch, quantization, folder


def dummy_engine(folder: Path, gpu_memory_utilization: float = 0.4, max_num_seqs: int = 4) -> Any:
    """An eager vLLM engine with dummy weights of the config in ``folder``."""
    from vllm import LLM

    return LLM(model=str(folder), load_format="dummy", skip_tokenizer_init=True,
               enforce_eager=True, max_model_len=2048,
               gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs,
               enable_prefix_caching=False)  # fmt: skip


def check(spec: str) -> dict[str, object]:
    arch, quantization, folder = shape_folder(spec)
    row: dict[str, object] = {
        "shape": spec,
        "family": arch.family,
        "params_b": arch.total_params / 1e9,
        "quantization": quantization or None,
    }
    start = time.perf_counter()
    try:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = dummy_engine(folder)
        row["load_s"] = time.perf_counter() - start
        prompts = [TokensPrompt(prompt_token_ids=list(range(3, 3 + 200))) for _ in range(2)]
        params = SamplingParams(max_tokens=16, min_tokens=16, ignore_eos=True, detokenize=False)
        begin = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        row["generate_s"] = time.perf_counter() - begin
        row["tokens"] = sum(len(o.outputs[0].token_ids) for o in outputs)
        row["status"] = "ok"
        llm.llm_engine.engine_core.shutdown()
        del llm
    except Exception as exc:  # the reason is the result
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}"[:600]
        row["trace"] = traceback.format_exc()[-2000:]
    return row


def main() -> None:
    out = Path(os.environ.get("OUT", "."))
    rows = []
    for spec in sys.argv[1:]:
        row = check(spec)
        rows.append(row)
        print(f"{row['shape']:<45} {row['family']:<12} {row['status']:<7} "
              f"load {row.get('load_s', 0):6.1f} s  generate {row.get('generate_s', 0):5.2f} s  "
              f"{str(row.get('error', ''))[:300]}", flush=True)  # fmt: skip
        (out / "load_check.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
