"""Predictors: the analytical model, the LLMCO2 GNN and its correction, baselines and carbon.

Torch and PyTorch Geometric are imported by the submodules that need them.
"""

from __future__ import annotations
