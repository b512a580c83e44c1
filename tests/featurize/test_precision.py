"""Precision labels: every supported combination reads back from its label."""

from __future__ import annotations

import itertools

import pytest

from featurize import Precision
from llmco2.errors import InvalidRequestError


def test_every_label_reads_back_as_its_precision() -> None:
    for weight, activation, kv in itertools.product((16, 8, 4), (16, 8), (16, 8, 4)):
        precision = Precision(weight, activation, kv)
        assert Precision.from_label(precision.label) == precision
    assert Precision.from_label(" W8A8KV16 ") == Precision(8, 8, 16)
    mxfp4 = Precision.from_label("w16a16kv8e4")
    assert mxfp4 == Precision(16, 16, 8, 4) and mxfp4.label == "w16a16kv8e4"


def test_four_bit_experts_are_mxfp4_with_their_block_scales() -> None:
    experts = Precision(expert_weight_bits=4)
    assert experts.expert_weight_bytes == pytest.approx((4 + 8 / 32) / 8)  # 32 values, 1 scale
    assert experts.weight_bytes == 2.0  # the rest stays bf16
    assert Precision(8).expert_weight_bytes == 1.0  # as the other weights when not given
    # Experts as wide as the other weights are no different precision.
    assert Precision(8, 8, 8, 8) == Precision(8, 8, 8) and Precision(8, 8, 8, 8).label == "w8a8kv8"


def test_stored_keys_of_precisions_without_expert_bits_are_unchanged() -> None:
    # The keys of points stored before experts had their own width hash these three fields.
    assert Precision(8, 8, 16).identity() == {
        "weight_bits": 8,
        "activation_bits": 8,
        "kv_bits": 16,
    }
    assert Precision(expert_weight_bits=4).identity()["expert_weight_bits"] == 4


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("fp8", "not of the form"),
        ("w8a8", "not of the form"),
        ("w8a8kv8x", "not of the form"),
        ("w3a16kv16", "weight bit width must be one of"),
        ("w16a4kv16", "4-bit activations are not supported"),
        ("w8a8kv8e16", "at most the other weights' 8"),
        ("w16a16kv16e3", "expert weight bit width"),
    ],
)
def test_bad_labels_say_what_is_wrong(label: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        Precision.from_label(label)
