"""The PyG dataset of an export: ``ExportedGraphs("path/to/export")`` and the graphs are loaded.

Each graph is the featurizer's kernel graph of one measured request (``x``, ``edge_index``,
``u``, ``kernel_type``) with labels ``y = [[prefill_J, decode_J, total_J]]`` (NaN where a phase
was not measured) and the ``point_id`` it came from, to join with ``points.parquet``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch_geometric.data import InMemoryDataset

GRAPHS_FILE = "graphs.pt"


class ExportedGraphs(InMemoryDataset):  # type: ignore[misc]
    """An exported campaign as an in-memory PyG dataset.

    Args:
        root: The export folder (holding ``graphs.pt`` and ``manifest.json``).
        transform: Optional PyG transform applied on access.
    """

    def __init__(self, root: str | Path, transform: Callable[[Any], Any] | None = None) -> None:
        self._folder = Path(root)
        if not (self._folder / GRAPHS_FILE).is_file():
            raise FileNotFoundError(f"{self._folder / GRAPHS_FILE} not found: not a pyg export")
        super().__init__(str(self._folder), transform=transform, log=False)
        self.load(str(self._folder / GRAPHS_FILE))

    @property
    def raw_file_names(self) -> list[str]:
        """No raw files: the export is already processed."""
        return []

    @property
    def processed_dir(self) -> str:
        """The export folder itself."""
        return str(self._folder)

    @property
    def processed_file_names(self) -> list[str]:
        """The one file the export wrote."""
        return [GRAPHS_FILE]

    def download(self) -> None:
        """Nothing to download."""

    def process(self) -> None:
        """Nothing to process: written by ``llmco2 export --format pyg``."""
