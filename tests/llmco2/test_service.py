"""The prediction service: `llmco2 serve` started for real on loopback, called over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import llmco2
from tests.llmco2.service_server import running_service

ROOT = Path(__file__).resolve().parents[2]


def test_it_answers_what_the_api_answers(service: httpx.Client) -> None:
    body = {"model": "llama3.1-8b", "gpu": "H200", "tp": 2, "prompt": 1024, "gen": 128,
            "region": "FRA"}  # fmt: skip
    response = service.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    asked: dict[str, Any] = {"gpu": "H200", "tp": 2, "prompt": 1024, "gen": 128, "region": "FRA"}
    expected = llmco2.predict("llama3.1-8b", **asked, grid=True)  # as the service reads it
    assert answer["total_j"] == pytest.approx(expected.total_j, rel=1e-9)
    assert answer["operational_g"] == pytest.approx(expected.operational_g, rel=1e-9)
    assert answer["gpus"] == 2 and answer["model"] == "meta-llama/Llama-3.1-8B"
    exact = llmco2.predict("llama3.1-8b", **asked)
    assert answer["total_j"] == pytest.approx(exact.total_j, rel=5e-3)


def test_with_exact_every_request_is_predicted_exactly() -> None:
    with running_service("--exact") as exact_service:
        body = {"model": "qwen3-8b", "gpu": "H200", "prompt": 777, "gen": 33}
        single = exact_service.post("/v1/predict", json=body).json()
        columns = exact_service.post(
            "/v1/predict/columns", json={**body, "prompt": [777], "gen": [33]}
        ).json()
    expected = llmco2.predict("qwen3-8b", gpu="H200", prompt=777, gen=33)
    assert single["total_j"] == pytest.approx(expected.total_j, rel=1e-9)
    assert columns["total_j"] == [pytest.approx(expected.total_j, rel=1e-9)]


def test_columns_of_one_deployment_come_back_as_columns(service: httpx.Client) -> None:
    prompts, gens = [100, 2000, 800, 100], [10, 50, 300, 10]
    body = {"model": "qwen3-8b", "gpu": "H200", "region": "FRA", "prompt": prompts, "gen": gens}
    response = service.post("/v1/predict/columns", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "Qwen/Qwen3-8B" and answer["tp"] == 1 and answer["pue"] == 1.0
    assert answer["prompt"] == prompts and answer["gen"] == gens
    table = llmco2.predict_many(
        {"prompt": prompts, "gen": gens}, model="qwen3-8b", gpu="H200", region="FRA", grid=True
    )
    assert answer["total_j"] == pytest.approx(table["total_j"].tolist(), rel=1e-9)
    assert answer["operational_g"] == pytest.approx(table["operational_g"].tolist(), rel=1e-9)
    assert answer["total_j"][0] == answer["total_j"][3]
    without_carbon = service.post(
        "/v1/predict/columns", json={"model": "qwen3-8b", "prompt": [5], "gen": [5]}
    ).json()
    assert without_carbon["operational_g"] is None and without_carbon["gpu"] == "H100-SXM"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"model": "qwen3-8b", "prompt": [1, 2], "gen": [1]}, "one per request"),
        ({"model": "qwen3-8b", "prompt": [0], "gen": [1]}, "prompt"),
        ({"model": "qwen3-8b", "prompt": [], "gen": []}, "prompt"),
        ({"model": "qwen3-8b", "prompt": [100_000], "gen": [100_000]}, "context window"),
        ({"model": "llama3.1-70b", "gpu": "H100-SXM", "prompt": [5], "gen": [5]}, "GB per GPU"),
    ],
)
def test_bad_columns_are_422_naming_the_field_or_the_reason(
    service: httpx.Client, body: dict[str, object], named: str
) -> None:
    response = service.post("/v1/predict/columns", json=body)
    assert response.status_code == 422
    assert named in response.text and "Traceback" not in response.text


def test_many_requests_in_one_body_come_back_in_their_order(service: httpx.Client) -> None:
    requests: list[dict[str, str | int | float | None]] = [
        {"model": "qwen3-8b", "gpu": "H200", "prompt": 100, "gen": 10, "intensity": None},
        {"model": "llama3.1-8b", "gpu": "H100-SXM", "prompt": 2000, "gen": 50, "intensity": 300},
        {"model": "qwen3-8b", "gpu": "H200", "prompt": 800, "gen": 300, "intensity": None},
    ]
    response = service.post("/v1/predict", json={"requests": requests})
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["prompt"] for a in answers] == [100, 2000, 800]
    for request, answer in zip(requests, answers, strict=True):
        intensity = request["intensity"]
        single = llmco2.predict(
            str(request["model"]), gpu=str(request["gpu"]), prompt=int(str(request["prompt"])),
            gen=int(str(request["gen"])), intensity=None if intensity is None else float(intensity),
            grid=True,
        )  # fmt: skip
        assert answer["total_j"] == pytest.approx(single.total_j, rel=1e-6)
        assert answer["gpus"] == 1
    assert answers[1]["operational_g"] is not None and answers[0]["operational_g"] is None


def test_a_deployment_at_its_load(service: httpx.Client) -> None:
    body = {"model": "qwen3-8b", "gpu": "H200", "concurrency": 8, "trace": "code"}
    response = service.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["concurrency"] == 8 and answer["per_request_j"] > 0
    assert answer["ttft_s"]["p50"] > 0


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"gpu": "H200"}, "model"),
        ({"model": "qwen3-8b", "prompt": -4}, "prompt"),
        ({"model": "qwen3-8b", "pue": 0.5}, "pue"),
        ({"model": "qwen3-8b", "tokens": 5}, "tokens"),
        ({"model": "qwen3-8b", "trace": "/etc/passwd", "concurrency": 2}, "trace"),
        ({"model": "qwen3-8b", "concurrency": 2, "rate": 1.0}, "not both"),
        ({"requests": []}, "requests"),
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"model": "qwen3-8b", "gpu": "Z9000"}, "Z9000"),
        ({"model": "llama3.1-70b", "gpu": "H100-SXM"}, "GB per GPU"),
        ({"model": "qwen3-8b", "region": "FRA", "intensity": 3}, "not both"),
    ],
)
def test_bad_requests_are_422_naming_the_field_or_the_reason(
    service: httpx.Client, body: dict[str, object], named: str
) -> None:
    response = service.post("/v1/predict", json=body)
    assert response.status_code == 422
    assert named in response.text
    assert "Traceback" not in response.text


def test_catalogs_health_and_docs(service: httpx.Client) -> None:
    models = service.get("/v1/models").json()
    assert any("llama3.1-8b" in m["aliases"] for m in models)
    assert {"H200", "H100-SXM"} <= {g["id"] for g in service.get("/v1/gpus").json()}
    health = service.get("/healthz").json()
    assert health["status"] == "ok" and "1xH200" in health["predictor_trained_on"]
    assert "/v1/predict" in service.get("/openapi.json").json()["paths"]
    assert service.get("/docs").status_code == 200


def test_metrics_count_what_was_served(service: httpx.Client) -> None:
    def counter(text: str, name: str, model: str) -> float:
        for line in text.splitlines():
            if line.startswith(name) and f'model="{model}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = service.get("/metrics").text
    answer = service.post(
        "/v1/predict", json={"model": "gemma-2-9b", "gpu": "H200", "intensity": 400}
    ).json()
    after = service.get("/metrics").text
    model = "google/gemma-2-9b"
    assert counter(after, "llmco2_predictions_total", model) == (
        counter(before, "llmco2_predictions_total", model) + 1
    )
    assert counter(after, "llmco2_predicted_joules_total", model) == pytest.approx(
        counter(before, "llmco2_predicted_joules_total", model) + answer["total_j"]
    )
    assert counter(after, "llmco2_predicted_grams_total", model) == pytest.approx(
        counter(before, "llmco2_predicted_grams_total", model) + answer["operational_g"]
    )
    assert "llmco2_prediction_seconds_bucket" in after


def test_a_port_out_of_range_is_refused_before_starting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmco2", "serve", "--port", "70000"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "llmco2: error: --port must be 1-65535, got 70000"
    ]


def test_a_port_in_use_is_an_environment_problem_in_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "llmco2", "serve", "--port", str(port)],
            check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"llmco2: error: cannot listen on 127.0.0.1:{port}")
