"""The README's copy-paste examples of the hooks, the plugin, the service and the bulk command, run.

Each example runs as written but for the address of what it talks to (``localhost:8000`` becomes
the test's server) and the served model's name (the tiny model of ``vllm_server.py``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.llmco2.vllm_server import PLUGIN_ENV, Server

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SERVED = "meta-llama/Llama-3.1-8B-Instruct"


def _blocks(language: str, containing: str) -> list[str]:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)
    found = [b for b in blocks if containing in b]
    assert found, f"the README has a {language} example with {containing!r}"
    return found


def _commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined and comments dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def _needs_curl() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")


def test_the_openai_hook_example(vllm_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openai", reason="the OpenAI client comes with vLLM")
    (block,) = _blocks("python", "annotate_openai(")
    code = block.replace("http://localhost:8000/v1", vllm_server.url)
    exec(compile(code.replace(SERVED, vllm_server.model), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"Impact\(prompt_tokens=\d+, completion_tokens=\d+, total_j=", out), out


def test_the_litellm_example(
    vllm_server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm", reason="installed by `make test` (the litellm extra)")
    for name in ("callbacks", "input_callback", "success_callback", "failure_callback",
                 "_async_success_callback", "_async_failure_callback"):  # fmt: skip
        monkeypatch.setattr(litellm, name, [])
    (block,) = _blocks("python", "Llmco2Callback(")
    code = block.replace("http://localhost:8000/v1", vllm_server.url)
    exec(compile(code.replace(SERVED, vllm_server.model), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^\d+\.\d+ J$", out, flags=re.MULTILINE), out
    assert "Totals(requests=1, unpriced=0, total_j=" in out


def test_the_vllm_plugin_example(vllm_server: Server) -> None:
    _needs_curl()
    (block,) = _blocks("sh", "LLMCO2_GPU=")
    serve, scrape = _commands(block)
    # The session's server was started with the example's settings (and the model's name).
    assert {k: v for k, v in PLUGIN_ENV.items() if k != "LLMCO2_MODEL"}.items() <= dict(
        word.split("=", 1) for word in serve.split() if "=" in word
    ).items()
    port = vllm_server.root.rsplit(":", 1)[1]
    out = subprocess.run(
        scrape.replace("localhost:8000", f"127.0.0.1:{port}"), shell=True, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "llmco2_deployment_info{" in out and "llmco2_requests_priced_total{" in out


def test_the_service_examples(service: Any) -> None:
    _needs_curl()
    (block,) = _blocks("sh", "llmco2 serve --port 8000")
    # The service is running; the rest of the block (its JSON spans lines) runs as a script.
    script = "set -e\n" + "\n".join(
        line for line in block.splitlines() if not line.startswith("llmco2 serve")
    ).replace("localhost:8000", f"127.0.0.1:{service.base_url.port}")
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout
    assert out.count('"total_j"') == 4 and out.count('"per_request_j"') == 1, out
    assert re.search(r'"total_j":\[[\d.e+-]+,[\d.e+-]+,[\d.e+-]+\]', out), out


def test_the_request_log_example(tmp_path: Path) -> None:
    (block,) = _blocks("sh", "llmco2 predict-trace")
    (command,) = _commands(block)
    argv = shlex.split(command)
    log = tmp_path / argv[2]
    log.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        + "".join(f"2023-11-16 18:15:{i:02d},{100 + 37 * i},{5 + 11 * i}\n" for i in range(40))
    )
    done = subprocess.run(
        [sys.executable, "-m", "llmco2", *argv[1:]], check=False, cwd=tmp_path,
        capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "priced.parquet").is_file() and (tmp_path / "energy.png").is_file()
    assert "kWh" in done.stdout
