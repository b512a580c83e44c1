"""Derive the request prior shipped in featurize/data/azure_request_histogram.json.

The raw Azure LLM inference traces (2023, CC BY 4.0; Patel et al., "Splitwise: Efficient
generative LLM inference using phase splitting", ISCA 2024) may not be committed. What ships is a
2-D histogram of (prompt tokens, generated tokens) per trace on log2-spaced bins, plus quantiles,
from which llmco2 samples requests. Re-run against the traces with:

    python experiments/priors/derive_azure_histogram.py ../shared/data/azure
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "featurize" / "data" / "azure_request_histogram.json"
# Bin edges in tokens: powers of 2^(1/2) from 1 to 2^15 (prompts) and 2^12 (outputs).
PROMPT_EDGES = [round(2 ** (k / 2)) for k in range(0, 31)]
GEN_EDGES = [round(2 ** (k / 2)) for k in range(0, 25)]


def _dedupe(edges: list[int]) -> list[int]:
    return sorted(set(edges))


def main(folder: Path) -> None:
    traces = {
        "code": "AzureLLMInferenceTrace_code.csv",
        "conversation": "AzureLLMInferenceTrace_conv.csv",
    }
    prompt_edges = _dedupe(PROMPT_EDGES)
    gen_edges = _dedupe(GEN_EDGES)
    result: dict[str, object] = {
        "_about": (
            "Joint histogram of prompt and generated tokens of the Azure LLM inference traces "
            "2023 (code and conversation services), derived by "
            "experiments/priors/derive_azure_histogram.py. Data: Azure Public Dataset, CC BY 4.0. "
            "Cite: P. Patel et al., 'Splitwise: Efficient generative LLM inference using phase "
            "splitting', ISCA 2024."
        ),
        "prompt_edges": prompt_edges,
        "generated_edges": gen_edges,
        "traces": {},
    }
    for name, file in traces.items():
        with (folder / file).open() as handle:
            rows = list(csv.DictReader(handle))
        prompt = np.array([int(r["ContextTokens"]) for r in rows])
        gen = np.array([int(r["GeneratedTokens"]) for r in rows])
        keep = (prompt >= 1) & (gen >= 1)
        prompt, gen = prompt[keep], gen[keep]
        clipped_p = np.clip(prompt, prompt_edges[0], prompt_edges[-1] - 1)
        clipped_g = np.clip(gen, gen_edges[0], gen_edges[-1] - 1)
        counts, _, _ = np.histogram2d(clipped_p, clipped_g, bins=[prompt_edges, gen_edges])
        quantiles = [0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
        result["traces"][name] = {  # type: ignore[index]
            "requests": int(keep.sum()),
            "counts": counts.astype(int).tolist(),
            "prompt_quantiles": dict(
                zip(map(str, quantiles), np.quantile(prompt, quantiles).tolist(), strict=True)
            ),
            "generated_quantiles": dict(
                zip(map(str, quantiles), np.quantile(gen, quantiles).tolist(), strict=True)
            ),
        }
        print(
            f"{name}: {keep.sum()} requests, median prompt {np.median(prompt):.0f}, "
            f"median gen {np.median(gen):.0f}"
        )
    OUT.write_text(json.dumps(result, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/azure"))
