"""The one exception root of peakwatch, and every exception it raises on purpose.

Tree::

    PeakwatchError
    ├── ConfigError        the YAML registry or the settings are invalid (fatal at start-up)
    ├── InstantError       a time that cannot be used (no offset, out of range); also a ValueError,
    │                      so a pydantic validator that raises it gives the caller a 422
    ├── StoreError         the database refused or is unreachable (``retryable`` says which)
    │   ├── FencedError    another processor owns the sites now: never retried
    │   └── ConflictError  the write collides with a stored row (HTTP 409): re-read, never retried
    ├── BusError           the bus cannot take or deliver a batch
    ├── MqttError          the broker cannot be used (``retryable``: unreachable yes, refused no)
    ├── DeliveryError      a notification did not reach its channel (``retryable``)
    ├── SitesFailedError   a restatement for every site failed for some of them (retried per site)
    ├── PushError          a Grafana push cannot go on (the sentence to show, no traceback)
    └── SimulationError    the simulator cannot publish (broker unreachable or not acknowledging)

Each is defined here, so the tree is read in one place and any room can catch a branch of it; the
room that raises it re-exports it where its callers already import it. Third-party exceptions are
translated at the edge with ``raise ... from exc``.
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


class InstantError(PeakwatchError, ValueError):
    """The text or value is not a usable instant; the message tells the caller how to fix it."""


class ConflictError(StoreError):
    """The write collides with a row already stored (same key), or would break a rule the stored rows
    keep (the last admin); retrying the same write cannot help, re-reading and deciding again can.
    The API answers 409."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class MqttError(PeakwatchError):
    """The broker cannot be used: unreachable within the start timeout, refused the connection
    (``retryable`` False: credentials, protocol) or the subscription."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class DeliveryError(PeakwatchError):
    """A message that did not reach its channel. ``detail`` is short and free of secrets (it is logged
    and shown in the API); ``retryable`` is False when trying again cannot help (bad token, HTTP 4xx
    other than 408/429, a refused address)."""

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


class SitesFailedError(PeakwatchError):
    """A request for every site failed for some of them (the others were restated)."""


class PushError(PeakwatchError):
    """A push that cannot go on, with the sentence to show (no traceback)."""


class SimulationError(PeakwatchError):
    """The simulation cannot publish: broker unreachable, refused, or no longer acknowledging."""
