"""The step: one polled batch through the per-site state to a ``ProcessedBatch``. Pure CPU, no I/O.

``StepState`` is everything the live path keeps in memory for the sites this processor handles: the
meters' registers (``MeterTracker``), the sites' open windows (``SiteWindows``), the alert rules'
states (``RuleEngine``) and three frontiers per site (closed, committed, written). ``step`` reads as
its stages::

    apply the readings to the meters -> place their intervals in the windows (late ones aside)
    -> restatement requests (late data, glitches, out-of-order readings) -> flag the windows
    -> advance event time -> close what the watermark allows, judge it -> prune

A hand-over or a restart makes a fresh ``StepState`` (``processor/restore.py`` fills it from the
store); the writer (``processor/writer.py``) advances the committed and written frontiers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from peakwatch.bus import Polled
from peakwatch.config import Registry, Rule, Settings
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.models import (
    AlertChange,
    DeadLetter,
    KpiWindow,
    MeterEvent,
    MeterFlag,
    MeterInterval,
    ProcessedBatch,
    Restatement,
    RestatementReason,
)
from peakwatch.domain.spreading import interval_window_ms, window_start_ms
from processor.alerts import RuleEngine
from processor.meters import MeterTracker, StepOutput
from processor.metrics import ProcessorMetrics
from processor.windows import SiteWindows, site_inputs

MeterKey = tuple[str, str]
"""(site, meter)."""
Span = tuple[int, int, int]
"""(first ms, last ms, how many readings) of a meter's readings that need a re-derivation."""


