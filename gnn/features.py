"""Views of the graph features for the baselines and ablations.

The LLMCO2 graph carries prefill and decode features side by side and roofline-derived features
(memory intensity, attainable performance, roofline time, the bound). A view removes either:

- without the phase split, each per-phase quantity becomes the request's sum over both phases
  (in the prefill column; the decode column is zeroed), as a graph without the split would see
  it, and a model trains on total energy only (the NNLQP-style baseline);
- without roofline features, every roofline-derived column is zeroed (standardisation then makes
  it a constant, i.e. absent).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurize.graphs import GLOBAL_FEATURE_NAMES, NODE_FEATURE_NAMES

_ROOFLINE_MARKERS = ("memory_intensity", "performance", "roofline_time", "_bound_")


def _columns(names: Sequence[str], predicate: Any) -> list[int]:
    return [i for i, name in enumerate(names) if predicate(name)]


def _is_roofline(name: str) -> bool:
    return any(marker in name for marker in _ROOFLINE_MARKERS)


def _phase_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """(prefill column, decode column) of every additive per-phase log10 quantity."""
    pairs = []
    for i, name in enumerate(names):
        if name.startswith("prefill_") and "log10" in name and not _is_roofline(name):
            twin = "decode_" + name.removeprefix("prefill_")
            if twin in names:
                pairs.append((i, list(names).index(twin)))
    return pairs


@dataclass(frozen=True)
class FeatureView:
    """Which feature groups a model sees."""

    phase_split: bool = True
    roofline: bool = True

    @property
    def name(self) -> str:
        """Short label for tables."""
        parts = ["phases" if self.phase_split else "no-phases"]
        parts.append("roofline" if self.roofline else "no-roofline")
        return "+".join(parts)

    def transform(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Node features ``x`` (nodes × F) and global features ``u`` (graphs × G) in this view."""
        x, u = x.copy(), u.copy()
        if not self.phase_split:
            for features, names in ((x, NODE_FEATURE_NAMES), (u, GLOBAL_FEATURE_NAMES)):
                for pre, dec in _phase_pairs(names):
                    # Features are log10(1 + value): merge the values, not the logarithms.
                    features[:, pre] = np.log10(
                        np.power(10.0, features[:, pre]) + np.power(10.0, features[:, dec]) - 1.0
                    )
                    features[:, dec] = 0.0
                for col in _columns(names, lambda n: "_bound_" in n and n.startswith("decode_")):
                    features[:, col] = 0.0
        if not self.roofline:
            x[:, _columns(NODE_FEATURE_NAMES, _is_roofline)] = 0.0
            u[:, _columns(GLOBAL_FEATURE_NAMES, _is_roofline)] = 0.0
        return x, u

    def apply(self, graphs: Sequence[Any]) -> list[Any]:
        """Copies of PyG graphs with their features in this view (the input is not modified)."""
        if self.phase_split and self.roofline:
            return list(graphs)
        import torch

        result = []
        for graph in graphs:
            x, u = self.transform(graph.x.numpy(), graph.u.numpy())
            item = copy.copy(graph)
            item.x = torch.from_numpy(x).to(graph.x.dtype)
            item.u = torch.from_numpy(u).to(graph.u.dtype)
            result.append(item)
        return result
