"""Request prior ℐ: prompt and output lengths as production traffic has them.

By default the joint histogram derived from the Azure LLM inference traces 2023 (code completion
and conversation; CC BY 4.0, Patel et al., ISCA 2024) that ships in
``featurize/data/azure_request_histogram.json``; a user's own request log (CSV with
``ContextTokens``/``GeneratedTokens`` or ``prompt_tokens``/``generated_tokens`` columns) can
replace it. Sampling draws a histogram cell by its count, then a length uniformly in log space
inside the cell, so the marginals and the prompt/output correlation of the traffic are kept.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from featurize.request import InferenceRequest
from llmco2.errors import ConfigFileError, InvalidRequestError


@dataclass(frozen=True)
class RequestPrior:
    """A joint distribution of (prompt, generated) lengths per traffic class.

    Attributes:
        prompt_edges: Bin edges of prompt tokens.
        generated_edges: Bin edges of generated tokens.
        counts: Per class, the 2-D histogram (prompt bins × generated bins).
    """

    prompt_edges: tuple[int, ...]
    generated_edges: tuple[int, ...]
    counts: dict[str, np.ndarray]

    @classmethod
    def azure(cls) -> RequestPrior:
        """The shipped Azure 2023 histogram (classes ``code`` and ``conversation``)."""
        return _azure()

    @classmethod
    def from_trace(cls, path: Path, name: str = "trace") -> RequestPrior:
        """A prior from a user's request log.

        Raises:
            ConfigFileError: What :func:`read_trace` refuses.
        """
        template = cls.azure()
        lengths = np.array(read_trace(path))
        prompt, gen = lengths[:, 0], lengths[:, 1]
        p_edges, g_edges = template.prompt_edges, template.generated_edges
        counts, _, _ = np.histogram2d(
            np.clip(prompt, p_edges[0], p_edges[-1] - 1),
            np.clip(gen, g_edges[0], g_edges[-1] - 1),
            bins=[list(p_edges), list(g_edges)],
        )
        return cls(p_edges, g_edges, {name: counts})

    @property
    def classes(self) -> tuple[str, ...]:
        """Traffic classes."""
        return tuple(self.counts)

    def sample(
        self,
        count: int,
        rng: np.random.Generator,
        *,
        mix: dict[str, float] | None = None,
        batch_sizes: tuple[int, int] = (1, 2),
        max_context: int | None = None,
    ) -> list[InferenceRequest]:
        """Draw ``count`` requests.

        Args:
            count: How many.
            rng: Random generator (seeded by the caller).
            mix: Weight per class (default: equal).
            batch_sizes: Inclusive range of batch sizes, drawn uniformly.
            max_context: Redraw requests whose prompt + output exceed this.

        Raises:
            InvalidRequestError: Unknown class, bad weights or batch range.
        """
        weights = mix if mix is not None else {name: 1.0 for name in self.counts}
        unknown = set(weights) - set(self.counts)
        if unknown:
            raise InvalidRequestError(
                f"unknown traffic class {sorted(unknown)} (known: {', '.join(self.counts)})"
            )
        total = sum(weights.values())
        if total <= 0 or any(w < 0 for w in weights.values()):
            raise InvalidRequestError("traffic mix weights must be ≥ 0 with a positive sum")
        low, high = batch_sizes
        if not 1 <= low <= high:
            raise InvalidRequestError(f"batch range must satisfy 1 ≤ low ≤ high, got {batch_sizes}")
        names = list(weights)
        probabilities = np.array([weights[n] for n in names]) / total
        p_edges = np.array(self.prompt_edges, dtype=np.float64)
        g_edges = np.array(self.generated_edges, dtype=np.float64)
        requests: list[InferenceRequest] = []
        while len(requests) < count:
            name = names[rng.choice(len(names), p=probabilities)]
            grid = self.counts[name]
            flat = grid.ravel() / grid.sum()
            cell = rng.choice(flat.size, p=flat)
            i, j = divmod(int(cell), grid.shape[1])
            prompt = _log_uniform(rng, p_edges[i], p_edges[i + 1])
            gen = _log_uniform(rng, g_edges[j], g_edges[j + 1])
            if max_context is not None and prompt + gen > max_context:
                continue
            requests.append(InferenceRequest(int(rng.integers(low, high + 1)), prompt, gen))
        return requests


def read_trace(path: Path) -> list[tuple[int, int]]:
    """A user's request log: ``(prompt, generated)`` tokens of each row.

    The CSV has the Azure trace's columns ``ContextTokens`` and ``GeneratedTokens`` (or
    ``prompt_tokens`` and ``generated_tokens``); other columns are ignored.

    Raises:
        ConfigFileError: Unreadable file, missing column, a non-integer, negative or zero length
            (the row is named), or no rows.
    """
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            columns = next(
                (
                    pair
                    for pair in (
                        ("ContextTokens", "GeneratedTokens"),
                        ("prompt_tokens", "generated_tokens"),
                    )
                    if set(pair) <= set(header)
                ),
                None,
            )
            if columns is None:
                raise ConfigFileError(
                    f"trace {str(path)!r} needs columns ContextTokens and GeneratedTokens "
                    f"(or prompt_tokens and generated_tokens), has {', '.join(header) or 'none'}"
                )
            rows: list[tuple[int, int]] = []
            for line, row in enumerate(reader, start=2):
                try:
                    prompt, generated = (int(row[c] or "") for c in columns)
                except ValueError:
                    raise ConfigFileError(
                        f"trace {str(path)!r} line {line}: lengths must be integers"
                    ) from None
                if prompt < 1 or generated < 1:
                    raise ConfigFileError(
                        f"trace {str(path)!r} line {line}: lengths must be ≥ 1 token, "
                        f"got {prompt} and {generated}"
                    )
                rows.append((prompt, generated))
    except OSError as exc:
        raise ConfigFileError(f"cannot read trace {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigFileError(f"trace {str(path)!r} is not a text CSV file") from None
    if not rows:
        raise ConfigFileError(f"trace {str(path)!r} has no requests")
    return rows


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> int:
    value = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return max(int(low), min(int(high) - 1, round(value))) if high - low > 1 else int(low)


@cache
def _azure() -> RequestPrior:
    raw = json.loads(
        resources.files("featurize").joinpath("data/azure_request_histogram.json").read_text()
    )
    return RequestPrior(
        tuple(raw["prompt_edges"]),
        tuple(raw["generated_edges"]),
        {name: np.array(t["counts"], dtype=np.float64) for name, t in raw["traces"].items()},
    )
