"""Benchmarks: standalone scripts, run as ``.venv/bin/python bench/<name>.py`` (docs/operations.md)."""
