"""llmco2's vLLM stat-logger plugin on a GPU: predicted against NVML-measured energy on /metrics.

Runs vLLM's OpenAI-compatible server (Llama-3.1-8B's shape, dummy weights, a word-level tokenizer
made here) with ``LLMCO2_GPU`` set to this machine's GPU type, sends back-to-back completions of
known lengths, and reads ``llmco2_predicted_energy_joules_total`` and
``llmco2_measured_energy_joules_total`` from the server's ``/metrics`` before and after them.
Prints a table and writes ``plugin_check.json`` (and the server's log) under ``$OUT``.

    PYTHONPATH=/tmp/site:$PWD OUT=/tmp/out python experiments/gpu/vllm_plugin_check.py [MODEL]

It needs vLLM but neither Ray nor the MoE kernels, so the bundle it runs on is the small one
(``../shared/gpu/build_bundle.sh .gpu-lite --extra "sqlalchemy==2.1.9 alembic==1.20.1
mako==1.3.10"``, 156 MB: six 26 MiB parts, each carried beside the working tree within a call's
64 MiB) rather than the campaigns' (281 MB with Ray and ``MOE=1``, eleven parts): fewer calls
that must follow one another before the machine is given back.

llmco2 runs from the working tree here rather than installed, so the script gives it the entry
point vLLM looks plugins up by (a ``.dist-info`` folder next to the bundle's packages).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from featurize import resolve_architecture
from featurize.hf_config import to_hf_config
from llmco2.vllm_plugin import PredictedEnergyLogger
from workers.devices import detect_gpu_names


def _entry_point(site: Path) -> None:
    dist = site / "llmco2_checkout-0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: llmco2-checkout\nVersion: 0\n")
    target = f"{PredictedEnergyLogger.__module__}:{PredictedEnergyLogger.__name__}"
    (dist / "entry_points.txt").write_text(f"[vllm.stat_logger_plugins]\nllmco2 = {target}\n")


def _model(folder: Path, name: str) -> int:
    """The catalog shape's config and a word-level tokenizer of its whole vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    config = to_hf_config(resolve_architecture(name))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    vocab = {f"w{i}": i for i in range(int(config["vocab_size"]))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="w0").save_pretrained(folder)
    return int(config["vocab_size"])


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "llama3.1-8b"
    out = Path(os.environ.get("OUT", "/tmp/plugin-out"))
    out.mkdir(parents=True, exist_ok=True)
    _entry_point(Path("/tmp/site"))
    folder = Path("/tmp/plugin-model")
    _model(folder, model)
    gpu = {"NVIDIA H200": "H200", "NVIDIA H100 80GB HBM3": "H100-SXM"}[detect_gpu_names()[0]]
    env = {**os.environ, "LLMCO2_GPU": gpu, "LLMCO2_MODEL": model, "VLLM_NO_USAGE_STATS": "1",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    log = (out / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
         "--load-format", "dummy", "--dtype", "bfloat16", "--max-model-len", "8192",
         "--gpu-memory-utilization", "0.85", "--port", "8011", "--host", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = "http://127.0.0.1:8011"
    started = time.monotonic()
    try:
        while True:
            try:
                if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() - started > 400:
                raise SystemExit("the vLLM server did not start: see server.log")
            time.sleep(1)
        start_s = time.monotonic() - started
        lengths = [(512, 256), (2048, 64), (128, 512), (1024, 128)] * 4
        with httpx.Client(timeout=300) as client:  # one warm-up, unmeasured
            client.post(f"{url}/v1/completions", json={"model": str(folder), "prompt": [5] * 64,
                        "max_tokens": 16, "ignore_eos": True})  # fmt: skip
            time.sleep(3)  # the plugin prices once a second
            quiet = (time.monotonic(), _metric(url, "llmco2_measured_energy_joules_total"))
            time.sleep(5)
            idle_w = (_metric(url, "llmco2_measured_energy_joules_total") - quiet[1]) / (
                time.monotonic() - quiet[0]
            )
            before = {n: _metric(url, n) for n in ("llmco2_predicted_energy_joules_total",
                                                  "llmco2_measured_energy_joules_total",
                                                  "llmco2_requests_priced_total")}  # fmt: skip
            began = time.monotonic()
            for prompt, gen in lengths:
                body = {"model": str(folder), "prompt": list(range(10, 10 + prompt)),
                        "max_tokens": gen, "min_tokens": gen, "ignore_eos": True}  # fmt: skip
                client.post(f"{url}/v1/completions", json=body).raise_for_status()
            window_s = time.monotonic() - began
            time.sleep(3)
            after = {n: _metric(url, n) for n in before}
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    added = {n: after[n] - before[n] for n in before}
    result: dict[str, Any] = {
        "gpu": gpu, "gpu_names": detect_gpu_names(), "model": model, "requests": len(lengths),
        "lengths": lengths, "server_start_s": start_s, "window_s": window_s,
        "priced": added["llmco2_requests_priced_total"],
        "predicted_j": added["llmco2_predicted_energy_joules_total"],
        "measured_j": added["llmco2_measured_energy_joules_total"],
    }  # fmt: skip
    result["idle_w"] = idle_w
    # The counters are read once a second: the measured interval is the window and ~3 s more.
    result["measured_minus_idle_j"] = result["measured_j"] - idle_w * (window_s + 3)
    result["measured_over_predicted"] = result["measured_j"] / result["predicted_j"]
    result["measured_minus_idle_over_predicted"] = (
        result["measured_minus_idle_j"] / result["predicted_j"]
    )
    (out / "plugin_check.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'requests priced':24s} {result['priced']:.0f} of {len(lengths)}")
    print(f"{'predicted energy':24s} {result['predicted_j']:.1f} J")
    print(f"{'measured energy (NVML)':24s} {result['measured_j']:.1f} J over {window_s:.1f} s "
          f"(+ the 3 s after)")  # fmt: skip
    print(f"{'idle power':24s} {idle_w:.0f} W")
    ratio, net = result["measured_over_predicted"], result["measured_minus_idle_over_predicted"]
    print(f"{'measured / predicted':24s} {ratio:.3f} ({net:.3f} without the idle power)")


if __name__ == "__main__":
    main()
