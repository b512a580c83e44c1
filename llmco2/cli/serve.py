"""``serve``: the prediction service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model_path: Annotated[
        Path | None, typer.Option("--model", help="Predictor checkpoint (default: shipped).")
    ] = None,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Predict every request exactly instead of reading it off its deployment's grid.",
        ),
    ] = False,
) -> None:
    """Serve predictions over HTTP: POST /v1/predict, /v1/models, /v1/gpus, /metrics, /docs."""
    from llmco2.api import Predictor
    from llmco2.errors import InvalidRequestError
    from llmco2.service import create_app

    if not 0 < port < 65536:
        raise InvalidRequestError(f"--port must be 1-65535, got {port}")
    import socket

    from llmco2.errors import EnvironmentProblemError

    # Refused here, in one line, rather than by uvicorn's log after the predictor is loaded.
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise EnvironmentProblemError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    predictor = Predictor.load(model_path) if model_path is not None else Predictor.default()
    application = create_app(predictor, grid=not exact)
    import uvicorn

    print(f"llmco2 service on http://{host}:{port} (OpenAPI docs at /docs)", file=sys.stderr)
    uvicorn.run(application, host=host, port=port, log_level="warning")
