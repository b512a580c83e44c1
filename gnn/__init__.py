"""GNN: the LLMCO2 predictor, its training and metrics (baselines, HPO and carbon follow).

Torch and PyTorch Geometric are imported by the submodules that need them.
"""

from __future__ import annotations
