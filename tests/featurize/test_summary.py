"""The per-point summary behind `llmco2 featurize --json`."""

from __future__ import annotations

import pytest

from featurize import summarize_point
from tests.conftest import PointFactory


def test_totals_are_sums_of_kernels(make_point: PointFactory) -> None:
    summary = summarize_point(make_point(tp=2, batch=2, prompt=300, gen=9))
    for phase in ("prefill", "decode"):
        kernels = summary[phase]["kernels"]
        for name in ("flops", "memory_bytes", "network_bytes", "roofline_time_s"):
            assert summary[phase]["total"][name] == pytest.approx(
                sum(k[name] for k in kernels.values())
            )
        for kernel in kernels.values():
            assert kernel["memory_bytes"] == pytest.approx(
                kernel["weight_bytes"]
                + kernel["act_read_bytes"]
                + kernel["act_write_bytes"]
                + kernel["kv_read_bytes"]
                + kernel["kv_write_bytes"]
            )
    assert summary["total"]["flops"] == pytest.approx(
        summary["prefill"]["total"]["flops"] + summary["decode"]["total"]["flops"]
    )
    assert summary["hardware"]["interconnect"] == "nvlink"
    assert summary["request"] == {"batch_size": 2, "prompt_tokens": 300, "generated_tokens": 9}
