"""A campaign on a two-node Ray cluster (both nodes on loopback) whose head has no CPU."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import CampaignStore
from tests.llmco2.cli.test_cli_campaign import write_config
from workers.cluster import LOCAL_RAY_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_nodes() -> Iterator[tuple[str, dict[str, str], dict[str, float]]]:
    """(GCS address, environment, CPUs per node id) of a head without CPUs and a worker node."""
    env = {**os.environ, **LOCAL_RAY_ENVIRONMENT, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    holder = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("two_node_cluster.py"))], cwd=ROOT, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        started = json.loads(holder.stdout.readline())
        yield started["address"], env, started["cpus"]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder shuts its cluster down
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()


def test_every_point_is_measured_on_the_node_that_has_the_cpus(
    two_nodes: tuple[str, dict[str, str], dict[str, float]], tmp_path: Path
) -> None:
    address, env, cpus = two_nodes
    assert sorted(cpus.values()) == [0, 2], cpus
    (worker,) = [node for node, count in cpus.items() if count > 0]
    config = write_config(tmp_path, name="two-nodes")
    run = subprocess.run(
        [sys.executable, "-m", "llmco2", "campaign", "run", str(config), "--ray-address",
         address, "--workers", "2", "--report", str(tmp_path / "report")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    store = CampaignStore(f"sqlite:///{tmp_path / 'campaign.db'}")
    try:
        campaign = store.get_campaign("two-nodes")
        assert [r.round_index for r in store.rounds(campaign.id)] == [0, 1]
        labelled = store.labelled_points(campaign.id)
        assert len(labelled) == store.measurement_count(campaign.id) > 24
        measurements = [store.get_measurement(point.id) for point, _labels in labelled]
        nodes = {(m.extra or {}).get("ray_node_id") for m in measurements if m is not None}
        assert nodes == {worker}  # every point on the worker node; the head has no CPU
    finally:
        store.close()
