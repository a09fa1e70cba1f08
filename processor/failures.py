"""Work that failed for one subject (a restatement request, a site's longer windows), retried on its own.

Poisoned data of one site, or a bug its data triggers, must not stop the accountant for every other
site. The accountant asks ``backing_off`` before each subject, reports ``failed`` / ``worked`` after;
a failing subject is retried after a backoff that doubles up to ``max_s``, and ``on_problem`` tells
the supervisor (health shows it). Failures of the whole pass (the database away, fencing) are not the
subject's: ``isolated`` says which is which.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from peakwatch.errors import FencedError, StoreError
from peakwatch.supervise import describe_error

log = logging.getLogger(__name__)


def isolated(exc: Exception) -> bool:
    """Whether a failure belongs to the subject at hand (bad data, a bug) rather than to the whole
    pass: the database away (retryable) and fencing end the pass as before."""
    return not (isinstance(exc, StoreError) and (exc.retryable or isinstance(exc, FencedError)))


class Failing:
    """Subjects whose last attempt raised, each with its backoff."""

    def __init__(self, initial_s: float, max_s: float, on_problem: Callable[[str, str | None], None]) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._on_problem = on_problem
        self._failing: dict[str, tuple[float, float]] = {}
        """Subject -> (its backoff, monotonic time of the next try)."""

    def backing_off(self, subject: str) -> bool:
        failing = self._failing.get(subject)
        return failing is not None and time.monotonic() < failing[1]

    def failed(self, subject: str, exc: Exception) -> str:
        """Log ``exc`` with its traceback, schedule the next try; returns the error as recorded."""
        previous = self._failing.get(subject)
        delay_s = self._initial_s if previous is None else min(previous[0] * 2, self._max_s)
        self._failing[subject] = (delay_s, time.monotonic() + delay_s)
        error = describe_error(exc)
        log.error("accountant: %s failed (retrying in %.0f s): %s", subject, delay_s, error, exc_info=exc)
        self._on_problem(subject, error)
        return error

    def worked(self, subject: str) -> None:
        if self._failing.pop(subject, None) is not None:
            self._on_problem(subject, None)

    def forget(self, prefix: str, keep: set[str]) -> None:
        """Subjects starting with ``prefix`` and not in ``keep`` are over (a request done meanwhile by
        another processor, or split): no longer failing here."""
        for subject in [s for s in self._failing if s.startswith(prefix) and s not in keep]:
            self.worked(subject)
