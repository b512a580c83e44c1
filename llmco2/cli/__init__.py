"""The ``llmco2`` command line: one module per command group, gathered by :mod:`llmco2.cli.main`."""
