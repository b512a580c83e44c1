"""Connecting to Ray: an existing cluster (``--ray-address`` / ``RAY_ADDRESS``) or a local one.

A local cluster listens on the loopback interface only (every server: GCS, raylet, workers,
agents), requires Ray's token authentication, reserves the CPUs and the GPUs this machine has,
and keeps its dashboard off.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from llmco2.errors import ClusterUnreachableError, EngineNotInstalledError, EngineUnavailableError
from workers.devices import detect_gpu_names, detect_gpu_uuids


def _probe(target: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (``ray.init`` would retry for minutes)."""
    address = target.removeprefix("ray://").removeprefix("http://")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterUnreachableError(
            f"cannot reach the Ray cluster at {target}: {exc.strerror or type(exc).__name__}"
        ) from None


#: The environment a single-node, loopback-only Ray needs. Ray 2.60 turns a loopback node address
#: into the machine's routable one, and its servers then listen on every interface, unless
#: multi-node clusters are off (as Ray has them on macOS and Windows): then the node's address
#: stays 127.0.0.1 and every server listens there.
LOCAL_RAY_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _local_only() -> None:
    """Set :data:`LOCAL_RAY_ENVIRONMENT` here and for the processes Ray starts.

    Raises:
        EngineUnavailableError: ``RAY_AUTH_MODE`` turns token authentication off (a new local
            cluster has it on unless told otherwise, and llmco2 does not start one without it).
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() != "token":
        raise EngineUnavailableError(
            f"RAY_AUTH_MODE={mode} turns Ray's token authentication off; a local cluster needs "
            "it (unset RAY_AUTH_MODE or set it to token)"
        )
    os.environ.update(LOCAL_RAY_ENVIRONMENT)
    from ray._private import ray_constants

    # Read from the environment when Ray is imported, which may have happened already.
    ray_constants.ENABLE_RAY_CLUSTER = False


def connect(address: str | None = None, *, num_cpus: int | None = None) -> dict[str, Any]:
    """Join ``address`` (or ``$RAY_ADDRESS``), or start a local loopback-only Ray.

    Returns:
        The cluster's resources.

    Raises:
        EngineUnavailableError: Ray is not installed or the address cannot be reached.
    """
    try:
        import ray
    except ImportError as exc:
        raise EngineNotInstalledError.for_module("ray", "a Ray cluster") from exc
    if ray.is_initialized():
        return dict(ray.cluster_resources())
    # Ray warns on every start that token authentication is on; the CLI's stderr is for errors.
    logging.getLogger("ray").setLevel(logging.ERROR)
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        _probe(target)
    try:
        if target:
            ray.init(address=target, logging_level=logging.ERROR, log_to_driver=False)
        else:
            _local_only()
            ray.init(
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                num_cpus=num_cpus if num_cpus is not None else max(2, os.cpu_count() or 2),
                num_gpus=len(detect_gpu_names()),
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterUnreachableError(
            f"cannot reach the Ray cluster at {target or 'a new local cluster'}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    return dict(ray.cluster_resources())


def disconnect() -> None:
    """Leave (and for a local cluster, stop) Ray."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def cluster_gpu_uuids(timeout_s: float = 60.0) -> list[str]:
    """NVML UUIDs of every GPU of the connected Ray cluster, sorted (empty: none found).

    One task per node that offers GPUs, pinned to it and reserving nothing (so it runs beside
    engines that hold every GPU), lists what NVML sees there.

    Args:
        timeout_s: How long to wait for the nodes' answers.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0]
    listing = ray.remote(num_cpus=0)(detect_gpu_uuids)
    answers = [
        listing.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
        for n in nodes
    ]
    return sorted(uuid for found in ray.get(answers, timeout=timeout_s) for uuid in found)
