"""Per-site event-time tumbling windows: open amounts, watermark, lateness, idle close.

Rules (docs/kpis.md, "Windows"):

* Windows are ``[s, s + window_ms)`` aligned to the epoch. A window exists once a meter contributed an
  amount to it (even 0.0: the meter covered it).
* Event time of a site = the largest reading timestamp seen; watermark = event time − allowed
  lateness. A window closes when ``watermark >= s + window_ms``. The watermark never goes back.
* Idle advance: when a site received nothing for ``idle_close_ms`` of wall-clock time, its event time
  advances by the wall time elapsed since the last arrival, and keeps following the clock while the
  site stays silent. So windows close although meters fell silent, and a meter clock that runs
  behind the processor's keeps its offset (the advance is relative to the last reading, not an
  absolute clock).
* An amount for a closed window is late: the caller records it (interval row + ``late`` event) and
  queues a restatement; the accountant (``processor/accountant.py``) recomputes the window from the
  ledger and keeps the old value as a revision. The window is not reopened here.
* A closed window's KPIs come from ``minute_components`` and ``window_kpis`` (peakwatch.domain.kpis)
  with the site's resolved factors; intervals integrated from power mark the window ``estimated``.
* Completeness of a closed window = meters that covered it ÷ all meters configured for the site.
  Every configured meter counts as expected, including water and production counters and meters that
  send power only: the number tells operators that configured data is missing (the "uploaded ÷
  expected" rule of the online energy-monitoring system), not whether the KPIs happen to need it.
* Flags of a closed window = the kinds of the meter events (reset, rollover, first, out_of_order,
  duplicate) whose reading falls in it.
"""

from __future__ import annotations

from collections.abc import Iterable

from peakwatch.domain.kpis import WindowInputs, minute_components, window_kpis
from peakwatch.domain.models import KpiWindow, Meter, Site
from peakwatch.store.rollups import site_inputs

__all__ = ["SiteWindows", "site_inputs"]  # site_inputs: the live path's and the accountant's, from the core


class SiteWindows:
    """The open windows of one site. Not thread-safe; the processor owns one per site."""

    __slots__ = (
        "_advanced_ms",
        "_arrival_ms",
        "_estimated",
        "_flags",
        "allowed_lateness_ms",
        "event_ms",
        "idle_close_ms",
        "inputs",
        "meters",
        "open",
        "site",
        "window_ms",
    )

    def __init__(
        self,
        site: Site,
        meters: Iterable[Meter],
        inputs: WindowInputs,
        *,
        window_ms: int,
        allowed_lateness_ms: int,
        idle_close_ms: int,
    ) -> None:
        self.site = site
        self.meters: tuple[Meter, ...] = tuple(meters)
        self.inputs = inputs
        """Site kind and resolved factors; replaced when a factor is revised."""
        self.window_ms = window_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_close_ms = idle_close_ms
        self.open: dict[int, dict[str, float]] = {}
        """Open windows: start -> {meter id: amount}; the keys are the meters that covered it."""
        self._flags: dict[int, set[str]] = {}
        self._estimated: dict[int, set[str]] = {}
        """Meters whose amount in an open window was estimated (integrated from power)."""
        self.event_ms: int | None = None
        """Site event time (``None`` until the first reading or restore)."""
        self._arrival_ms = 0
        """Wall-clock time of the last arrival (or restore)."""
        self._advanced_ms = 0
        """Wall-clock time up to which the idle advance has been applied."""

    @property
    def watermark_ms(self) -> int | None:
        return None if self.event_ms is None else self.event_ms - self.allowed_lateness_ms

    def is_closed(self, window_start_ms: int) -> bool:
        event_ms = self.event_ms
        return (
            event_ms is not None and window_start_ms + self.window_ms <= event_ms - self.allowed_lateness_ms
        )

    def add(self, meter_id: str, window_start_ms: int, amount: float, estimated: bool = False) -> bool:
        """Add a meter's amount to an open window (opening it). ``False``: the window is closed (late)."""
        if self.is_closed(window_start_ms):
            return False
        if estimated:
            self._estimated.setdefault(window_start_ms, set()).add(meter_id)
        window = self.open.get(window_start_ms)
        if window is None:
            self.open[window_start_ms] = {meter_id: amount}
        else:
            window[meter_id] = window.get(meter_id, 0.0) + amount
        return True

    def flag(self, window_start_ms: int, flag: str) -> None:
        """Mark a window (if it is still open) with an event kind."""
        if not self.is_closed(window_start_ms):
            self._flags.setdefault(window_start_ms, set()).add(flag)

    def observe(self, max_ts_ms: int, now_ms: int) -> None:
        """Readings up to ``max_ts_ms`` arrived at wall time ``now_ms``."""
        if self.event_ms is None or max_ts_ms > self.event_ms:
            self.event_ms = max_ts_ms
        self._arrival_ms = self._advanced_ms = now_ms

    def restore(self, event_ms: int, now_ms: int) -> None:
        """Event time a previous processor had reached (at least); the idle clock starts now."""
        if self.event_ms is None or event_ms > self.event_ms:
            self.event_ms = event_ms
        self._arrival_ms = self._advanced_ms = now_ms

    def tick(self, now_ms: int, *, backlog: bool = False) -> None:
        """Idle advance: after ``idle_close_ms`` of silence, event time follows the wall clock.

        ``backlog``: readings are still queued on the bus (a poll cut at its size limit, a store outage
        that stopped polling). The site is then not silent, only not yet read: its idle clock restarts,
        so its windows wait for the queued readings instead of closing without them."""
        if backlog:
            self._arrival_ms = self._advanced_ms = max(self._arrival_ms, now_ms)
            return
        if self.event_ms is None or now_ms - self._arrival_ms < self.idle_close_ms:
            return
        if now_ms > self._advanced_ms:
            self.event_ms += now_ms - self._advanced_ms
            self._advanced_ms = now_ms

    def close_ready(self) -> list[KpiWindow]:
        """Close (and forget) every window the watermark has passed, oldest first."""
        watermark = self.watermark_ms
        if watermark is None:
            return []
        size = self.window_ms
        closed: list[KpiWindow] = []
        if self.open:
            for start in sorted(s for s in self.open if s + size <= watermark):
                amounts = self.open.pop(start)
                components = minute_components(self.meters, amounts, estimated=self._estimated.pop(start, ()))
                closed.append(
                    window_kpis(
                        self.site.id,
                        start,
                        start + size,
                        components,
                        self.inputs,
                        flags=self._flags.pop(start, ()),
                    )
                )
        if self._flags:
            for start in [s for s in self._flags if s + size <= watermark]:
                del self._flags[start]  # flags of windows that never received an amount
        return closed
