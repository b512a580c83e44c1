"""``python -m orchestrator``: the same CLI as the ``llmco2`` console script."""

from __future__ import annotations

from orchestrator.cli import main

if __name__ == "__main__":
    main()
