"""The prediction service: llmco2's Python API over HTTP (FastAPI on uvicorn).

    llmco2 serve --host 127.0.0.1 --port 8000      # OpenAPI docs at http://127.0.0.1:8000/docs

- ``POST /v1/predict``: one request (the fields of :func:`llmco2.predict`) or ``{"requests":
  [...]}`` of many, priced in one predictor call (:func:`llmco2.predict_many`); a request with
  ``concurrency`` or ``rate`` is a deployment at its load.
- ``POST /v1/predict/columns``: many requests of one deployment as columns (``"prompt": [...],
  "gen": [...]``), answered as columns: the bulk format, up to a million requests a body.
- ``GET /v1/models``, ``GET /v1/gpus``: the catalogs. ``GET /healthz``: liveness.
- ``GET /metrics``: Prometheus counters of predictions served and of the predicted joules and
  grams by model, and a histogram of the time each prediction call took.

A body that does not fit the schema, and a request the predictor refuses (an unknown model or
GPU, a model that does not fit its GPUs, a prompt longer than the context window), is answered 422
with the field or the reason named; anything else is a 500 that says only that, never a
traceback. The service reads the predictor once, at start. By default (``grid=True``) requests
are read off their deployment's grid of predictions (:meth:`llmco2.Predictor.price_grid`, built
on a deployment's first request and kept), within a fraction of a percent of the exact answer;
``grid=False`` (``llmco2 serve --exact``) predicts every request exactly.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmco2.api import (
    DeploymentPrediction,
    Prediction,
    Predictor,
    gpus,
    models,
    predict,
    predict_many,
)
from llmco2.errors import Llmco2Error

__all__ = ["PredictColumns", "PredictRequest", "PredictRequests", "create_app"]


class _Deployment(BaseModel):
    """What the request bodies share: the deployment and the carbon accounting."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="Catalog name or alias (GET /v1/models).")
    gpu: str = Field("H100-SXM", min_length=1, description="GPU catalog id (GET /v1/gpus).")
    tp: int = Field(1, ge=1, description="GPUs of the tensor-parallel group.")
    batch: int = Field(1, ge=1, description="Sequences of each request.")
    precision: str | None = Field(None, description="Bit widths, e.g. w16a16kv16 or w8a8kv8.")
    region: str | None = Field(None, description="Country (ISO alpha-3) or cloud region.")
    intensity: float | None = Field(None, ge=0, description="Grid intensity, gCO2eq/kWh.")
    pue: float = Field(1.0, ge=1.0, description="Power usage effectiveness of the data centre.")


class PredictRequest(_Deployment):
    """One request to price: the keyword arguments of :func:`llmco2.predict`."""

    prompt: int = Field(1024, ge=1, description="Prompt tokens of each sequence.")
    gen: int = Field(128, ge=1, description="Generated tokens of each sequence.")
    concurrency: int | None = Field(None, ge=1, description="Serving: requests in flight.")
    rate: float | None = Field(None, gt=0, description="Serving: Poisson arrivals per second.")
    trace: Literal["conv", "code"] = Field("conv", description="Serving: request lengths.")

    @model_validator(mode="after")
    def _one_load(self) -> PredictRequest:
        if self.concurrency is not None and self.rate is not None:
            raise ValueError("give concurrency or rate, not both")
        return self

    @property
    def serving(self) -> bool:
        """Whether this is a deployment at a load rather than one request."""
        return self.concurrency is not None or self.rate is not None


class PredictColumns(_Deployment):
    """Many requests of one deployment, as columns of prompt and generated tokens."""

    prompt: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1, max_length=1_000_000, description="Prompt tokens of each request."
    )
    gen: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1, max_length=1_000_000, description="Generated tokens of each request."
    )

    @model_validator(mode="after")
    def _same_length(self) -> PredictColumns:
        if len(self.prompt) != len(self.gen):
            raise ValueError(
                f"prompt has {len(self.prompt)} values and gen {len(self.gen)}: one per request"
            )
        return self


