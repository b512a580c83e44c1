"""`llmco2 campaign run | list | status` end to end: a local Ray, the simulated engine, SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from storage import CampaignStore
from tests.llmco2.cli.test_cli import llmco2

ROOT = Path(__file__).resolve().parents[3]


def write_config(folder: Path, name: str = "tiny", **changes: Any) -> Path:
    config: dict[str, Any] = {
        "name": name,
        "database": f"sqlite:///{folder / 'campaign.db'}",
        "engine": "simulated",
        "target_mape": 0.01,
        "priors": {
            "architectures": {"models": ["qwen2-0.5b", "bloom-560m"]},
            "requests": {"batch": [1, 2], "max_generated": 64},
            "gpus": {"types": ["H100-SXM"], "tp": [1, 1]},
        },
        "sampling": {"initial": 24, "neighbours": 3, "high_error": {"value": 0.25}},
        "budget": {"rounds": 2},
        "training": {"epochs": 6, "patience": 6, "correction_epochs": 6},
        "protocol": {"warmups": 0, "windows": 2, "min_window_s": 0.5, "min_requests": 1},
    }
    config.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_list_status_and_a_rerun_that_adds_nothing(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    report = tmp_path / "report"
    result = llmco2("campaign", "run", str(path), "--workers", "2", "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert "round 0:" in result.stdout and "round 1:" in result.stdout
    assert "round budget spent" in result.stdout
    assert (report / "report.md").exists() and (report / "mape_per_round.png").exists()
    assert (report / "dataset" / "points.parquet").exists()
    assert (report / "measured_vs_predicted.png").exists()
    db = f"sqlite:///{tmp_path / 'campaign.db'}"
    store = CampaignStore(db)
    campaign = store.get_campaign("tiny")
    before = store.measurement_count(campaign.id)
    # The report's measured-vs-predicted section is the last round's model on its test points,
    # so its MAPE is the one the last round stored; the comparison lists this campaign.
    text = (report / "report.md").read_text()
    last = store.rounds(campaign.id)[-1]
    assert last.mape is not None and last.test_points is not None
    assert f"on the {last.test_points} test points: MAPE {last.mape:.2f} %" in text
    assert "| worst test points |" in text
    assert f"| tiny | focused | 2 | {before} | {last.mape:.2f} |" in text
    again = llmco2("campaign", "run", str(path), "--workers", "2", "--report", str(report))
    assert again.returncode == 0, again.stderr
    assert "round 0:" not in again.stdout  # nothing repeated
    assert store.measurement_count(campaign.id) == before
    assert [r.round_index for r in store.rounds(campaign.id)] == [0, 1]
    store.close()
    listing = llmco2("campaign", "list", "--db", db)
    assert listing.returncode == 0 and "tiny" in listing.stdout
    status = llmco2("campaign", "status", "tiny", "--db", db)
    assert status.returncode == 0 and "campaign tiny (COMPLETE," in status.stdout  # finished
    listed = json.loads(llmco2("campaign", "list", "--db", db, "--json").stdout)
    (entry,) = listed["campaigns"]
    assert (entry["name"], entry["status"], entry["rounds"]) == ("tiny", "COMPLETE", 2)
    assert entry["last_mape"] == pytest.approx(last.mape)
    detail = json.loads(llmco2("campaign", "status", "tiny", "--db", db, "--json").stdout)
    assert [r["round"] for r in detail["rounds"]] == [0, 1]
    assert detail["points"]["COMPLETE"] == entry["complete"] and detail["strategy"] == "focused"


def test_a_run_under_a_time_limit_stops_itself_and_the_same_command_continues(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, budget={"rounds": 1})
    report = tmp_path / "report"
    refused = llmco2("campaign", "run", str(path), "--time-limit", "0")
    assert refused.returncode == 2 and "--time-limit" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "campaign.db").exists()  # refused before anything ran
    # No engine start of the twin's estimate fits in five seconds: nothing is begun.
    stopped = llmco2("campaign", "run", str(path), "--time-limit", "5", "--report", str(report))
    assert stopped.returncode == 0, stopped.stderr
    assert "time limit of 5 s reached in round 0" in stopped.stdout
    db = f"sqlite:///{tmp_path / 'campaign.db'}"
    status = llmco2("campaign", "status", "tiny", "--db", db)
    assert "campaign tiny (STOPPED," in status.stdout, status.stdout
    again = llmco2("campaign", "run", str(path), "--time-limit", "3600", "--report", str(report))
    assert again.returncode == 0, again.stderr
    assert "round 0:" in again.stdout and "round budget spent" in again.stdout
    status = llmco2("campaign", "status", "tiny", "--db", db)
    assert "campaign tiny (COMPLETE," in status.stdout, status.stdout


def test_a_changed_config_needs_a_new_name_or_force(tmp_path: Path) -> None:
    path = write_config(tmp_path, budget={"rounds": 1})
    assert llmco2("campaign", "run", str(path), "--report", str(tmp_path / "r")).returncode == 0
    changed = write_config(tmp_path, budget={"rounds": 2})
    refused = llmco2("campaign", "run", str(changed), "--report", str(tmp_path / "r"))
    assert refused.returncode == 2 and "--force" in refused.stderr
    renamed = llmco2("campaign", "run", str(changed), "--new-name", "tiny2",
                     "--report", str(tmp_path / "r2"))  # fmt: skip
    assert renamed.returncode == 0, renamed.stderr
    forced = llmco2("campaign", "run", str(changed), "--force", "--report", str(tmp_path / "r"))
    assert forced.returncode == 0, forced.stderr
    assert "round 1:" in forced.stdout and "round 0:" not in forced.stdout
    # Both campaigns share the database: each report compares them.
    comparison = (tmp_path / "r" / "report.md").read_text().split("## Strategy comparison")[1]
    assert "| tiny | focused |" in comparison and "| tiny2 | focused |" in comparison


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\npriors: {architectures: {models: [qwen2-0.5b]}}\ncolour: red\n", "unknown key"),
        ("name: [unclosed\n", "not valid YAML"),
        ("name: x\npriors: {architectures: {models: [qwen2-0.5b]}}\nsampling: {initial: 0}\n",
         "sampling.initial"),
        ("name: x\npriors: {architectures: {models: [qwen2-0.5b]}}\nsampling: {neighbours: 0}\n",
         "sampling.neighbours"),
        ("name: x\npriors: {architectures: {models: [qwen2-0.5b]}}\n", "priors.gpus.types"),
    ],
)  # fmt: skip
def test_bad_configs_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text + f"database: sqlite:///{tmp_path / 'c.db'}\n")
    result = llmco2("campaign", "run", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_report_target_it_may_not_write_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path)
    mine = tmp_path / "mine"
    (mine / "dataset").mkdir(parents=True)
    (mine / "dataset" / "notes.txt").write_text("keep")
    file = tmp_path / "report.txt"
    file.write_text("x")
    for target, message in ((mine, "holds files llmco2 did not write"), (file, "not a folder")):
        result = llmco2("campaign", "run", str(path), "--report", str(target))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert (mine / "dataset" / "notes.txt").read_text() == "keep" and file.read_text() == "x"
    assert not (tmp_path / "campaign.db").exists()  # refused before any work started


def test_a_vllm_campaign_with_an_unknown_way_to_start_vllm_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCO2_VLLM_COMPILE", "fast")  # the command inherits it
    path = write_config(tmp_path, engine="vllm")
    result = llmco2("campaign", "run", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "LLMCO2_VLLM_COMPILE='fast'" in lines[0], result.stderr
    assert not (tmp_path / "campaign.db").exists()


def test_a_killed_driver_is_continued_with_exact_counts(tmp_path: Path) -> None:
    """SIGKILL the driver while it measures; the same command finishes the campaign."""
    # Enough points that measuring them outlasts the polling below (simulated ones are quick).
    initial = 240
    path = write_config(tmp_path, sampling={"initial": initial, "neighbours": 3,
                                            "high_error": {"value": 0.25}})  # fmt: skip
    db = f"sqlite:///{tmp_path / 'campaign.db'}"
    command = [sys.executable, "-m", "llmco2", "campaign", "run", str(path),
               "--workers", "2", "--report", str(tmp_path / "r")]  # fmt: skip
    driver = subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    store = CampaignStore(db)
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                campaign = store.get_campaign("tiny")
            except Exception:
                continue
            if store.measurement_count(campaign.id) >= 10:
                break
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
    finally:
        driver.wait(timeout=60)
    campaign = store.get_campaign("tiny")
    assert 0 < store.measurement_count(campaign.id) < initial
    assert store.rounds(campaign.id) == []
    spent_before_the_kill = store.gpu_seconds(campaign.id)
    assert spent_before_the_kill > 0  # stored with each result, not lost with the round
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    counts = store.status_counts(campaign.id)
    points = store.get_points(campaign.id)
    assert counts["COMPLETE"] == len(points) == store.measurement_count(campaign.id)
    rounds = store.rounds(campaign.id)
    assert [r.round_index for r in rounds] == [0, 1]
    # The rounds' GPU-hours add up to all GPU time stored, the killed attempt's included.
    total_h = store.gpu_seconds(campaign.id) / 3600
    assert sum(r.gpu_hours or 0.0 for r in rounds) == pytest.approx(total_h)
    assert (rounds[0].gpu_hours or 0.0) > spent_before_the_kill / 3600
    store.close()


def test_a_second_driver_of_a_running_campaign_is_refused_at_once(tmp_path: Path) -> None:
    path = write_config(tmp_path, sampling={"initial": 60, "neighbours": 3,
                                            "high_error": {"value": 0.25}})  # fmt: skip
    command = [sys.executable, "-m", "llmco2", "campaign", "run", str(path),
               "--workers", "2", "--report", str(tmp_path / "r")]  # fmt: skip
    first = subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    store = CampaignStore(f"sqlite:///{tmp_path / 'campaign.db'}")
    try:
        deadline = time.monotonic() + 240
        holder = None
        while holder is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.5)
            try:
                holder = store.driver_of(store.get_campaign("tiny").id)
            except Exception:
                continue
        assert holder is not None and holder.endswith(f":{first.pid}")
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                                check=False)  # fmt: skip
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"is being run by {holder} since" in lines[0], second.stderr
        assert not (tmp_path / "r").exists()  # refused before it wrote anything
        assert first.poll() is None  # the first one runs on
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        store.close()


def test_an_unreachable_ray_address_is_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = llmco2("campaign", "run", str(path), "--ray-address", "127.0.0.1:1")
    assert result.returncode == 3  # the environment, not the input
    assert result.stderr.strip() == (
        "llmco2: error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"
    )


def test_a_gpu_engine_on_a_cluster_without_the_gpus_is_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, engine="vllm")
    result = llmco2("campaign", "run", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no GPUs for engine 'vllm'" in lines[0], result.stderr


def test_a_campaign_with_serving_loads_runs_reports_exports_and_shows_them(
    tmp_path: Path,
) -> None:
    import pyarrow.parquet as pq

    serving = {"traces": ["conv", "code"], "concurrency": [1, 8], "rate_fractions": [0.5],
               "engines_per_round": 1}  # fmt: skip
    path = write_config(tmp_path, budget={"rounds": 1}, serving=serving)
    report = tmp_path / "report"
    result = llmco2("campaign", "run", str(path), "--workers", "2", "--report", str(report))
    assert result.returncode == 0, result.stderr
    # One engine configuration serves 2 traces × (2 closed loops + 1 open loop).
    assert "serving loads: 6 measured (0 failed)" in result.stdout
    table = pq.read_table(report / "dataset" / "serving.parquet").to_pylist()
    assert len(table) == 6 and all(row["simulated"] for row in table)
    assert {(row["trace"], row["concurrency"]) for row in table} == {
        (trace, c) for trace in ("conv", "code") for c in (1, 8, None)
    }
    assert all(row["per_request_j"] > 0 and row["ttft_p50_s"] > 0 for row in table)
    text = (report / "report.md").read_text()
    assert "## Serving loads" in text and "Serving prediction MAPE on these loads" in text
    status = llmco2("campaign", "status", "tiny", "--db", f"sqlite:///{tmp_path / 'campaign.db'}")
    assert status.returncode == 0
    assert "serving loads: PENDING 0, RUNNING 0, COMPLETE 6, FAILED 0, INFEASIBLE 0" in (
        status.stdout
    )
