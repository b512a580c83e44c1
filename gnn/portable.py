"""The predictor without torch: the same network evaluated in NumPy, for fast start-up.

Importing torch and PyTorch Geometric takes seconds, longer than a prediction may. A trained
:class:`~gnn.training.Predictor` is exported to a ``.npz`` file (weights, feature standardisation,
metadata as JSON) that this module evaluates with NumPy alone: the graphs of one structure share
their nodes and edges, so a batch of them is a dense ``(graphs, nodes, features)`` array and
GraphSAGE's mean aggregation one matrix product. The result equals the torch forward pass to
float32 rounding (a test checks it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featurize.graphs import (
    FEATURE_SCHEMA_VERSION,
    GLOBAL_FEATURE_NAMES,
    graph_arrays,
    graph_template,
)
from featurize.point import InferencePoint
from gnn.features import FeatureView
from llmco2.errors import ConfigFileError

if TYPE_CHECKING:
    from gnn.training import Predictor

_GEN_COLUMN = GLOBAL_FEATURE_NAMES.index("log2_generated_tokens")
FORMAT = "llmco2-portable-predictor"
_CHUNK = 64
_SLICE = 2048


def mean_adjacency(edge_index: np.ndarray, nodes: int) -> np.ndarray:
    """Row-normalised adjacency of the undirected graph: row ``i`` averages ``i``'s neighbours.

    Edges count in both directions, as PyG's ``SAGEConv`` (mean aggregation) sees the edge list
    concatenated with its reverse; a node without neighbours aggregates zeros.
    """
    src = np.concatenate([edge_index[0], edge_index[1]])
    dst = np.concatenate([edge_index[1], edge_index[0]])
    adjacency = np.zeros((nodes, nodes), dtype=np.float32)
    np.add.at(adjacency, (dst, src), 1.0)
    degree = adjacency.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(adjacency, degree, out=np.zeros_like(adjacency), where=degree > 0))


def _silu(x: np.ndarray) -> np.ndarray:
    # In place on one scratch array: these element-wise passes, not the GEMMs, dominate.
    scratch = np.negative(x)
    np.exp(scratch, out=scratch)
    scratch += 1.0
    np.divide(x, scratch, out=scratch)
    return np.asarray(scratch)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    scale = np.sqrt(np.mean(np.square(centred), axis=-1, keepdims=True) + 1e-5)
    centred /= scale
    centred *= weight
    centred += bias
    return np.asarray(centred)


class PortablePredictor:
    """A predictor's weights as NumPy arrays, with the same ``metadata`` as its source."""

    def __init__(
        self,
        weights: dict[str, np.ndarray],
        config: dict[str, Any],
        metadata: dict[str, Any],
        correction_bound: float = 0.0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.weights = weights
        self.config = config
        self.metadata = metadata
        self.correction_bound = correction_bound
        #: Further header entries a wrapper stored (e.g. the hybrid's physics).
        self.extra = extra if extra is not None else {}

    @classmethod
    def from_predictor(cls, predictor: Predictor) -> PortablePredictor:
        """Copy a trained predictor's weights and standardisation."""
        weights = {
            k: v.detach().cpu().numpy().astype(np.float32)
            for k, v in predictor.model.state_dict().items()
        }
        weights.update({k: v.cpu().numpy().astype(np.float32) for k, v in predictor.stats.items()})
        return cls(
            weights,
            predictor.model.config.to_dict(),
            dict(predictor.metadata),
            predictor.correction_bound,
        )

    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """Write the ``.npz`` file (``extra``: further header entries, e.g. a wrapper's)."""
        header = {
            "format": FORMAT,
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "model_config": self.config,
            "metadata": self.metadata,
            "correction_bound": self.correction_bound,
            **(extra if extra is not None else self.extra),
        }
        with Path(path).open("wb") as handle:
            arrays: dict[str, Any] = {"__header__": np.array(json.dumps(header)), **self.weights}
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> PortablePredictor:
        """Read a ``.npz`` predictor.

        Raises:
            ConfigFileError: Missing, unreadable, not a predictor, or another feature schema.
        """
        try:
            with np.load(path, allow_pickle=False) as blob:
                header = json.loads(str(blob["__header__"]))
                weights = {k: blob[k] for k in blob.files if k != "__header__"}
        except FileNotFoundError as exc:
            raise ConfigFileError(f"no predictor at {str(path)!r}") from exc
        except Exception as exc:
            raise ConfigFileError(
                f"cannot read predictor {str(path)!r}: {type(exc).__name__}"
            ) from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ConfigFileError(f"{str(path)!r} is not an llmco2 portable predictor")
        if header.get("feature_schema_version") != FEATURE_SCHEMA_VERSION:
            raise ConfigFileError(
                f"predictor {str(path)!r} was trained on feature schema "
                f"{header.get('feature_schema_version')}, this llmco2 uses "
                f"{FEATURE_SCHEMA_VERSION}: retrain it with `llmco2 train`"
            )
        bad = [k for k, v in weights.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
        if bad:
            raise ConfigFileError(
                f"predictor {str(path)!r} holds non-finite weights (NaN or inf in {bad[0]!r}): "
                "it is corrupted; retrain it with `llmco2 train`"
            )
        known = {"format", "feature_schema_version", "model_config", "metadata", "correction_bound"}
        return cls(
            weights,
            header["model_config"],
            header.get("metadata", {}),
            float(header.get("correction_bound", 0.0)),
            {k: v for k, v in header.items() if k not in known},
        )

    def _linear(self, name: str, x: np.ndarray, bias: bool = True) -> np.ndarray:
        # One GEMM over all rows: a stacked (graphs, nodes, F) matmul would run one small GEMM
        # per graph, several times slower.
        flat = x.reshape(-1, x.shape[-1]) @ self.weights[f"{name}.weight"].T
        if bias:
            flat += self.weights[f"{name}.bias"]
        return np.asarray(flat.reshape(*x.shape[:-1], flat.shape[-1]))

    def _log_energy(self, x: np.ndarray, u: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
        """Log prefill and decode energy of graphs of one structure: x (B, n, F), u (B, G)."""
        w = self.weights
        if "x_low" in w:  # the training range, as Predictor.normalise holds features to it
            x = np.clip(x, w["x_low"], w["x_high"])
            u = np.clip(u, w["u_low"], w["u_high"])
        x = (x - w["x_mean"]) / w["x_std"]
        u = (u - w["u_mean"]) / w["u_std"]
        nodes = x.shape[1]
        adjacency = mean_adjacency(edge_index, nodes)
        hidden = _silu(self._linear("node_in", x))
        for layer in range(self.config["graph_layers"]):
            graphs, _, width = hidden.shape
            # Mean over neighbours as one GEMM: (nodes, nodes) × (nodes, graphs · width).
            stacked = hidden.transpose(1, 0, 2).reshape(nodes, graphs * width)
            neighbours = (adjacency @ stacked).reshape(nodes, graphs, width).transpose(1, 0, 2)
            conv = self._linear(f"convs.{layer}.lin_l", neighbours) + self._linear(
                f"convs.{layer}.lin_r", hidden, bias=False
            )
            normed = _layer_norm(conv, w[f"norms.{layer}.weight"], w[f"norms.{layer}.bias"])
            hidden = hidden + _silu(normed)
        pooled = np.concatenate([hidden.mean(axis=1), hidden.max(axis=1)], axis=1)
        glob = _silu(self._linear("global_in.0", u))
        head = _silu(self._linear("head.0", np.concatenate([pooled, glob], axis=1)))
        return self._linear("head.3", head)

    def predict_points(self, points: Sequence[InferencePoint]) -> np.ndarray:
        """Energy (J) of each point: columns prefill, decode, total (a plain energy model)."""
        log_energy, has_decode = self._outputs(points, None)
        prefill = np.exp(log_energy[:, 0])
        decode = np.exp(log_energy[:, 1]) * has_decode
        return np.stack([prefill, decode, prefill + decode], axis=1)

    def outputs(self, points: Sequence[InferencePoint], view: FeatureView | None) -> np.ndarray:
        """The network's outputs ``(N, outputs)`` per point, features in ``view``.

        A correction model's outputs come bounded, as the torch predictor gives them.
        """
        raw, _ = self._outputs(points, view)
        return self._bounded(raw)

    def _outputs(
        self, points: Sequence[InferencePoint], view: FeatureView | None
    ) -> tuple[np.ndarray, np.ndarray]:
        # Featurised in slices: the (points, kernels, features) array of a whole large batch
        # would be hundreds of MB of memory traffic.
        width = int(self.config.get("outputs", 2))
        if not len(points):
            return np.zeros((0, width)), np.zeros(0)
        parts = [self._slice(points[i : i + _SLICE], view) for i in range(0, len(points), _SLICE)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _slice(
        self, points: Sequence[InferencePoint], view: FeatureView | None
    ) -> tuple[np.ndarray, np.ndarray]:
        groups, has_decode = _featurise(points, view)
        return self._evaluate(groups, len(points)), has_decode

    def _evaluate(self, groups: list[_Group], count: int) -> np.ndarray:
        """Raw outputs ``(count, outputs)`` of featurised graphs (see :func:`_featurise`)."""
        result = np.zeros((count, int(self.config.get("outputs", 2))))
        for rows, x, u, edge_index in groups:
            # Chunks of graphs keep the element-wise passes in cache.
            result[rows] = np.concatenate(
                [
                    self._log_energy(x[i : i + _CHUNK], u[i : i + _CHUNK], edge_index)
                    for i in range(0, len(rows), _CHUNK)
                ]
            ).astype(np.float64)
        return result

    def _bounded(self, raw: np.ndarray) -> np.ndarray:
        if self.correction_bound > 0:
            return np.asarray(self.correction_bound * np.tanh(raw / self.correction_bound))
        return raw


#: Rows of one graph structure, their node and global features and the structure's edges.
_Group = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _featurise(
    points: Sequence[InferencePoint], view: FeatureView | None
) -> tuple[list[_Group], np.ndarray]:
    """The points' graphs grouped by structure, features in ``view``, and which have a decode."""
    arrays = graph_arrays(points)
    structures = [tuple(row) for row in arrays.structure.tolist()]
    groups = []
    for key in sorted(set(structures)):
        rows = np.array([i for i, s in enumerate(structures) if s == key])
        template = graph_template(*key)
        x = arrays.node_features[np.ix_(rows, template.kernel_index)].astype(np.float32)
        u = arrays.global_features[rows].astype(np.float32)
        if view is not None and not (view.phase_split and view.roofline):
            flat, u = view.transform(x.reshape(-1, x.shape[-1]), u)
            x = flat.reshape(x.shape)
        groups.append((rows, x, u, template.edge_index))
    return groups, (arrays.global_features[:, _GEN_COLUMN] > 0).astype(np.float64)


def member_outputs(
    networks: Sequence[PortablePredictor], points: Sequence[InferencePoint], view: FeatureView
) -> np.ndarray:
    """Each network's bounded outputs ``(networks, N, outputs)``, the points featurised once."""
    parts = []
    for i in range(0, len(points), _SLICE):
        chunk = points[i : i + _SLICE]
        groups, _ = _featurise(chunk, view)
        parts.append(np.stack([n._bounded(n._evaluate(groups, len(chunk))) for n in networks]))
    width = int(networks[0].config.get("outputs", 2))
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(networks), 0, width))
