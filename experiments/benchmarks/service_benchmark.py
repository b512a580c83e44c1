"""Benchmark: the prediction service (`llmco2 serve`) under load, on this machine.

Starts the real server on loopback (reading requests off their deployments' grids, its default,
and once more with ``--exact``), then times:

- single predictions, one request per HTTP call, from ``--clients`` threads at once;
- lists of ``--batch`` requests per call (``POST /v1/predict``, ``{"requests": [...]}``);
- columns of ``--columns`` requests of one deployment per call (``POST /v1/predict/columns``);
- ``GET /healthz``: what the HTTP stack alone serves on these cores;
- the Python API itself (``llmco2.predict`` and ``llmco2.predict_many``, exact and off the grid);

and the grid's error against exact predictions on the same requests. Requests draw prompt and
output lengths from a log-uniform spread (16-4,096 and 8-1,024 tokens) over four catalog models on
the H200. Prints a table and writes JSON.

    python experiments/benchmarks/service_benchmark.py [--seconds 15] [--clients 4]
        [--batch 1000] [--columns 100000] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import llmco2

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(__file__).parent / "results" / "service_benchmark.json"
MODELS = ("llama3.1-8b", "qwen3-8b", "gemma-2-9b", "qwen2-1.5b")


def requests_of(count: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    prompts = np.exp(rng.uniform(np.log(16), np.log(4096), count)).astype(int)
    outputs = np.exp(rng.uniform(np.log(8), np.log(1024), count)).astype(int)
    return [
        {"model": MODELS[i % len(MODELS)], "gpu": "H200", "prompt": int(p), "gen": int(g)}
        for i, (p, g) in enumerate(zip(prompts, outputs, strict=True))
    ]


def start_server(*options: str) -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "llmco2", "serve", "--port", str(port), *options],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the service did not start")


def count_of(body: Any) -> int:
    """Requests a body asks for."""
    if body is None:
        return 1
    if "requests" in body:
        return len(body["requests"])
    return len(body["prompt"]) if isinstance(body["prompt"], list) else 1


def timed_calls(
    url: str, path: str, bodies: list[Any], clients: int, seconds: float
) -> dict[str, Any]:
    """Send bodies (POST; GET where a body is None) round-robin from ``clients`` threads."""
    latencies: list[float] = []
    predictions = 0
    stop = time.monotonic() + seconds

    def worker(offset: int) -> tuple[list[float], int]:
        mine, count, index = [], 0, offset
        with httpx.Client(base_url=url, timeout=300) as client:
            while time.monotonic() < stop:
                body = bodies[index % len(bodies)]
                index += clients
                start = time.perf_counter()
                response = client.get(path) if body is None else client.post(path, json=body)
                mine.append(time.perf_counter() - start)
                response.raise_for_status()
                count += count_of(body)
        return mine, count

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for mine, count in pool.map(worker, range(clients)):
            latencies.extend(mine)
            predictions += count
    elapsed = time.perf_counter() - began
    return {
        "calls": len(latencies),
        "predictions": predictions,
        "seconds": elapsed,
        "predictions_per_s": predictions / elapsed,
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


def wrk_calls(
    url: str, path: str, bodies: list[Any], connections: int, seconds: float
) -> dict[str, Any]:
    """The same load from ``wrk`` (one C thread, ``connections`` keep-alive connections).

    A Python client on these two cores spends as much CPU as the server; wrk hardly any, so this
    measures the service rather than its client.
    """
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if bodies[0] is None:  # a GET
        done = subprocess.run([*command, url + path], capture_output=True, text=True, check=True)
    else:
        lua = "bodies = {" + ",".join("[==[" + json.dumps(b) + "]==]" for b in bodies) + "}\n"
        lua += (
            "counter = 0\n"
            "request = function()\n"
            "  counter = counter + 1\n"
            "  local body = bodies[(counter % #bodies) + 1]\n"
            '  local headers = {["content-type"] = "application/json"}\n'
            f'  return wrk.format("POST", "{path}", headers, body)\n'
            "end\n"
        )
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(lua)
        try:
            done = subprocess.run(
                [*command, "-s", script.name, url], capture_output=True, text=True, check=True
            )
        finally:
            Path(script.name).unlink()
    out = done.stdout
    per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise SystemExit(f"wrk: {non_2xx.group(1)} failed calls to {path}")

    def percentile(name: str) -> float:
        value, unit = re.search(rf"\s{name}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {
        "client": "wrk",
        "connections": connections,
        "predictions_per_s": per_s,
        "calls_per_s": per_s,
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
    }


def columns_of(count: int, seed: int) -> dict[str, Any]:
    """One deployment's requests as columns."""
    rows = requests_of(count, seed)
    return {"model": MODELS[seed % len(MODELS)], "gpu": "H200",
            "prompt": [r["prompt"] for r in rows], "gen": [r["gen"] for r in rows]}  # fmt: skip


