"""The LLMCO2 graph neural network, with a prefill head and a decode head.

As in the paper: two GraphSAGE layers (PyG ``SAGEConv``) over the kernel graph whose nodes carry
prefill and decode features, a graph-level pooling, the global features joined in, and linear
layers. Ours predicts two outputs, log prefill energy and log decode energy (total = their sum),
so it trains on per-phase labels and answers per phase; energies span five decades, so both
heads regress logarithms and the loss is a relative error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network."""

    node_features: int
    global_features: int
    hidden: int = 128
    graph_layers: int = 2
    dropout: float = 0.0
    #: Output columns: 2 (log prefill and decode energy) or 4 (and log prefill, decode latency).
    outputs: int = 2

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints."""
        return asdict(self)


class LLMCO2Net(nn.Module):
    """GraphSAGE × ``graph_layers`` → mean and max pooling ⊕ global MLP → two log-energy heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        from torch_geometric.nn import SAGEConv

        self.config = config
        h = config.hidden
        self.node_in = nn.Linear(config.node_features, h)
        self.convs = nn.ModuleList([SAGEConv(h, h) for _ in range(config.graph_layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(h) for _ in range(config.graph_layers)])
        self.global_in = nn.Sequential(nn.Linear(config.global_features, h), nn.SiLU())
        self.head = nn.Sequential(
            nn.Linear(3 * h, h),
            nn.SiLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, config.outputs),
        )

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor, u: Tensor) -> Tensor:
        """Outputs of each graph of a PyG batch, shape ``(graphs, outputs)``."""
        from torch_geometric.nn import global_max_pool, global_mean_pool

        hidden = torch.nn.functional.silu(self.node_in(x))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            hidden = hidden + torch.nn.functional.silu(norm(conv(hidden, edge_index)))
        pooled = torch.cat([global_mean_pool(hidden, batch), global_max_pool(hidden, batch)], dim=1)
        return torch.as_tensor(self.head(torch.cat([pooled, self.global_in(u)], dim=1)))

    def forward_dense(self, x: Tensor, adjacency: Tensor, u: Tensor, mask: Tensor) -> Tensor:
        """The same network on graphs padded to one node count (:class:`gnn.dense.DenseGraphs`).

        A batch is an ``(graphs, nodes, features)`` tensor and GraphSAGE's mean aggregation one
        batched product with each graph's row-normalised adjacency: no PyG collation, which
        costs more than the network itself. Padding nodes reach no real node (their adjacency
        rows and columns are zero) and are left out of the pooling. Equal to :meth:`forward` up
        to float rounding (a test checks it).

        Args:
            x: Node features ``(graphs, nodes, features)``.
            adjacency: ``(graphs, nodes, nodes)``, row ``i`` averaging node ``i``'s neighbours.
            u: Global features ``(graphs, global_features)``.
            mask: ``(graphs, nodes)``, 1 on real nodes and 0 on padding.
        """
        hidden = torch.nn.functional.silu(self.node_in(x))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            neighbours = torch.matmul(adjacency, hidden)
            conv_out = conv.lin_l(neighbours) + conv.lin_r(hidden)  # type: ignore[operator]
            hidden = hidden + torch.nn.functional.silu(norm(conv_out))
        real = mask.unsqueeze(-1)
        mean = (hidden * real).sum(dim=1) / real.sum(dim=1)
        peak = hidden.masked_fill(real == 0, float("-inf")).amax(dim=1)
        pooled = torch.cat([mean, peak], dim=1)
        return torch.as_tensor(self.head(torch.cat([pooled, self.global_in(u)], dim=1)))
