from __future__ import annotations

import numpy as np

from featurize.graphs import GLOBAL_FEATURE_NAMES, NODE_FEATURE_NAMES, build_graphs
from gnn.features import FeatureView
from tests.conftest import twin_points


def _column(names: tuple[str, ...], name: str) -> int:
    return names.index(name)


def test_full_view_returns_the_graphs_unchanged() -> None:
    graphs = build_graphs(twin_points(3))
    assert FeatureView().apply(graphs) == graphs


def test_without_roofline_every_roofline_column_is_zero_and_the_input_is_untouched() -> None:
    graphs = build_graphs(twin_points(4))
    before = [g.x.clone() for g in graphs]
    viewed = FeatureView(roofline=False).apply(graphs)
    roofline_cols = [
        i for i, n in enumerate(NODE_FEATURE_NAMES)
        if "roofline" in n or "performance" in n or "intensity" in n or "_bound_" in n
    ]  # fmt: skip
    assert roofline_cols
    for graph, original, view in zip(graphs, before, viewed, strict=True):
        assert (view.x[:, roofline_cols] == 0).all()
        assert (graph.x == original).all()
        other = [i for i in range(len(NODE_FEATURE_NAMES)) if i not in roofline_cols]
        assert (view.x[:, other] == graph.x[:, other]).all()
    u_cols = [i for i, n in enumerate(GLOBAL_FEATURE_NAMES) if "roofline" in n]
    assert all((v.u[:, u_cols] == 0).all() for v in viewed)


def test_without_phase_split_phase_quantities_are_summed_into_one_column() -> None:
    graph = build_graphs(twin_points(1))[0]
    view = FeatureView(phase_split=False).apply([graph])[0]
    pre = _column(NODE_FEATURE_NAMES, "prefill_log10_flops")
    dec = _column(NODE_FEATURE_NAMES, "decode_log10_flops")
    prefill = np.power(10.0, graph.x[:, pre].double().numpy()) - 1
    decode = np.power(10.0, graph.x[:, dec].double().numpy()) - 1
    np.testing.assert_allclose(view.x[:, pre].double().numpy(), np.log10(1 + prefill + decode),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    assert (view.x[:, dec] == 0).all()
    total = _column(GLOBAL_FEATURE_NAMES, "decode_log10_total_flops")
    assert float(view.u[0, total]) == 0.0
    # Request and architecture features are kept.
    tokens = _column(GLOBAL_FEATURE_NAMES, "log2_generated_tokens")
    assert float(view.u[0, tokens]) == float(graph.u[0, tokens])
