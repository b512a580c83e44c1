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


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("fp8", "not of the form"),
        ("w8a8", "not of the form"),
        ("w8a8kv8x", "not of the form"),
        ("w3a16kv16", "weight bit width must be one of"),
        ("w16a4kv16", "4-bit activations are not supported"),
    ],
)
def test_bad_labels_say_what_is_wrong(label: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        Precision.from_label(label)
