from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featurize import GpuSetup, InferencePoint, InferenceRequest, get_gpu, resolve_architecture
from featurize.graphs import build_graphs
from gnn.baselines import NetworkShape
from gnn.portable import PortablePredictor
from gnn.training import TrainConfig, train_predictor
from llmco2.errors import ConfigFileError


@pytest.fixture(scope="module")
def trained(twin_data: Any) -> Any:
    predictor, _ = train_predictor(
        twin_data.graphs, twin_data.prefill_j, twin_data.decode_j,
        TrainConfig(epochs=8, seed=1), NetworkShape(hidden=48, graph_layers=3).model_config(
            twin_data.graphs[0]),
    )  # fmt: skip
    return predictor


def test_numpy_forward_equals_torch_on_every_graph_structure(trained: Any, tmp_path: Path) -> None:
    points = [
        InferencePoint(
            resolve_architecture(m), InferenceRequest(b, p, g), GpuSetup(get_gpu(gpu), tp)
        )
        for m, b, p, g, gpu, tp in [
            ("llama3.1-8b", 1, 1024, 128, "H100-SXM", 1),
            ("llama3.1-8b", 2, 100, 1, "H100-SXM", 2),  # prefill only, multi-GPU
            ("mixtral-8x7b", 1, 512, 16, "H200", 2),  # MoE
            ("bloom-560m", 3, 64, 32, "A100-80GB", 1),  # no gated MLP
            ("gemma-2-2b", 1, 4000, 8, "L4", 1),  # sliding window
        ]
    ]  # fmt: skip
    torch_energy = trained.predict(build_graphs(points))
    path = tmp_path / "p.npz"
    PortablePredictor.from_predictor(trained).save(path)
    portable = PortablePredictor.load(path)
    np.testing.assert_allclose(portable.predict_points(points), torch_energy, rtol=1e-4)
    assert torch_energy[1, 1] == 0.0  # one generated token: no decode
    assert portable.metadata == trained.metadata


def test_schema_and_format_are_checked(trained: Any, tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    PortablePredictor.from_predictor(trained).save(path)
    with np.load(path) as blob:
        arrays = {k: blob[k] for k in blob.files}
    header = json.loads(str(arrays["__header__"]))
    header["feature_schema_version"] = 999
    arrays["__header__"] = np.array(json.dumps(header))
    other = tmp_path / "other.npz"
    np.savez(other, **arrays)
    with pytest.raises(ConfigFileError, match="feature schema 999"):
        PortablePredictor.load(other)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConfigFileError, match="cannot read"):
        PortablePredictor.load(broken)
    with pytest.raises(ConfigFileError, match="no predictor"):
        PortablePredictor.load(tmp_path / "missing.npz")
    header["feature_schema_version"] = json.loads(str(np.load(path)["__header__"]))[
        "feature_schema_version"
    ]
    arrays["__header__"] = np.array(json.dumps(header))
    name = next(k for k in arrays if k != "__header__")
    arrays[name] = np.full_like(arrays[name], np.nan)
    np.savez(other, **arrays)
    with pytest.raises(ConfigFileError, match=f"non-finite weights \\(NaN or inf in '{name}'\\)"):
        PortablePredictor.load(other)
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ConfigFileError):
        PortablePredictor.load(tmp_path / "plain.npz")
