"""The request prior: the shipped Azure histogram and a user's request log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featurize.priors import RequestPrior, read_trace
from llmco2.errors import ConfigFileError


def test_a_request_log_becomes_a_histogram_of_its_rows(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("prompt_tokens,generated_tokens\n" + "300,40\n" * 5 + "2000,8\n" * 3)
    prior = RequestPrior.from_trace(log, "mine")
    assert prior.classes == ("mine",) and prior.counts["mine"].sum() == 8
    drawn = prior.sample(200, np.random.default_rng(0), batch_sizes=(1, 1))
    # Lengths are drawn inside the cells of the log's two kinds of request only.
    assert {r.prompt_tokens < 1000 for r in drawn} == {True, False}
    assert all((r.prompt_tokens < 1000) == (r.generated_tokens > 20) for r in drawn)


def test_a_request_log_with_a_bad_row_is_refused_with_its_line(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("ContextTokens,GeneratedTokens\n100,10\n0,5\n")
    with pytest.raises(ConfigFileError, match="line 3: lengths must be ≥ 1 token"):
        RequestPrior.from_trace(log)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a,b\n1,2\n", "needs columns ContextTokens and GeneratedTokens.*has a, b"),
        ("prompt_tokens,generated_tokens\n10,-3\n", "line 2: lengths must be ≥ 1 token"),
        ("prompt_tokens,generated_tokens\n10,5\n1.5,2\n", "line 3: lengths must be integers"),
        ("prompt_tokens,generated_tokens\n10,\n", "line 2: lengths must be integers"),
        ("prompt_tokens,generated_tokens\n", "has no requests"),
    ],
)
def test_bad_traces_are_one_clear_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=says) as caught:
        read_trace(path)
    assert "\n" not in str(caught.value)


def test_a_missing_or_binary_trace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read trace"):
        read_trace(tmp_path / "absent.csv")
    binary = tmp_path / "trace.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(ConfigFileError, match="not a text CSV"):
        read_trace(binary)
