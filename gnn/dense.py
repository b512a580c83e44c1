"""PyG graphs of a few structures as dense tensors, for fast training and prediction.

The kernel graphs of all requests share a handful of structures (flash attention or not, gated
MLP, MoE, tensor parallelism): within one, every graph has the same nodes and edges. Stacking
them per structure turns a mini-batch into index selections of tensors, with no per-batch
collation of Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnn.portable import mean_adjacency


@dataclass(frozen=True)
class DenseGroup:
    """Graphs of one structure.

    Attributes:
        rows: Positions of these graphs in the original list.
        x: Node features ``(graphs, nodes, features)``.
        u: Global features ``(graphs, global_features)``.
        adjacency: ``(nodes, nodes)`` mean-aggregation matrix.
    """

    rows: np.ndarray
    x: Tensor
    u: Tensor
    adjacency: Tensor


@dataclass(frozen=True)
class DenseGraphs:
    """A list of graphs regrouped by structure."""

    groups: tuple[DenseGroup, ...]
    size: int

    @classmethod
    def from_graphs(cls, graphs: Sequence[Any]) -> DenseGraphs:
        """Group PyG ``Data`` objects (with ``x``, ``u``, ``edge_index``) by structure."""
        by_structure: dict[tuple[int, bytes], list[int]] = {}
        for position, graph in enumerate(graphs):
            key = (int(graph.x.shape[0]), graph.edge_index.numpy().tobytes())
            by_structure.setdefault(key, []).append(position)
        groups = []
        for (nodes, _), positions in sorted(by_structure.items(), key=lambda kv: kv[1][0]):
            first = graphs[positions[0]]
            groups.append(
                DenseGroup(
                    rows=np.array(positions),
                    x=torch.stack([graphs[i].x for i in positions]).float(),
                    u=torch.cat([graphs[i].u for i in positions]).float(),
                    adjacency=torch.from_numpy(mean_adjacency(first.edge_index.numpy(), nodes)),
                )
            )
        return cls(tuple(groups), len(graphs))

    def select(self, index: np.ndarray) -> tuple[DenseGraphs, np.ndarray]:
        """The graphs at positions ``index``, and the order their outputs come in.

        Returns:
            The subset, and for each of its outputs (group by group) the original position.
        """
        wanted = np.zeros(self.size, dtype=bool)
        wanted[index] = True
        groups, order = [], []
        for group in self.groups:
            keep = np.flatnonzero(wanted[group.rows])
            if len(keep) == 0:
                continue
            picked = torch.from_numpy(keep)
            groups.append(
                DenseGroup(group.rows[keep], group.x[picked], group.u[picked], group.adjacency)
            )
            order.append(group.rows[keep])
        return DenseGraphs(tuple(groups), self.size), np.concatenate(order)

    def to(self, device: str) -> DenseGraphs:
        """The same graphs with their tensors on ``device``."""
        groups = tuple(
            DenseGroup(g.rows, g.x.to(device), g.u.to(device), g.adjacency.to(device))
            for g in self.groups
        )
        return DenseGraphs(groups, self.size)

    @property
    def order(self) -> np.ndarray:
        """Original positions of the graphs, in the order their outputs come."""
        return np.concatenate([g.rows for g in self.groups])

    def all_x(self) -> Tensor:
        """Every node feature row, ``(nodes of all graphs, features)``."""
        return torch.cat([g.x.reshape(-1, g.x.shape[-1]) for g in self.groups])

    def all_u(self) -> Tensor:
        """Every global feature row, ``(graphs, global_features)``."""
        return torch.cat([g.u for g in self.groups])
