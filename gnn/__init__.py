"""GNN: the LLMCO2 predictor, baselines, metrics and carbon conversion (issue 5)."""

from __future__ import annotations
