"""Benchmark: the prediction service (`llmco2 serve`) under load, on this machine.

Starts the real server on loopback, then times:

- single predictions, one request per HTTP call, from ``--clients`` threads at once;
- batched predictions, ``--batch`` requests per call (one predictor call per body);
- the Python API itself (``llmco2.predict`` in a loop, ``llmco2.predict_many`` on one table), the
  ceiling the service's own overhead is measured against.

Requests draw prompt and output lengths from a log-uniform spread (16-4,096 and 8-1,024 tokens)
over four catalog models on the H200. Prints a table and writes JSON.

    python experiments/benchmarks/service_benchmark.py [--seconds 15] [--clients 4]
        [--batch 1000] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
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


def start_server() -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "llmco2", "serve", "--port", str(port)],
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


def timed_calls(url: str, bodies: list[Any], clients: int, seconds: float) -> dict[str, Any]:
    """Send bodies round-robin from ``clients`` threads for about ``seconds``."""
    latencies: list[float] = []
    predictions = 0
    stop = time.monotonic() + seconds

    def worker(offset: int) -> tuple[list[float], int]:
        mine, count, index = [], 0, offset
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.monotonic() < stop:
                body = bodies[index % len(bodies)]
                index += clients
                start = time.perf_counter()
                response = client.post("/v1/predict", json=body)
                mine.append(time.perf_counter() - start)
                response.raise_for_status()
                count += len(body["requests"]) if "requests" in body else 1
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    singles = requests_of(2000, seed=0)
    batched = [
        {"requests": requests_of(args.batch, seed=s)} for s in range(1, 5)
    ]  # fmt: skip

    # The API alone: the ceiling of what the service can add its HTTP layer to.
    llmco2.predict("llama3.1-8b", gpu="H200")
    start = time.perf_counter()
    for request in singles[:300]:
        llmco2.predict(request.pop("model"), **request)
    api_single = 300 / (time.perf_counter() - start)
    table = {
        key: [r[key] for r in requests_of(args.batch, seed=9)]
        for key in ("model", "gpu", "prompt", "gen")
    }
    start = time.perf_counter()
    llmco2.predict_many(table)
    api_many = args.batch / (time.perf_counter() - start)

    process, url = start_server()
    try:
        single = timed_calls(url, [dict(r) for r in requests_of(2000, 0)], args.clients,
                             args.seconds)  # fmt: skip
        many = timed_calls(url, batched, args.clients, args.seconds)
    finally:
        process.terminate()
        process.wait(timeout=30)

    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "clients": args.clients,
        "batch": args.batch,
        "api": {"single_per_s": api_single, "many_per_s": api_many},
        "service": {"single": single, "batched": many},
        "goals": {"single_per_s": 2000, "batched_per_s": 100_000},
    }
    print(f"{'':28s} {'predictions/s':>14s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(f"{'API, one by one':28s} {api_single:14.0f}")
    print(f"{'API, predict_many':28s} {api_many:14.0f}")
    for name, row in (("service, single", single), (f"service, {args.batch} a call", many)):
        print(
            f"{name:28s} {row['predictions_per_s']:14.0f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
