"""``python -m llmco2``: the command line."""

from llmco2.cli.main import main

main()
