"""`ray job submit` against a Ray head the test starts (`ray start --head`), as users run it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import CampaignStore
from tests.llmco2.cli.test_cli_campaign import write_config
from tests.workers.test_cluster import is_loopback, listening_addresses
from workers.cluster import LOCAL_RAY_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, str], str]]:
    ray = shutil.which("ray", path=str(BIN))
    assert ray is not None, "the ray CLI is installed with the workers extra"
    env = {**os.environ, **LOCAL_RAY_ENVIRONMENT, "RAY_AUTH_MODE": "token",
           "PATH": f"{BIN}:{os.environ['PATH']}"}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    dashboard = _free_port()
    # A short temp dir of its own (Ray's socket paths must stay under ~107 characters): the
    # teardown stops this cluster's processes only, never another Ray on the machine (which
    # `ray stop` would).
    temp_dir = tempfile.mkdtemp(prefix="rayt-", dir="/tmp")
    try:
        subprocess.run(
            [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--dashboard-host",
             "127.0.0.1", "--port", str(_free_port()), "--dashboard-port", str(dashboard),
             "--num-cpus", "2", "--num-gpus", "0", "--disable-usage-stats",
             "--temp-dir", temp_dir],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        yield f"http://127.0.0.1:{dashboard}", env, temp_dir
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _members(temp_dir: str) -> list[int]:
    """The processes whose command line names ``temp_dir`` (one cluster's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if temp_dir.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
    return found


def _stop_cluster(temp_dir: str) -> None:
    """End every process of the cluster in ``temp_dir`` (SIGTERM, then SIGKILL)."""

    def members() -> list[int]:
        return _members(temp_dir)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in members():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 15
        while members() and time.monotonic() < deadline:
            time.sleep(0.5)


def _submit(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Submit, waiting for the head's job agent, which comes up some seconds after the head.

    On a loaded 2-core machine the agent took over a minute: wait up to five.
    """
    deadline = time.monotonic() + 300
    while True:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                                check=False)  # fmt: skip
        if "No available agent" not in result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(3)


def test_the_head_listens_on_loopback_only(ray_head: tuple[str, dict[str, str], str]) -> None:
    sockets = listening_addresses(_members(ray_head[2]))
    assert {"gcs_server", "raylet"} <= {name for name, _ in sockets}, sockets
    assert all(is_loopback(address) for _, address in sockets), sorted(sockets)


def test_a_submitted_campaign_runs_and_a_resubmission_continues_it(
    ray_head: tuple[str, dict[str, str], str], tmp_path: Path
) -> None:
    address, env, _ = ray_head
    config = write_config(tmp_path, name="job")
    submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT),
              "--", "python", "-m", "llmco2", "campaign", "run", str(config),
              "--workers", "2", "--report", str(tmp_path / "report")]  # fmt: skip
    first = _submit(submit, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "round 1:" in first.stdout and "succeeded" in first.stdout
    store = CampaignStore(f"sqlite:///{tmp_path / 'campaign.db'}")
    campaign = store.get_campaign("job")
    measured = store.measurement_count(campaign.id)
    assert measured == store.status_counts(campaign.id)["COMPLETE"] > 24
    assert [r.round_index for r in store.rounds(campaign.id)] == [0, 1]
    again = _submit(submit, env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "round 0:" not in again.stdout
    assert store.measurement_count(campaign.id) == measured
    assert (tmp_path / "report" / "dataset" / "points.parquet").exists()
    store.close()
