"""Predicted energy and CO2eq of the requests a vLLM server completes, beside vLLM's own metrics.

Installing llmco2 registers :class:`PredictedEnergyLogger` in vLLM's ``vllm.stat_logger_plugins``
entry-point group, which the OpenAI-compatible server (``vllm serve``) loads in its front-end
process. It stays idle until ``LLMCO2_GPU`` names the deployment's GPU type::

    LLMCO2_GPU=H200 LLMCO2_REGION=FRA vllm serve meta-llama/Llama-3.1-8B-Instruct

Every finished request is then priced from its prompt and generated token counts (off the serving
loop, in batches, once a second) and counted on the server's ``/metrics``:

- ``llmco2_requests_priced_total`` and ``llmco2_requests_unpriced_total`` (requests the predictor
  refused, e.g. a model family it does not know);
- ``llmco2_predicted_energy_joules_total`` and the per-request histogram
  ``llmco2_predicted_request_energy_joules``;
- ``llmco2_predicted_operational_co2_grams_total`` (with a region or intensity) and
  ``llmco2_predicted_embodied_co2_grams_total``;
- ``llmco2_measured_energy_joules_total``: on NVIDIA GPUs, what NVML's energy counters of the
  server's tensor-parallel group measured since the plugin started (not with data parallelism),
  so that
  ``rate(llmco2_predicted_energy_joules_total[5m]) / rate(llmco2_measured_energy_joules_total[5m])``
  compares prediction and measurement over the same interval (the measurement includes the
  GPUs' idle power between requests; the prediction does not);
- ``llmco2_deployment_info``: what the prediction assumes (model, GPU, TP, precision, basis).

The settings (environment variables, read when the engine starts):

``LLMCO2_GPU``
    GPU type (``llmco2 gpus``); the plugin is idle without it.
``LLMCO2_MODEL``
    Architecture (catalog name or ``config.json``); default: the served model's own config.
``LLMCO2_TP``
    GPUs of the tensor-parallel group; default: the engine's.
``LLMCO2_CONCURRENCY``
    Requests the deployment serves at once: each request is then charged the deployment's energy
    per output token at that load (continuous batching) rather than its energy served alone.
``LLMCO2_TRACE``
    Request lengths that load is modelled with (``conv``, ``code`` or a CSV file).
``LLMCO2_PRECISION``, ``LLMCO2_REGION``, ``LLMCO2_INTENSITY``, ``LLMCO2_PUE``, ``LLMCO2_PREDICTOR``
    As ``llmco2 predict``'s options.

A setting that names nothing llmco2 knows stops the server's start with one line saying which.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm.v1.metrics.loggers import StatLoggerBase

from llmco2.errors import InvalidRequestError, Llmco2Error, UnknownModelError
from llmco2.hooks import Deployment

__all__ = ["PluginSettings", "PredictedEnergyLogger"]

logger = logging.getLogger(__name__)

#: Seconds between two pricings of the requests finished meanwhile.
PRICING_INTERVAL_S = 1.0
#: Buckets of the per-request energy histogram (J).
ENERGY_BUCKETS_J = (0.1, 0.3, 1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)


@dataclass(frozen=True)
class PluginSettings:
    """The deployment the plugin prices requests for, from ``LLMCO2_*`` variables.

    Attributes:
        gpu: GPU type; None leaves the plugin idle.
        model: Architecture; None for the served model's own config.
        tp: Tensor-parallel GPUs; None for the engine's.
        concurrency: Requests served at once, if the load is known.
        trace: Request lengths of that load.
        precision: Bit widths label; None for bf16.
        region: Grid region for operational CO2eq.
        intensity: Or the grid's intensity (gCO2eq/kWh).
        pue: Power usage effectiveness.
        predictor: Checkpoint path; None for the shipped predictor.
    """

    gpu: str | None = None
    model: str | None = None
    tp: int | None = None
    concurrency: int | None = None
    trace: str = "conv"
    precision: str | None = None
    region: str | None = None
    intensity: float | None = None
    pue: float = 1.0
    predictor: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PluginSettings:
        """The settings ``environ`` holds.

        Raises:
            InvalidRequestError: A number that does not parse, or out of its range.
        """

        def text(name: str) -> str | None:
            value = environ.get(f"LLMCO2_{name}", "").strip()
            return value or None

        def number(name: str, kind: type[int] | type[float], minimum: float) -> Any:
            value = text(name)
            if value is None:
                return None
            try:
                parsed = kind(value)
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise InvalidRequestError(f"LLMCO2_{name} must be {what}, got {value!r}") from None
            if not parsed >= minimum:
                raise InvalidRequestError(f"LLMCO2_{name} must be ≥ {minimum:g}, got {value!r}")
            return parsed

        pue = number("PUE", float, 1.0)
        return cls(
            gpu=text("GPU"), model=text("MODEL"), tp=number("TP", int, 1),
            concurrency=number("CONCURRENCY", int, 1), trace=text("TRACE") or "conv",
            precision=text("PRECISION"), region=text("REGION"),
            intensity=number("INTENSITY", float, 0.0), pue=1.0 if pue is None else pue,
            predictor=text("PREDICTOR"),
        )  # fmt: skip


class _Metrics:
    """The plugin's Prometheus metrics, in the registry vLLM's ``/metrics`` serves."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram, Info

        labels = ["model_name", "engine"]
        self.priced = Counter("llmco2_requests_priced", "Finished requests llmco2 priced.", labels)
        self.unpriced = Counter(
            "llmco2_requests_unpriced", "Finished requests llmco2 could not price.", labels
        )
        self.energy = Counter(
            "llmco2_predicted_energy_joules",
            "Predicted energy of the finished requests (J, all GPUs of the group).",
            labels,
        )
        self.request_energy = Histogram(
            "llmco2_predicted_request_energy_joules",
            "Predicted energy per finished request (J).",
            labels,
            buckets=ENERGY_BUCKETS_J,
        )
        self.operational = Counter(
            "llmco2_predicted_operational_co2_grams",
            "Predicted operational CO2eq of the finished requests (g).",
            labels,
        )
        self.embodied = Counter(
            "llmco2_predicted_embodied_co2_grams",
            "Predicted embodied CO2eq of the finished requests (g).",
            labels,
        )
        self.measured = Counter(
            "llmco2_measured_energy_joules",
            "Energy NVML measured on the server's GPUs since the plugin started (J).",
            labels,
        )
        self.deployment = Info(
            "llmco2_deployment", "The deployment llmco2 prices requests for.", labels
        )


