"""A local Ray started by the project listens on loopback only, with token auth on."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator

import psutil
import pytest

from llmco2.errors import EngineUnavailableError
from workers.cluster import LOCAL_RAY_ENVIRONMENT, connect, disconnect


def listening_addresses(pids: Iterable[int]) -> set[tuple[str, str]]:
    """(process name, address) of every listening TCP socket of these processes."""
    wanted = set(pids)
    found = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in wanted:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.Error:
                continue
            found.add((name, conn.laddr.ip))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


@pytest.fixture
def local_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for name in [*LOCAL_RAY_ENVIRONMENT, "RAY_AUTH_MODE"]:
        monkeypatch.delenv(name, raising=False)  # what connect() sets, undone afterwards
    connect(num_cpus=1)
    try:
        yield
    finally:
        disconnect()


def test_every_server_of_a_local_cluster_listens_on_loopback_only(local_ray: None) -> None:
    import ray

    ray.get(ray.remote(num_cpus=1)(lambda: 1).remote())  # a worker process is up too
    me = psutil.Process()
    family = [os.getpid(), *(child.pid for child in me.children(recursive=True))]
    sockets = listening_addresses(family)
    names = {name for name, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets
    assert all(is_loopback(address) for _, address in sockets), sorted(sockets)
    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"


def test_a_local_cluster_requires_a_token(local_ray: None) -> None:
    from ray._raylet import AuthenticationMode, get_authentication_mode  # type: ignore[attr-defined]

    assert get_authentication_mode() == AuthenticationMode.TOKEN


def test_loopback_addresses_are_told_apart() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.2")


def test_a_local_cluster_is_not_started_with_authentication_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(EngineUnavailableError, match="RAY_AUTH_MODE=disabled"):
        connect(num_cpus=1)
    import ray

    assert not ray.is_initialized()
