"""Which entries a staleness scan must judge, so that its cost follows the alerts, not the fleet.

A scan once a second over every watched meter was the one processor cost that grew with the fleet
rather than with the readings (issue 21: at 100k meters it took half the processor's CPU). Yet between
two scans a quiet entry (no open alert) can only change by falling silent, and ``staleness`` says
exactly when that happens: ``silent_ms`` after its basis (the later of its last report and the start of
watching). A report only moves the basis later, so the earliest such moment over the quiet entries,
taken at a full scan, is a bound before which none of them can change. Until then a scan judges the
entries with an open alert only (they resolve on a report, which no bound predicts); at or after it,
every entry is judged again, and the bound recomputed. The alert changes are those of a full scan at
every call, in the same order.

The bound holds while a meter's last-seen time never goes back. It is the wall time of the step that
last drained the meter, so it only goes back with the clock (or with a restored value from a processor
whose clock ran ahead): whenever a call's clock is behind the newest time seen so far, the next scan is
a full one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from peakwatch.domain.models import Meter
from peakwatch.domain.rules import StalenessRule

SeenMs = Callable[[str, str], int | None]
"""``seen_ms(site, meter)``: wall time the meter last reported (``None``: not since watching began)."""

NO_DUE = sys.maxsize
"""No quiet entry: nothing can fall silent before the next open alert is judged."""


class Watched:
    """One (staleness rule, meter) pair, or (rule, site) for ``per: site`` with the meters it covers."""

    __slots__ = ("fingerprint", "meter", "meters", "rule", "site_id")

    def __init__(
        self,
        rule: StalenessRule,
        site_id: str,
        meter: Meter | None,
        meters: tuple[Meter, ...],
        fingerprint: str,
    ) -> None:
        self.rule = rule
        self.site_id = site_id
        self.meter = meter
        self.meters = meters
        self.fingerprint = fingerprint
        """Computed once: the scan used to format it for every meter every second."""

    def seen(self, seen_ms: SeenMs) -> int | None:
        """Last report of the meter, or of the site's newest-reporting covered meter."""
        if self.meter is not None:
            return seen_ms(self.site_id, self.meter.id)
        return max((t for m in self.meters if (t := seen_ms(self.site_id, m.id)) is not None), default=None)


class SilenceSchedule:
    """The bound and the entries with an open alert, from the last scan. A fresh one (rules configured
    or restored) asks for a full scan."""

    __slots__ = ("_due_ms", "_high_ms", "hot")

    def __init__(self) -> None:
        self._due_ms: int | None = None
        """Earliest moment a quiet entry may fall silent (``None``: unknown, scan everything)."""
        self._high_ms: int | None = None
        """Newest clock or last-seen time met: a clock behind it may have moved a last-seen time back."""
        self.hot: list[int] = []
        """Positions (in the watched list, ascending) of the entries with an open alert."""

    def invalidate(self) -> None:
        self._due_ms = None

    def clock(self, now_ms: int) -> None:
        """Every call, before anything else: a clock going back invalidates the bound."""
        high = self._high_ms
        if high is not None and now_ms < high:
            self._due_ms = None
        if high is None or now_ms > high:
            self._high_ms = now_ms

    def entries(self, now_ms: int, count: int) -> tuple[bool, Sequence[int]]:
        """Whether this scan is a full one, and the positions it judges."""
        if self._due_ms is None or now_ms >= self._due_ms:
            return True, range(count)
        return False, self.hot

    def scanned(self, full: bool, hot: list[int], due_ms: int, high_ms: int | None) -> None:
        """After a scan: ``due_ms`` over the quiet entries it judged, ``high_ms`` the newest last-seen."""
        if full or self._due_ms is None:
            self._due_ms = due_ms
        else:  # the quiet entries it did not judge keep their bound
            self._due_ms = min(self._due_ms, due_ms)
        self.hot = hot
        if high_ms is not None and (self._high_ms is None or high_ms > self._high_ms):
            self._high_ms = high_ms
