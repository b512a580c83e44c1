"""Shared fixtures: catalog architectures, GPUs, a point factory and databases.

Storage tests run on SQLite and on the real PostgreSQL server. PostgreSQL is taken from
``LLMCO2_TEST_POSTGRES_URL`` (default: the server the developers' and CI machines run on
127.0.0.1:5432, trust auth, database ``test``). Each test gets a database of its own, created and
dropped around it. The PostgreSQL tests are skipped only when that variable is set to an empty
string, i.e. where no server is configured.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from featurize import (
    Architecture,
    Gpu,
    GpuSetup,
    InferencePoint,
    InferenceRequest,
    Precision,
    get_gpu,
    resolve_architecture,
)
from storage import PointSpec

PointFactory = Callable[..., InferencePoint]


@pytest.fixture
def llama8b() -> Architecture:
    return resolve_architecture("meta-llama/Llama-3.1-8B")


@pytest.fixture
def h100() -> Gpu:
    return get_gpu("H100-SXM")


@pytest.fixture
def make_point() -> PointFactory:
    """Build a point from short keyword arguments (model, gpu, tp, batch, prompt, gen, ...)."""

    def factory(
        model: str | Architecture = "llama3.1-8b",
        gpu: str = "H100-SXM",
        tp: int = 1,
        batch: int = 1,
        prompt: int = 1024,
        gen: int = 128,
        flash: bool = True,
        wbits: int = 16,
        abits: int = 16,
        kvbits: int = 16,
    ) -> InferencePoint:
        arch = resolve_architecture(model) if isinstance(model, str) else model
        return InferencePoint(
            arch,
            InferenceRequest(batch, prompt, gen),
            GpuSetup(get_gpu(gpu), tp),
            Precision(wbits, abits, kvbits),
            flash,
        )

    return factory


POSTGRES_ENV = "LLMCO2_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    return url or None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip(f"no PostgreSQL server configured ({POSTGRES_ENV} is empty)")
    name = f"llmco2_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'campaign.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per back-end."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


def make_specs(count: int, engine: str = "simulated", gpu: str = "H100-SXM") -> list[PointSpec]:
    """``count`` distinct points of one engine configuration (prompt lengths 1..count)."""
    arch = resolve_architecture("qwen2-0.5b")
    setup = GpuSetup(get_gpu(gpu), 1)
    return [
        PointSpec(InferencePoint(arch, InferenceRequest(1, prompt, 16), setup), engine)
        for prompt in range(1, count + 1)
    ]