def grid_error(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """The grid's error against exact predictions of the same requests, per model."""
    table = {key: [r[key] for r in requests] for key in ("model", "gpu", "prompt", "gen")}
    exact = llmco2.predict_many(table)
    read = llmco2.predict_many(table, grid=True)
    errors: dict[str, Any] = {}
    for column in ("total_j", "prefill_j", "decode_j", "latency_s"):
        relative = np.abs(read[column].to_numpy(float) / exact[column].to_numpy(float) - 1)
        errors[column] = {
            "p50_percent": 100 * float(np.percentile(relative, 50)),
            "p99_percent": 100 * float(np.percentile(relative, 99)),
            "max_percent": 100 * float(relative.max()),
        }
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--columns", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    singles = requests_of(2000, seed=0)
    batched = [{"requests": requests_of(args.batch, seed=s)} for s in range(1, 5)]
    columns = [columns_of(args.columns, seed=s) for s in range(4)]

    # The API alone: the ceiling of what the service can add its HTTP layer to.
    api: dict[str, float] = {}
    for grid in (False, True):
        for model in MODELS:  # grids built before timing (timed below)
            llmco2.predict(model, gpu="H200", grid=grid)
        start = time.perf_counter()
        for request in singles[:300]:
            llmco2.predict(**request, grid=grid)
        api["single_grid_per_s" if grid else "single_per_s"] = 300 / (time.perf_counter() - start)
        table = {
            key: [r[key] for r in requests_of(args.batch, seed=9)]
            for key in ("model", "gpu", "prompt", "gen")
        }
        start = time.perf_counter()
        llmco2.predict_many(table, grid=grid)
        api["many_grid_per_s" if grid else "many_per_s"] = args.batch / (
            time.perf_counter() - start
        )
    start = time.perf_counter()
    llmco2.Predictor.default().price_grid(*_deployment("gemma-2-2b"))
    api["grid_build_s"] = time.perf_counter() - start
    errors = grid_error(requests_of(2000, seed=11))

    process, url = start_server()
    try:
        warm = time.perf_counter()
        for model in MODELS:  # each deployment's grid, built on its first request
            httpx.post(f"{url}/v1/predict", json={"model": model, "gpu": "H200"}, timeout=120)
        warm_s = time.perf_counter() - warm
        service: dict[str, Any] = {
            "warm_up_s": warm_s,
            "healthz": timed_calls(url, "/healthz", [None], args.clients, args.seconds / 3),
            "single": timed_calls(url, "/v1/predict", singles, args.clients, args.seconds),
            "list": timed_calls(url, "/v1/predict", batched, args.clients, args.seconds),
            "columns": timed_calls(url, "/v1/predict/columns", columns, args.clients, args.seconds),
        }
        if shutil.which("wrk"):
            service["healthz_wrk"] = wrk_calls(url, "/healthz", [None], 8, args.seconds / 3)
            service["single_wrk"] = wrk_calls(url, "/v1/predict", singles, 8, args.seconds)
    finally:
        process.terminate()
        process.wait(timeout=30)
    process, url = start_server("--exact")
    try:
        exact_single = timed_calls(url, "/v1/predict", singles, args.clients, args.seconds / 3)
        if shutil.which("wrk"):
            service["single_exact_wrk"] = wrk_calls(
                url, "/v1/predict", singles, 8, args.seconds / 3
            )
    finally:
        process.terminate()
        process.wait(timeout=30)
    service["single_exact"] = exact_single

    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "clients": args.clients,
        "batch": args.batch,
        "columns": args.columns,
        "api": api,
        "grid_error_vs_exact": errors,
        "service": service,
        "goals": {"single_per_s": 2000, "batched_per_s": 100_000},
        "load_generator": "httpx threads" + (", wrk" if shutil.which("wrk") else ""),
    }
    print(f"{'':34s} {'predictions/s':>14s} {'p50 ms':>9s} {'p99 ms':>9s}")
    api_rows = [
        ("API, one by one (exact)", api["single_per_s"]),
        ("API, one by one (grid)", api["single_grid_per_s"]),
        (f"API, predict_many {args.batch} (exact)", api["many_per_s"]),
        (f"API, predict_many {args.batch} (grid)", api["many_grid_per_s"]),
    ]
    for name, value in api_rows:
        print(f"{name:34s} {value:14.0f}")
    for name, row in (
        ("service, GET /healthz", service["healthz"]),
        ("service, single (exact)", service["single_exact"]),
        ("service, single (grid)", service["single"]),
        (f"service, lists of {args.batch}", service["list"]),
        (f"service, columns of {args.columns}", service["columns"]),
        *(
            (f"service, {name} (wrk)", service[f"{name}_wrk"])
            for name in ("healthz", "single_exact", "single")
            if f"{name}_wrk" in service
        ),
    ):
        print(
            f"{name:34s} {row['predictions_per_s']:14.0f} {row['p50_ms']:9.1f} {row['p99_ms']:9.1f}"
        )
    print(f"grid of one deployment built in {api['grid_build_s']:.1f} s; the service's four "
          f"in {warm_s:.1f} s")  # fmt: skip
    for column, error in errors.items():
        print(f"grid vs exact, {column:10s}: p50 {error['p50_percent']:.3f} %, "
              f"p99 {error['p99_percent']:.3f} %, max {error['max_percent']:.3f} %")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


def _deployment(model: str) -> tuple[Any, ...]:
    """The arguments of :meth:`llmco2.Predictor.price_grid` for ``model`` on one H200."""
    from featurize import resolve_model
    from featurize.gpus import GpuCatalog

    architecture, window = resolve_model(model)
    gpu = GpuCatalog.default().get("H200")
    return architecture, window, gpu, 1, 1, llmco2.api.as_precision(None)


if __name__ == "__main__":
    main()
