"""Storage fixtures live in tests/conftest.py (shared with the CLI tests)."""