@functools.lru_cache(maxsize=1)
def _shared_metrics() -> _Metrics:
    # A registry refuses a metric name twice: engines restarted in one process share them.
    return _Metrics()


class _GpuEnergy:
    """NVML's energy counters of the engine's GPUs, read as joules since the first reading."""

    def __init__(self, count: int) -> None:
        from workers.devices import NvmlCounterSource

        self._source = NvmlCounterSource(count)
        self._last = sum(self._source.energy_mj())

    def joules_since_last(self) -> float:
        now = sum(self._source.energy_mj())
        delta, self._last = now - self._last, now
        return max(delta, 0) / 1000.0


class PredictedEnergyLogger(StatLoggerBase):  # type: ignore[misc]
    """vLLM stat logger that prices every finished request with llmco2 (see the module doc).

    Args:
        vllm_config: The engine's configuration (model, tensor parallelism, served name).
        engine_index: The engine's index (data parallelism), a label of the metrics.

    Raises:
        Llmco2Error: A setting names a model, GPU or region llmco2 does not know, or a request
            of one token does not fit the deployment.
    """

    def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
        settings = PluginSettings.from_environ(os.environ)
        self._pending: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.deployment: Deployment | None = None
        if settings.gpu is None:
            logger.info("llmco2: LLMCO2_GPU is not set; no request is priced")
            return
        model_config = vllm_config.model_config
        tp = settings.tp or int(vllm_config.parallel_config.tensor_parallel_size)
        self.deployment = Deployment(
            model=settings.model or self._served_architecture(model_config), gpu=settings.gpu,
            tp=tp, concurrency=settings.concurrency, trace=settings.trace,
            precision=settings.precision, region=settings.region, intensity=settings.intensity,
            pue=settings.pue, predictor=settings.predictor,
        )  # fmt: skip
        check = self.deployment.impact(1, 1)  # every setting resolved before the first request
        self._labels = {
            "model_name": str(model_config.served_model_name), "engine": str(engine_index)
        }  # fmt: skip
        self._metrics = _shared_metrics()
        for counter in (self._metrics.priced, self._metrics.unpriced, self._metrics.energy):
            counter.labels(**self._labels)  # a series from the start, at 0
        self._metrics.deployment.labels(**self._labels).info(
            {"model": str(self.deployment.model), "gpu": settings.gpu, "tp": str(tp),
             "precision": settings.precision or "bf16", "basis": check.basis,
             "concurrency": str(settings.concurrency or ""),
             "carbon": "yes" if check.operational_g is not None else "no"}
        )  # fmt: skip
        self._gpu_energy: _GpuEnergy | None = None
        if int(getattr(vllm_config.parallel_config, "data_parallel_size", 1)) > 1:
            # Which GPUs are an engine's own is the data-parallel launcher's business.
            logger.info("llmco2: no measured energy with data parallelism, predicted only")
        else:
            try:
                self._gpu_energy = _GpuEnergy(tp)
            except Llmco2Error as exc:
                logger.info("llmco2: no measured energy beside the predicted (%s)", exc)
        self._thread = threading.Thread(target=self._run, name="llmco2-pricing", daemon=True)
        self._thread.start()

    def _served_architecture(self, model_config: Any) -> str:
        """The served model as llmco2 reads it: its name or folder, else its config in a file."""
        name = str(model_config.model)
        from featurize import resolve_model

        with contextlib.suppress(UnknownModelError):
            resolve_model(name)
            return name
        # A hub id: the engine holds its config already; llmco2 reads configs from files.
        handle, path = tempfile.mkstemp(prefix="llmco2-served-", suffix=".json")
        with os.fdopen(handle, "w") as file:
            json.dump(model_config.hf_config.to_dict(), file, default=str)
        weakref.finalize(self, Path(path).unlink, missing_ok=True)
        return path

    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        """Queue the token counts of the requests that finished in this iteration."""
        if self.deployment is None or iteration_stats is None:
            return
        finished = iteration_stats.finished_requests
        if finished:
            with self._lock:
                self._pending.extend(
                    (int(r.num_prompt_tokens), int(r.num_generation_tokens)) for r in finished
                )

    def log_engine_initialized(self) -> None:
        """Nothing to add to vLLM's own start-up lines."""

    def _run(self) -> None:
        while not self._stop.wait(PRICING_INTERVAL_S):
            self.flush()

    def flush(self) -> None:
        """Price the requests finished since the last flush and read the GPUs' energy."""
        if self.deployment is None:
            return
        with self._lock:
            pending, self._pending = self._pending, []
        metrics, labels = self._metrics, self._labels
        if self._gpu_energy is not None:
            try:
                metrics.measured.labels(**labels).inc(self._gpu_energy.joules_since_last())
            except Llmco2Error as exc:
                logger.warning("llmco2: stopped reading the GPUs' energy (%s)", exc)
                self._gpu_energy = None
        if not pending:
            return
        prompts, outputs = [p for p, _ in pending], [g for _, g in pending]
        try:
            impacts = self.deployment.impacts(prompts, outputs)
        except Llmco2Error:
            impacts = []  # one request the predictor refuses: price the others one by one
            for prompt, output in pending:
                try:
                    impacts.append(self.deployment.impact(prompt, output))
                except Llmco2Error as exc:
                    metrics.unpriced.labels(**labels).inc()
                    logger.debug("llmco2: request of %d + %d tokens: %s", prompt, output, exc)
        for impact in impacts:
            metrics.priced.labels(**labels).inc()
            metrics.energy.labels(**labels).inc(impact.total_j)
            metrics.request_energy.labels(**labels).observe(impact.total_j)
            metrics.embodied.labels(**labels).inc(impact.embodied_g)
            if impact.operational_g is not None:
                metrics.operational.labels(**labels).inc(impact.operational_g)

    def close(self) -> None:
        """Price what is left and stop the pricing thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self.flush()
