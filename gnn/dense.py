"""PyG graphs as one padded dense batch, for fast training and prediction.

The kernel graphs of all requests share a handful of structures (flash attention or not, gated
MLP, MoE, tensor parallelism) of 15 to 21 nodes. Padding every graph to the largest and giving
each its own mean-aggregation matrix makes any set of graphs one ``(graphs, nodes, features)``
tensor: a mini-batch is one index selection and one pass of the network, with no per-batch
collation of Python objects and no pass per structure (on a CPU the per-call overhead of a small
network, not its arithmetic, is what training time is made of).
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
class DenseGraphs:
    """Graphs padded to a common node count.

    Attributes:
        rows: Position of each graph in the original list (outputs come in this order).
        x: Node features ``(graphs, nodes, features)``, zeros on padding nodes.
        u: Global features ``(graphs, global_features)``.
        adjacency: ``(graphs, nodes, nodes)`` mean-aggregation matrices, row ``i`` averaging
            node ``i``'s neighbours; rows and columns of padding nodes are zero, so padding
            never reaches a real node.
        mask: ``(graphs, nodes)``, 1 on real nodes and 0 on padding.
        size: Length of the original list.
    """

    rows: np.ndarray
    x: Tensor
    u: Tensor
    adjacency: Tensor
    mask: Tensor
    size: int

    @classmethod
    def from_graphs(cls, graphs: Sequence[Any]) -> DenseGraphs:
        """Pad PyG ``Data`` objects (with ``x``, ``u``, ``edge_index``) to one batch."""
        if not len(graphs):
            raise ValueError("no graphs to stack")
        nodes = max(int(g.x.shape[0]) for g in graphs)
        features = int(graphs[0].x.shape[1])
        x = torch.zeros((len(graphs), nodes, features))
        adjacency = torch.zeros((len(graphs), nodes, nodes))
        mask = torch.zeros((len(graphs), nodes))
        by_structure: dict[tuple[int, bytes], Tensor] = {}
        for position, graph in enumerate(graphs):
            count = int(graph.x.shape[0])
            edges = graph.edge_index.numpy()
            key = (count, edges.tobytes())
            if key not in by_structure:
                by_structure[key] = torch.from_numpy(mean_adjacency(edges, count))
            x[position, :count] = graph.x.float()
            adjacency[position, :count, :count] = by_structure[key]
            mask[position, :count] = 1.0
        u = torch.cat([g.u for g in graphs]).float()
        return cls(np.arange(len(graphs)), x, u, adjacency, mask, len(graphs))

    def select(self, index: np.ndarray) -> tuple[DenseGraphs, np.ndarray]:
        """The graphs at positions ``index`` (of this batch), and their original positions.

        Returns:
            The subset, and for each of its outputs the original position.
        """
        picked = torch.from_numpy(np.asarray(index, dtype=np.int64))
        subset = DenseGraphs(
            self.rows[index],
            self.x[picked],
            self.u[picked],
            self.adjacency[picked],
            self.mask[picked],
            self.size,
        )
        return subset, subset.rows

    def with_features(self, x: Tensor, u: Tensor) -> DenseGraphs:
        """The same graphs with other node and global features (padding kept at zero)."""
        return DenseGraphs(
            self.rows, x * self.mask[..., None], u, self.adjacency, self.mask, self.size
        )

    def to(self, device: str) -> DenseGraphs:
        """The same graphs with their tensors on ``device``."""
        return DenseGraphs(
            self.rows,
            self.x.to(device),
            self.u.to(device),
            self.adjacency.to(device),
            self.mask.to(device),
            self.size,
        )

    @property
    def order(self) -> np.ndarray:
        """Original positions of the graphs, in the order their outputs come."""
        return self.rows

    @property
    def structures(self) -> int:
        """How many distinct graph structures (node count and edges) the batch holds."""
        flat = torch.cat([self.adjacency.flatten(1), self.mask], dim=1)
        return int(torch.unique(flat, dim=0).shape[0])

    def all_x(self) -> Tensor:
        """Every real node's feature row, ``(nodes of all graphs, features)``."""
        return self.x[self.mask.bool()]

    def all_u(self) -> Tensor:
        """Every global feature row, ``(graphs, global_features)``."""
        return self.u