#: Columns of a columnar answer that hold one value for the whole deployment.
_DEPLOYMENT_COLUMNS = (
    "model", "gpu", "tp", "batch", "precision", "interval_level", "latency_source",
    "extrapolated", "carbon_intensity_g_per_kwh", "carbon_intensity_source", "pue",
)  # fmt: skip


class PredictRequests(BaseModel):
    """Many single requests, priced in one predictor call."""

    model_config = ConfigDict(extra="forbid")

    requests: list[PredictRequest] = Field(min_length=1, max_length=100_000)


def create_app(predictor: Predictor | None = None, *, grid: bool = True) -> Any:
    """The ASGI application serving ``predictor`` (the shipped one by default).

    Args:
        predictor: The predictor to serve.
        grid: Read requests off their deployments' grids of predictions (False: exactly).

    Raises:
        MissingDependencyError: FastAPI, orjson or prometheus-client is not installed.
    """
    try:
        import orjson
        from fastapi import FastAPI, Request
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import JSONResponse, PlainTextResponse, Response
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            Counter,
            Histogram,
            generate_latest,
        )
    except ModuleNotFoundError as exc:
        from llmco2.errors import MissingDependencyError

        raise MissingDependencyError.for_module(exc.name or "fastapi", "the service") from None

    chosen = predictor if predictor is not None else Predictor.default()
    registry = CollectorRegistry()
    served = Counter(
        "llmco2_predictions", "Predictions served.", ["model", "kind"], registry=registry
    )
    joules = Counter(
        "llmco2_predicted_joules", "Predicted energy of the requests priced (J).", ["model"],
        registry=registry,
    )  # fmt: skip
    grams = Counter(
        "llmco2_predicted_grams",
        "Predicted operational CO2eq of the requests priced (g), where an intensity was given.",
        ["model"],
        registry=registry,
    )
    seconds = Histogram(
        "llmco2_prediction_seconds",
        "Time of one prediction call (one request, or a whole list).",
        buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
        registry=registry,
    )

    app = FastAPI(
        title="llmco2",
        summary="Energy and carbon of LLM inference requests, predicted before they run.",
        version=_version(),
    )

    @app.exception_handler(Llmco2Error)
    async def refused(request: Request, exc: Llmco2Error) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    def _record(model: str, kind: str, total_j: float, grams_: float | None) -> None:
        served.labels(model=model, kind=kind).inc()
        joules.labels(model=model).inc(total_j)
        if grams_ is not None:
            grams.labels(model=model).inc(grams_)

    def price_one(body: PredictRequest) -> dict[str, Any]:
        common: dict[str, Any] = {
            "gpu": body.gpu, "tp": body.tp, "prompt": body.prompt, "gen": body.gen,
            "precision": body.precision, "region": body.region, "intensity": body.intensity,
            "pue": body.pue, "predictor": chosen,
        }  # fmt: skip
        start = time.perf_counter()
        if body.concurrency is not None or body.rate is not None:
            deployment: DeploymentPrediction = (
                predict(body.model, **common, concurrency=body.concurrency, trace=body.trace)
                if body.concurrency is not None
                else predict(body.model, **common, rate=float(body.rate or 0), trace=body.trace)
            )
            seconds.observe(time.perf_counter() - start)
            _record(deployment.model, "deployment", deployment.per_request_j,
                    deployment.operational_g)  # fmt: skip
            return deployment.to_dict()
        single: Prediction = predict(body.model, **common, batch=body.batch, grid=grid)
        seconds.observe(time.perf_counter() - start)
        _record(single.model, "request", single.total_j, single.operational_g)
        return single.to_dict()

    @app.post("/v1/predict")
    async def predict_endpoint(body: PredictRequest | PredictRequests) -> Any:
        """Price one request (or a deployment at its load), or a list of requests."""
        if grid and isinstance(body, PredictRequest) and not body.serving:
            # Read off a grid in a fraction of a millisecond: answered on the event loop (the
            # deployment's first request builds its grid there, in about a second).
            return Response(orjson.dumps(price_one(body)), media_type="application/json")
        return await run_in_threadpool(price_body, body)

    def price_body(body: PredictRequest | PredictRequests) -> Any:
        if isinstance(body, PredictRequest):
            return price_one(body)
        if any(r.serving for r in body.requests):
            return [price_one(r) for r in body.requests]
        start = time.perf_counter()
        rows = [r.model_dump(exclude={"concurrency", "rate", "trace"}) for r in body.requests]
        settings = {(r["precision"], r["region"], r["intensity"], r["pue"]) for r in rows}
        answers: list[dict[str, Any]] = []
        # predict_many takes one carbon setting per call: one call per distinct setting.
        for precision, region, intensity, pue in sorted(settings, key=repr):
            chosen_rows = [
                (i, r) for i, r in enumerate(rows)
                if (r["precision"], r["region"], r["intensity"], r["pue"])
                == (precision, region, intensity, pue)
            ]  # fmt: skip
            table = predict_many(
                [{k: r[k] for k in ("model", "gpu", "tp", "batch", "prompt", "gen")}
                 for _, r in chosen_rows],
                precision=precision, region=region, intensity=intensity, pue=pue,
                predictor=chosen, grid=grid,
            )  # fmt: skip
            records: list[dict[str, Any]] = table.to_dict("records")  # type: ignore[assignment]
            for (i, _), record in zip(chosen_rows, records, strict=True):
                answers.append({"index": i, **record})
        seconds.observe(time.perf_counter() - start)
        answers.sort(key=lambda a: a["index"])
        for answer in answers:
            _record(answer["model"], "request", answer["total_j"], answer["operational_g"])
            del answer["index"]
            answer["gpus"] = answer.pop("tp")
        return answers

    @app.post("/v1/predict/columns", response_class=Response)
    def predict_columns_endpoint(body: PredictColumns) -> Any:
        """Price many requests of one deployment given as columns; answer as columns."""
        start = time.perf_counter()
        table = predict_many(
            {"prompt": body.prompt, "gen": body.gen}, model=body.model, gpu=body.gpu,
            tp=body.tp, precision=body.precision, region=body.region, intensity=body.intensity,
            pue=body.pue, predictor=chosen, grid=grid,
        )  # fmt: skip
        seconds.observe(time.perf_counter() - start)
        answer: dict[str, Any] = {
            name: table[name].iloc[0].item() if hasattr(table[name].iloc[0], "item")
            else table[name].iloc[0]
            for name in _DEPLOYMENT_COLUMNS
        }  # fmt: skip
        answer["prompt"], answer["gen"] = table["prompt"].to_numpy(), table["gen"].to_numpy()
        for name in table.columns:
            if name not in answer:
                column = table[name]
                answer[name] = None if column.isna().all() else column.to_numpy(dtype=float)
        served.labels(model=answer["model"], kind="request").inc(len(table))
        joules.labels(model=answer["model"]).inc(float(table["total_j"].sum()))
        if answer["operational_g"] is not None:
            grams.labels(model=answer["model"]).inc(float(table["operational_g"].sum()))
        return Response(
            orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY),
            media_type="application/json",
        )

    @app.get("/v1/models")
    def models_endpoint() -> list[dict[str, Any]]:
        """The built-in architectures."""
        return [
            {
                "id": m.id,
                "aliases": list(m.aliases),
                "family": m.architecture.family,
                "total_params": m.architecture.total_params,
                "context_window": m.context_window,
            }
            for m in models()
        ]

    @app.get("/v1/gpus")
    def gpus_endpoint() -> list[dict[str, Any]]:
        """The GPU catalog's datasheet figures."""
        return [gpu.entry.model_dump(mode="json") for gpu in gpus()]

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, and the setups the predictor was trained on."""
        return {"status": "ok", "predictor_trained_on": chosen.trained_on}

    # Return types are Any where a response class is local: FastAPI resolves annotations by name.
    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> Any:
        """Prometheus metrics."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _version() -> str:
    from llmco2 import __version__

    return __version__