class StepState:
    """The per-site state of the live path for the sites of ``view`` (all, or this processor's share)."""

    def __init__(
        self,
        view: Registry,
        rules: tuple[Rule, ...],
        settings: Settings,
        metrics: ProcessorMetrics,
        *,
        dedup_retention_ms: int,
        fence: dict[str, int] | None,
    ) -> None:
        self.view = view
        self.window_ms = settings.window_ms
        self.metrics = metrics
        self.fence = fence
        """The ownership epochs every write of this state carries (``None``: a local bus)."""
        self.tracker = MeterTracker(view, settings.window_ms, dedup_retention_ms=dedup_retention_ms)
        self.windows: dict[str, SiteWindows] = {
            site.id: SiteWindows(
                site,
                view.site_meters(site.id),
                site_inputs(view, view.factors, site),
                window_ms=settings.window_ms,
                allowed_lateness_ms=settings.allowed_lateness_ms,
                idle_close_ms=settings.idle_close_ms,
            )
            for site in view.sites.values()
        }
        self.rules = RuleEngine(view, rules)
        self.closed_end_ms: dict[str, int] = {}
        """Per site, end of the newest window closed by ``step`` (maybe not stored yet)."""
        self.committed_end_ms: dict[str, int] = {}
        """Per site, end of the newest 1-minute window whose write and every write before it committed:
        the accountant's frontier (it never touches a window still in memory or in flight)."""
        self.written_end_ms: dict[str, int] = {}
        """Per site, end of the newest KPI window written (``Processor.wait_for_window``)."""

    def use_factors(self, registry: Registry, library: FactorLibrary) -> None:
        """A factor revision: the windows closed from now on use ``library``."""
        for site_windows in self.windows.values():
            site_windows.inputs = site_inputs(registry, library, site_windows.site)

    def commit(self, closed: Mapping[str, int]) -> None:
        """A write committed, with every one before it: the windows it closed are the accountant's."""
        committed = self.committed_end_ms
        for site_id, end_ms in closed.items():
            if end_ms > committed.get(site_id, end_ms - 1):
                committed[site_id] = end_ms

    def written(self, kpi_windows: list[KpiWindow]) -> None:
        written = self.written_end_ms
        for window in kpi_windows:
            if window.end_ms > written.get(window.site_id, window.end_ms - 1):
                written[window.site_id] = window.end_ms

    def seen_ms(self, site_id: str, meter_id: str) -> int | None:
        slot = self.tracker.slot(site_id, meter_id)
        return None if slot is None else slot.seen_ms

    # ------------------------------------------------------------------ the step

    def step(self, polled: Polled | None, now_ms: int, *, backlog: bool = False) -> ProcessedBatch:
        """Everything one poll produces, plus the windows that close at ``now_ms``. No I/O.
        ``backlog``: the bus still holds readings, so no site counts as silent (no idle advance)."""
        started = time.perf_counter()
        out = StepOutput(now_ms)
        if polled is not None:
            for batch in polled.batches:
                self.tracker.apply_batch(batch, out)
        intervals, states = self.tracker.drain(out, now_ms)
        late = self._place(intervals)
        restatements = self._restatements(out, late)
        events = out.events()
        self._flag(events)
        for site_id, max_ts in out.site_max_ts.items():
            self.windows[site_id].observe(max_ts, now_ms)
        kpi_windows, alerts = self._close(now_ms, backlog)
        self.tracker.prune(now_ms)
        dead_letters: list[DeadLetter] = [] if polled is None else list(polled.dead_letters)
        dead_letters.extend(out.dead_letters)
        self._count(polled, out, started)
        return ProcessedBatch(
            fence=self.fence,
            readings=out.readings,
            meter_states=states,
            intervals=intervals,
            events=events,
            kpi_windows=kpi_windows,
            alerts=alerts,
            dead_letters=dead_letters,
            restatements=restatements,
        )

    def _place(self, intervals: list[MeterInterval]) -> dict[MeterKey, list[MeterInterval]]:
        """Add each interval to its site's open window; returns those whose window is closed (late)."""
        windows = self.windows
        late: dict[MeterKey, list[MeterInterval]] = {}
        for interval in intervals:
            site_windows = windows.get(interval.site_id)
            if site_windows is not None and not site_windows.add(
                interval.meter_id, interval.window_start_ms, interval.amount, interval.estimated
            ):
                late.setdefault((interval.site_id, interval.meter_id), []).append(interval)
        return late

    def _restatements(self, out: StepOutput, late: dict[MeterKey, list[MeterInterval]]) -> list[Restatement]:
        """The restatement requests of this step: late data, glitches taken back, out-of-order readings.

        A low glitch took back what its drop counted: one re-derivation of the meter over the span (and
        over its late windows of this step), so the stored windows are exactly the derivation's."""
        glitched: dict[MeterKey, Span] = {}
        for site_id, meter_id, t0, ts in out.glitches:
            first, last, count = glitched.get((site_id, meter_id), (t0, ts + 1, 0))
            glitched[(site_id, meter_id)] = (min(first, t0), max(last, ts + 1), count + 1)
        restatements = self._late_data(out, late, glitched)
        restatements.extend(_glitches(glitched))
        restatements.extend(_out_of_order(out.rederive))
        return restatements

    def _late_data(
        self, out: StepOutput, late: dict[MeterKey, list[MeterInterval]], glitched: dict[MeterKey, Span]
    ) -> list[Restatement]:
        """A ``late`` event per meter, and a late-data request unless its glitch re-derivation (widened
        to these windows) covers them."""
        restatements: list[Restatement] = []
        for (site_id, meter_id), intervals in late.items():
            first = min(interval.window_start_ms for interval in intervals)
            last = max(interval.window_start_ms for interval in intervals) + self.window_ms
            total = sum(interval.amount for interval in intervals)
            detail = f"{meter_id}: {total:.6g} for {len(intervals)} closed window(s) from {first}"
            out.event_for(
                site_id, meter_id, MeterFlag.LATE, first, detail + ": windows restated", None, total
            )
            span = glitched.get((site_id, meter_id))
            if span is not None:
                glitched[(site_id, meter_id)] = (min(span[0], first), max(span[1], last), span[2])
                continue
            restatements.append(
                Restatement(
                    site_id=site_id,
                    from_ms=first,
                    to_ms=last,
                    reason=RestatementReason.LATE_DATA,
                    detail=detail,
                )
            )
        return restatements

    def _flag(self, events: list[MeterEvent]) -> None:
        """Each meter event flags the window it concerns (late data flags nothing live: restated)."""
        size = self.window_ms
        for event in events:
            if event.kind is MeterFlag.LATE:
                continue
            site_windows = self.windows.get(event.site_id)
            if site_windows is not None:
                # a reading at ts closes the period ending at ts; a first reading opens the one after it
                start = (
                    window_start_ms(event.ts_ms, size)
                    if event.kind is MeterFlag.FIRST
                    else interval_window_ms(event.ts_ms, size)
                )
                site_windows.flag(start, event.kind.value)

    def _close(self, now_ms: int, backlog: bool) -> tuple[list[KpiWindow], list[AlertChange]]:
        """Close the windows the watermark (or a silence) allows and judge them; restated windows judged
        again go first, staleness last."""
        rules = self.rules
        kpi_windows: list[KpiWindow] = []
        alerts: list[AlertChange] = rules.take_rejudged()
        closed_end = self.closed_end_ms
        for site_windows in self.windows.values():
            site_windows.tick(now_ms, backlog=backlog)
            for window in site_windows.close_ready():
                kpi_windows.append(window)
                alerts.extend(rules.evaluate(window))
            watermark = site_windows.watermark_ms
            if watermark is not None:
                # every window ending by the watermark is closed, whether or not anything reported in it
                closed = watermark - watermark % self.window_ms
                site_id = site_windows.site.id
                if closed > closed_end.get(site_id, closed - 1):
                    closed_end[site_id] = closed
        alerts.extend(rules.evaluate_staleness(now_ms, self.seen_ms, backlog=backlog))
        return kpi_windows, alerts

    def _count(self, polled: Polled | None, out: StepOutput, started: float) -> None:
        metrics = self.metrics
        if polled is not None:
            metrics.readings_processed.inc(polled.reading_count)
        if out.duplicates:
            metrics.readings_duplicate.inc(out.duplicates)
        metrics.step_seconds.observe(time.perf_counter() - started)


def _glitches(glitched: dict[MeterKey, Span]) -> list[Restatement]:
    return [
        Restatement(
            site_id=site_id,
            meter_id=meter_id,
            from_ms=first,
            to_ms=last,
            reason=RestatementReason.GLITCH,
            detail=f"{meter_id}: {count} low reading(s) contradicted by the next: glitch taken "
            "back, re-derived",
        )
        for (site_id, meter_id), (first, last, count) in glitched.items()
    ]


def _out_of_order(rederive: list[tuple[str, str, int]]) -> list[Restatement]:
    """One request per meter and step, over the range of its out-of-order readings: a replay after a
    crash brings thousands of them, and each request costs a re-derivation."""
    spans: dict[MeterKey, Span] = {}
    for site_id, meter_id, ts in rederive:
        first, last, count = spans.get((site_id, meter_id), (ts, ts, 0))
        spans[(site_id, meter_id)] = (min(first, ts), max(last, ts), count + 1)
    return [
        Restatement(
            site_id=site_id,
            meter_id=meter_id,
            from_ms=first,
            to_ms=last + 1,
            reason=RestatementReason.OUT_OF_ORDER,
            detail=f"{meter_id}: {count} reading(s) from {first} to {last} older than the meter's "
            "newest: re-derived",
        )
        for (site_id, meter_id), (first, last, count) in spans.items()
    ]
