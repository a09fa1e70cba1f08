"""Services peakwatch runs itself when no external one is configured."""

from peakwatch.embedded.postgres import EmbeddedPostgres, timescaledb_installed

__all__ = ["EmbeddedPostgres", "timescaledb_installed"]
