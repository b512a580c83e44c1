"""Shared fixtures: catalog architectures, GPUs, a point factory, databases and a local Ray.

Storage tests run on SQLite and on the real PostgreSQL server. PostgreSQL is taken from
``LLMCO2_TEST_POSTGRES_URL`` (default: the server the developers' and CI machines run on
127.0.0.1:5432, trust auth, database ``test``). Each test gets a database of its own, created and
dropped around it. The PostgreSQL tests are skipped only when that variable is set to an empty
string, i.e. where no server is configured.
"""

from __future__ import annotations

import contextlib
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

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def local_ray(num_cpus: int = 2, num_gpus: int = 0) -> Iterator[None]:
    """A Ray cluster on loopback for a test module: explicit CPUs, GPUs declared (not real)."""
    import ray

    ray.init(
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        logging_level="ERROR",
    )
    try:
        yield
    finally:
        ray.shutdown()


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
        ebits: int | None = None,
    ) -> InferencePoint:
        arch = resolve_architecture(model) if isinstance(model, str) else model
        return InferencePoint(
            arch,
            InferenceRequest(batch, prompt, gen),
            GpuSetup(get_gpu(gpu), tp),
            Precision(wbits, abits, kvbits, ebits),
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


def twin_points(count: int, seed: int = 0) -> list[InferencePoint]:
    """``count`` feasible points over 4 families, 2 GPU types and TP 1-2 (a small twin dataset)."""
    import numpy as np

    from featurize import check_fits
    from llmco2.errors import InfeasibleConfigError

    rng = np.random.default_rng(seed)
    models = ["qwen2-0.5b", "qwen2-1.5b", "llama3.1-8b", "gemma-2-2b", "bloom-560m"]
    points: list[InferencePoint] = []
    while len(points) < count:
        point = InferencePoint(
            resolve_architecture(models[int(rng.integers(len(models)))]),
            InferenceRequest(
                int(rng.integers(1, 5)), int(rng.integers(16, 2048)), int(rng.integers(1, 256))
            ),
            GpuSetup(get_gpu(["H100-SXM", "A100-80GB"][int(rng.integers(2))]),
                     int(rng.integers(1, 3))),
        )  # fmt: skip
        try:
            check_fits(point)
        except InfeasibleConfigError:
            continue
        points.append(point)
    return points


def twin_labels(points: list[InferencePoint]) -> list[dict[str, object]]:
    """Noise-free twin energies of ``points`` as exported rows (prefill, total, simulated)."""
    from workers.engines.simulated import TwinInputs, TwinParameters, twin_costs

    rows: list[dict[str, object]] = []
    for point in points:
        cost = twin_costs(TwinInputs.of([point]), TwinParameters.for_gpu(point.setup.gpu))[0]
        rows.append(
            {
                "prefill_energy_j": float(cost[2]),
                "energy_j": float(cost[2] + cost[3]),
                "latency_s": float(cost[0] + cost[1]),
                "prefill_latency_s": float(cost[0]),
                "simulated": True,
            }
        )
    return rows


@pytest.fixture(scope="session")
def twin_data() -> object:
    """A :class:`gnn.dataset.LabelledData` of 90 twin-labelled points."""
    from gnn.dataset import LabelledData

    points = twin_points(90)
    return LabelledData.from_rows(list(zip(points, twin_labels(points), strict=True)), "twin")


@pytest.fixture
def twin_campaign(sqlite_url: str) -> tuple[str, str]:
    """(database URL, campaign name) of a simulated campaign with 60 COMPLETE points."""
    from storage import CampaignStore, MeasurementRecord
    from storage.records import point_key

    points = twin_points(60, seed=1)
    store = CampaignStore(sqlite_url)
    campaign = store.create_campaign("twin", {"engine": "simulated"})
    store.add_points(campaign.id, [PointSpec(p, "simulated") for p in points])
    claimed = store.claim(campaign.id, "fixture", len(points))
    by_key = {point_key(p, "simulated"): row for p, row in
              zip(points, twin_labels(points), strict=True)}  # fmt: skip
    for stored in claimed:
        row = by_key[stored.key]
        prefill, total = float(row["prefill_energy_j"]), float(row["energy_j"])  # type: ignore[arg-type]
        store.record_result(
            stored.id,
            MeasurementRecord(
                engine_name="simulated", simulated=True, energy_j=total,
                prefill_energy_j=prefill, decode_energy_j=total - prefill,
                latency_s=float(row["latency_s"]),  # type: ignore[arg-type]
            ),
        )  # fmt: skip
    store.close()
    return sqlite_url, "twin"


@pytest.fixture
def twin_export(twin_campaign: tuple[str, str], tmp_path: Path) -> Path:
    """The twin campaign exported to a folder (parquet, simulated rows included)."""
    from storage import CampaignStore
    from storage.export import export_campaign

    url, name = twin_campaign
    store = CampaignStore(url)
    folder = tmp_path / "twin-export"
    export_campaign(store, name, "parquet", folder, include_simulated=True)
    store.close()
    return folder
