"""The one exception root of peakwatch.

Tree::

    PeakwatchError
    ├── ConfigError          the YAML registry or the settings are invalid (fatal at start-up)
    ├── StoreError           the database refused or is unreachable (retryable: ``retryable`` says so)
    └── BusError             the bus refused a batch (e.g. closed while shutting down)

Third-party exceptions are translated at the edge with ``raise ... from exc``.
"""

from __future__ import annotations


class PeakwatchError(Exception):
    """Root of every error peakwatch raises on purpose."""


class ConfigError(PeakwatchError):
    """Configuration that cannot be used; the message names the file and field."""


class StoreError(PeakwatchError):
    """The database failed; ``retryable`` tells the caller whether trying again may help, ``bad_input``
    that the database refused the values themselves (text with a NUL character, a number out of
    range), which an API reports as the client's error rather than an outage."""

    def __init__(self, message: str, *, retryable: bool, bad_input: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.bad_input = bad_input


class FencedError(StoreError):
    """A write for sites another processor has claimed since (``site_owners``): this process stalled
    past its turn and must not write what it computed; the new owner recomputes it from the bus."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class BusError(PeakwatchError):
    """The bus cannot take or deliver a batch."""
