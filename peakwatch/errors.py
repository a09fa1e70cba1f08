"""The one exception root of peakwatch.

Tree::

    PeakwatchError
    ├── ConfigError          the YAML registry or the settings are invalid (fatal at start-up)
    ├── StoreError           the database refused or is unreachable (retryable: ``retryable`` says so)
    └── BusError             the bus refused a batch (e.g. closed while shutting down)

Third-party exceptions are translated at the edge with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence


class PeakwatchError(Exception):
    """Root of every error peakwatch raises on purpose."""


class ConfigError(PeakwatchError):
    """Configuration that cannot be used. ``problems`` is every problem found, each as ``where: what``
    (``site dc-1, meter it-1: role 'itt' is not one of: …``); ``source`` names the file they are in.
    A file's errors read ``<file>: <n> error(s):`` and then one problem per line."""

    def __init__(self, message: str = "", *, source: str | None = None, problems: Sequence[str] = ()) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems) or (message,)
        if source is None:
            text = "\n".join(self.problems)
        else:
            count = len(self.problems)
            lines = "".join(f"\n  {problem}" for problem in self.problems)
            text = f"{source}: {count} error{'' if count == 1 else 's'}:{lines}"
        super().__init__(text)


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
