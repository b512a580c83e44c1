"""PyTorch Geometric graphs: connectivity, features, templates, bulk equals one by one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from featurize.graphs import (
    GLOBAL_FEATURE_NAMES,
    NODE_FEATURE_NAMES,
    build_graph,
    build_graphs,
    graph_template,
)
from featurize.kernels import KERNEL_TYPES, KernelType
from tests.conftest import PointFactory


def connected(num_nodes: int, edge_index: np.ndarray) -> bool:
    """Union-find over the undirected edges: one component?"""
    parent = list(range(num_nodes))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for s, d in edge_index.T:
        parent[find(int(s))] = find(int(d))
    return len({find(n) for n in range(num_nodes)}) == 1


@pytest.mark.parametrize("structure", list(itertools.product([False, True], repeat=4)))
def test_every_node_is_connected_in_every_structure(structure: tuple[bool, ...]) -> None:
    template = graph_template(*structure)
    num_nodes = len(template.kernel_index)
    assert connected(num_nodes, template.edge_index)
    # Every node takes part in an edge, and the graph is a DAG rooted at the embedding.
    assert set(template.edge_index.flatten().tolist()) == set(range(num_nodes))
    sources = set(template.edge_index[0].tolist())
    targets = set(template.edge_index[1].tolist())
    roots = sources - targets
    assert [KERNEL_TYPES[template.kernel_index[r]] for r in roots] == [KernelType.EMBEDDING]


def test_graph_of_a_tp2_llama(make_point: PointFactory) -> None:
    graph = build_graph(make_point(tp=2))
    names = [KERNEL_TYPES[i].value for i in graph.kernel_type.tolist()]
    assert "allreduce_attn" in names and "allreduce_mlp" in names and "gate_proj" in names
    assert "router" not in names and "matmul_qk" not in names
    assert graph.x.shape == (len(names), len(NODE_FEATURE_NAMES))
    assert graph.u.shape == (1, len(GLOBAL_FEATURE_NAMES))
    assert torch.isfinite(graph.x).all() and torch.isfinite(graph.u).all()
    # The type one-hot identifies each node's kernel.
    one_hot = graph.x[:, : len(KERNEL_TYPES)]
    assert torch.equal(one_hot.argmax(dim=1), graph.kernel_type)
    assert torch.all(one_hot.sum(dim=1) == 1)


def test_node_features_carry_both_phases_and_the_roofline(make_point: PointFactory) -> None:
    graph = build_graph(make_point(prompt=1024, gen=128))
    col = {name: n for n, name in enumerate(NODE_FEATURE_NAMES)}
    up = graph.kernel_type.tolist().index(list(KERNEL_TYPES).index(KernelType.UP_PROJ))
    x = graph.x[up]
    # Shares of the bound: the prefill of 1,024 tokens mostly compute-, the decode memory-bound.
    assert x[col["prefill_bound_compute"]] > 0.95 and x[col["decode_bound_memory"]] > 0.99
    # log10(1 + FLOPs): prefill of 1024 tokens vs 127 decode tokens.
    flops_ratio = 10 ** (x[col["prefill_log10_flops"]] - x[col["decode_log10_flops"]])
    assert float(flops_ratio) == pytest.approx(1024 / 127, rel=1e-3)


def test_the_bound_moves_smoothly_through_the_ridge_point(make_point: PointFactory) -> None:
    # A projection's prefill crosses from memory- to compute-bound as the prompt grows.
    col = {name: n for n, name in enumerate(NODE_FEATURE_NAMES)}
    shares = []
    for prompt in range(8, 2048, 8):
        graph = build_graph(make_point(prompt=prompt, gen=2))
        up = graph.kernel_type.tolist().index(list(KERNEL_TYPES).index(KernelType.UP_PROJ))
        x = graph.x[up]
        compute, memory = (
            float(x[col["prefill_bound_compute"]]),
            float(x[col["prefill_bound_memory"]]),
        )
        assert compute + memory + float(x[col["prefill_bound_network"]]) == pytest.approx(1.0)
        shares.append(compute)
    steps = np.abs(np.diff(shares))
    assert shares[0] < 0.05 and shares[-1] > 0.95  # both sides of the ridge are reached
    assert steps.max() < 0.1  # no flip: 8 more tokens move the share a little


def test_a_request_without_decode_has_zero_decode_features(make_point: PointFactory) -> None:
    graph = build_graph(make_point(gen=1))
    decode_cols = [n for n, name in enumerate(NODE_FEATURE_NAMES) if name.startswith("decode_")]
    assert torch.count_nonzero(graph.x[:, decode_cols]) == 0


def test_bulk_equals_one_by_one_and_templates_are_shared(make_point: PointFactory) -> None:
    points = [
        make_point(),
        make_point(model="mixtral-8x7b", tp=2),
        make_point(model="bloom-1b7", flash=False, gpu="T4", prompt=200, gen=20),
        make_point(prompt=64),
    ]
    graphs = build_graphs(points)
    for graph, point in zip(graphs, points, strict=True):
        alone = build_graph(point)
        assert torch.equal(graph.x, alone.x)
        assert torch.equal(graph.edge_index, alone.edge_index)
        assert torch.equal(graph.u, alone.u)
    assert graphs[0].edge_index is graphs[3].edge_index


def test_graphs_batch_with_pyg(make_point: PointFactory) -> None:
    from torch_geometric.data import Batch

    graphs = build_graphs([make_point(), make_point(model="mixtral-8x7b", tp=2)])
    batch = Batch.from_data_list(graphs)
    assert batch.num_graphs == 2
    assert batch.u.shape == (2, len(GLOBAL_FEATURE_NAMES))
    assert batch.x.shape[0] == graphs[0].num_nodes + graphs[1].num_nodes
