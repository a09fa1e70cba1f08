"""The accountant: longer windows from the minutes, and restatements with their revision history.

The live path (``processor/service.py``) closes 1-minute windows. The accountant, a task beside it in the
same process, does everything that needs the store's view of history:

* **Materialise** the 15-minute, hourly, daily, monthly and rolling 12-month windows of each site (in
  its time zone) as soon as the minutes they cover are *committed*: each is the sum of its child
  windows' components (15 min <- minutes, hour <- quarter hours, day <- hours, month <- days, 12 months
  <- months), so every larger window is an exact sum of the smaller ones and its KPIs are computed
  from those sums (``peakwatch.domain.kpis.window_kpis``). The monthly maximum 15-minute demand is the
  largest of the month's quarter hours.
* **Restate** on request (table ``restatement_requests``): late data and out-of-order readings queued
  by the live path in the same transaction as the data, and meter replacements, factor revisions, green
  certificates and value added queued by the API. A meter-level request first re-derives that meter's
  ledger (``meter_intervals``) from its stored readings (``peakwatch.domain.derivation.derive_intervals``),
  so the result depends only on which readings exist, never on their arrival order. Then the minutes
  are rebuilt from the ledger (or, for factor and monthly-input changes, recomputed from their own
  components), and every longer window containing them is recomputed. A window whose values change
  gets ``revision + 1``; ``kpi_revisions`` keeps what it said before and why.

Processors sharing the sites (Kafka bus): each accountant sees only its processor's sites (``owns``).
It leaves other sites' requests pending for their owner, splits a request for every site into one per
site, and its transactions carry the processor's ownership epochs (``fence``), like the live writes.

Ordering with the live path: the accountant only touches windows at or before the site's *committed*
frontier (the end of the newest 1-minute window whose write, and every write before it, has
committed), so it never races a window still held in memory or in flight. A request reaching past the
frontier waits (it stays pending) until the frontier passes it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

from peakwatch.config import Registry
from peakwatch.domain.derivation import derive_intervals
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.kpis import WindowInputs, minute_components, window_kpis
from peakwatch.domain.models import KpiWindow, MeterReplacement, RestatementReason, Site
from peakwatch.domain.periods import (
    MINUTE_MS,
    ROLLUP_PERIODS,
    Period,
    windows_ending_between,
    windows_overlapping,
)
from peakwatch.domain.spreading import interval_window_ms
from peakwatch.errors import SitesFailedError
from peakwatch.retry import retry
from peakwatch.supervise import MAX_BACKOFF_S, describe_error
from processor.causes import NOT_FLAGS, REREAD, Flags, attribute
from processor.failures import Failing, isolated
from processor.ports import AccountantStore, AccountingTransaction
from processor.windows import site_inputs

if TYPE_CHECKING:
    from peakwatch.store.records import RestatementRequest
    from peakwatch.store.restate import Attribution

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
CONTEXT_READINGS = 5
"""Readings before a re-derived range that the derivation starts from, so that a glitch right before
the range is recognised as in the live path instead of becoming the baseline."""

COMPUTED = "computed"
"""Reason recorded when a window is saved for the first time (no revision is made)."""

_DATA_REASONS = frozenset(
    {
        RestatementReason.LATE_DATA,
        RestatementReason.OUT_OF_ORDER,
        RestatementReason.METER_REPLACEMENT,
        RestatementReason.MANUAL,
        RestatementReason.GLITCH,
    }
)
"""Reasons that change the ledger: the minutes are rebuilt from ``meter_intervals``."""
_MONTHLY_REASONS = frozenset({RestatementReason.GREEN_INSTRUMENTS, RestatementReason.VALUE_ADDED})
"""Reasons that only change monthly inputs: only months and 12-month windows are recomputed."""


_T = TypeVar("_T")
ATTEMPTS = 3


def _retried(exc: Exception, _delay_s: float) -> None:
    log.info("accountant transaction failed, retrying: %s", exc)


async def _retrying(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run one transaction's work again when it failed transiently: a deadlock with a concurrent writer
    (the live path, or TimescaleDB creating a chunk or compressing one) rolls everything back, so
    running it again is safe. A request that still fails stays pending for the next pass."""
    return await retry(work, initial_s=0.05, max_s=0.2, attempts=ATTEMPTS, on_retry=_retried)


def _request_subject(request: RestatementRequest) -> str:
    return f"restatement request {request.id} ({request.site_id or 'every site'}, {request.reason})"


def _floor_minute(ms: int) -> int:
    return ms - ms % MINUTE_MS


def _ceil_minute(ms: int) -> int:
    return -((-ms) // MINUTE_MS) * MINUTE_MS


class Accountant:
    """Materialises and restates windows. One per processor; ``run_once`` is called by its loop."""

    def __init__(
        self,
        store: AccountantStore,
        registry: Registry,
        *,
        committed: Callable[[], Mapping[str, int]],
        closed: Callable[[], Mapping[str, int]],
        on_factors: Callable[[FactorLibrary], None] = lambda _: None,
        on_replacements: Callable[[Iterable[MeterReplacement]], None] = lambda _: None,
        owns: Callable[[str], bool] | None = None,
        fence: Mapping[str, int] | None = None,
        on_restated: Callable[[str, int, int], Awaitable[None]] | None = None,
        on_problem: Callable[[str, str | None], None] = lambda _subject, _error: None,
        retry_initial_s: float = 1.0,
        retry_max_s: float = MAX_BACKOFF_S,
    ) -> None:
        """``committed()``: per site, end of the newest committed 1-minute window (with all before it).
        ``closed()``: per site, end of the newest window the live path has closed (maybe in flight).
        ``on_factors`` gets the library after a factor revision (the live path's windows use it from
        then on); ``on_replacements`` gets replacement records (the live meter tracker applies them).
        ``owns`` (shared bus): whether this processor owns a site (``registry`` then holds only those);
        ``fence``: the epochs its transactions must still hold (``peakwatch.store.writes.check_fence``);
        ``on_restated(site, from, to)``: after a restatement committed, the minutes it covered (the alert
        rules re-judge them); ``on_problem(subject, error)``: a request or a site's windows failed
        (``error``) and are retried with backoff from ``retry_initial_s`` to ``retry_max_s``, or work again
        (``None``)."""
        self._store = store
        self._registry = registry
        self._committed = committed
        self._closed = closed
        self._on_factors = on_factors
        self._on_replacements = on_replacements
        self._owns = owns
        self._fence = fence
        self._restated_hook = on_restated
        self._failing = Failing(retry_initial_s, retry_max_s, on_problem)
        self._restated_sites: dict[int, set[str]] = {}
        """Request for several sites -> those restated while another failed (not done again)."""
        self._halted = False
        self.library = registry.factors
        self._done: dict[tuple[str, str], int] = {}
        """(site, period) -> end of the newest materialised window."""
        self._factor_wait: dict[int, dict[str, int]] = {}
        """Factor-revision request id -> the closed frontier when the new factors were swapped in: the
        request waits until those windows are committed (they were computed with the old factors)."""

    # ------------------------------------------------------------------ setup

    async def start(self) -> None:
        """Load what a restarted processor needs: materialisation frontiers, factor versions added
        through the API, meter replacements."""
        versions = await self._store.inputs.load_factor_versions()
        if versions:
            self.library = self._registry.factors.with_overrides(tuple(versions))
            self._on_factors(self.library)
        # a factor overridden in the registry YAML since the last start restates like an API revision
        for queued in await self._store.inputs.sync_factors(list(self.library)):
            log.info("factor changed since the last start, restating: %s", queued.detail)
        self._on_replacements(await self._store.inputs.list_replacements(None, None))
        async with self._store.accounting("loading accounting frontiers") as tx:
            self._done = await tx.frontiers()  # periods never materialised start lazily

    def inputs(self, site: Site, period: Period, **extra: float | None) -> WindowInputs:
        return site_inputs(self._registry, self.library, site, period, **extra)

    # ------------------------------------------------------------------ one pass

    def halt(self) -> None:
        """End the current pass after the request or site at hand, for good (a hand-over is waiting
        for it; the next owner's accountant takes over)."""
        self._halted = True

    async def run_once(self) -> int:
        """Handle pending requests, then materialise what the committed frontier allows. Returns the
        number of windows written or restated (0: nothing to do)."""
        work = 0
        pending = await self._store.inputs.pending_restatements(10_000)
        self._failing.forget("restatement request ", {_request_subject(r) for r in pending})
        # every pending request, oldest first: one that waits for the frontier (or failed) must not hide
        # the others
        for request in pending:
            if self._halted:
                return work
            if self._owns is not None:
                if request.site_id is None:  # every site: each processor restates its own
                    work += await self._store.inputs.split_restatement(request.id)
                    continue
                if not self._owns(request.site_id):
                    continue  # another processor's site: it stays pending for its owner
            subject = _request_subject(request)
            if self._failing.backing_off(subject):
                continue
            try:
                done = await _retrying(functools.partial(self._handle, request))
            except Exception as exc:
                if not isolated(exc):
                    raise
                error = self._failing.failed(subject, exc)
                await self._store.inputs.mark_restatement_failed(request.id, error)
                continue
            self._failing.worked(subject)
            if done is None:
                continue  # waits for the frontier
            work += done
            await self._store.inputs.mark_restatement_done([request.id])
        committed = dict(self._committed())
        for site_id, frontier in committed.items():
            if self._halted:
                return work
            site = self._registry.sites.get(site_id)
            subject = f"longer windows of site {site_id}"
            if site is None or self._failing.backing_off(subject):
                continue
            try:
                work += await _retrying(functools.partial(self._materialise, site, frontier))
            except Exception as exc:
                if not isolated(exc):
                    raise
                self._failing.failed(subject, exc)
                continue
            self._failing.worked(subject)
        return work

    async def _materialise(self, site: Site, frontier: int) -> int:
        written = 0
        for period in ROLLUP_PERIODS:
            key = (site.id, period.value)
            after = self._done.get(key)
            if after is None:  # a site's first windows: start from its first minute
                async with self._store.accounting("finding a site's first window") as tx:
                    first = await tx.first_window_start(site.id)
                if first is None:
                    continue
                after = self._done[key] = first
            windows = windows_ending_between(period, after, frontier, site.timezone)
            if not windows:
                continue
            async with self._store.accounting(f"materialising {period.value} windows") as tx:
                await self._check_fence(tx, site.id)
                computed = [await self._period_window(tx, site, period, s, e) for s, e in windows]
                await tx.save_windows(computed, COMPUTED, "")
            self._done[key] = windows[-1][1]
            written += len(windows)
        return written

    async def _period_window(
        self, tx: AccountingTransaction, site: Site, period: Period, start: int, end: int
    ) -> KpiWindow:
        return await tx.period_window(self._registry, self.library, site, period, start, end)

    # ------------------------------------------------------------------ requests

    async def _handle(self, request: RestatementRequest) -> int | None:
        """Restate what ``request`` asks for; ``None`` when it must wait for the frontier."""
        reason = RestatementReason(request.reason)
        if reason is RestatementReason.FACTOR_REVISION:
            return await self._factor_revision(request)
        if reason is RestatementReason.METER_REPLACEMENT:
            self._on_replacements(
                await self._store.inputs.list_replacements(request.site_id, request.meter_id)
            )
        ids = [request.site_id] if request.site_id is not None else list(self._registry.sites)
        sites = [site for site_id in ids if (site := self._registry.sites.get(site_id)) is not None]
        return await self._each_site(sites, request, reason, wait=True)

    async def _each_site(
        self, sites: list[Site], request: RestatementRequest, reason: RestatementReason, *, wait: bool
    ) -> int | None:
        """Restate ``sites`` one by one; ``None`` when one must wait for the frontier (``wait``; else it
        counts as nothing). A site whose restatement raises does not stop the others: the request fails
        afterwards, naming it, and is retried for the sites not restated yet (a factor revision restates
        a site's whole history: the healthy sites are not done again at every retry)."""
        total = 0
        failed: list[tuple[str, Exception]] = []
        restated = self._restated_sites.get(request.id, set())
        for site in sites:
            if site.id in restated:
                continue
            try:
                done = await self._restate_site(site, request, reason)
            except Exception as exc:
                if not isolated(exc) or len(sites) == 1:
                    raise
                log.error("accountant: restating %s failed", site.id, exc_info=exc)
                failed.append((site.id, exc))
                continue
            if done is None and wait:
                return None
            total += done or 0
            if len(sites) > 1:
                self._restated_sites.setdefault(request.id, set()).add(site.id)
        if failed:
            raise SitesFailedError(
                "; ".join(f"site {site_id}: {describe_error(exc)}" for site_id, exc in failed)
            )
        self._restated_sites.pop(request.id, None)
        return total

    async def _factor_revision(self, request: RestatementRequest) -> int | None:
        wait = self._factor_wait.get(request.id)
        if wait is None:
            versions = await self._store.inputs.load_factor_versions()
            self.library = self._registry.factors.with_overrides(tuple(versions))
            self._on_factors(self.library)
            # windows already closed were computed with the old factors: restate once they are stored
            self._factor_wait[request.id] = wait = dict(self._closed())
        committed = self._committed()
        if any(committed.get(s, 0) < end for s, end in wait.items()):
            return None
        del self._factor_wait[request.id]
        if request.site_id is None:
            targets = list(self._registry.sites.values())
        else:  # one site's share of a request for every site (``split_restatement``)
            one = self._registry.sites.get(request.site_id)
            targets = [] if one is None else [one]
        return await self._each_site(targets, request, RestatementReason.FACTOR_REVISION, wait=False)

    async def _restate_site(
        self, site: Site, request: RestatementRequest, reason: RestatementReason
    ) -> int | None:
        frontier = self._committed().get(site.id)
        if frontier is None:
            return None  # no window of the site is committed yet: wait for the first one
        a = _floor_minute(request.from_ms)
        b = _ceil_minute(request.to_ms)
        if reason in _DATA_REASONS and request.meter_id is None and b > frontier:
            return None  # the late data's windows are closed but not all stored yet
        b = min(b, frontier)  # later windows will be computed with the new inputs anyway
        detail = request.detail or reason.value
        changed = 0
        data = reason in _DATA_REASONS
        async with self._store.accounting(f"restating {site.id} ({reason.value})") as tx:
            await self._check_fence(tx, site.id)
            why = functools.partial(attribute, request, await tx.later_requests(site.id, request.id))
            flags: Flags | None = None
            if request.meter_id is not None:
                rederived = await self._rederive(
                    tx, site, request.meter_id, request.from_ms, request.to_ms, frontier
                )
                if rederived is None:
                    return None
                span, flags = rederived
                a, b = min(a, span[0]), max(min(b, frontier), span[1])
            if b <= a:
                return 0
            if data:
                changed += await self._rebuild_minutes(tx, site, a, b, why, flags)
            elif reason is RestatementReason.FACTOR_REVISION:
                inputs = self.inputs(site, Period.MINUTE)
                first = await tx.first_window_start(site.id)
                chunk = max(a, first if first is not None else b)
                while chunk < b:  # a day of minutes at a time: a site's history does not fit in memory
                    until = min(chunk + DAY_MS, b)
                    minutes = await tx.load_windows(site.id, Period.MINUTE.value, chunk, until)
                    recomputed = [
                        window_kpis(site.id, w.start_ms, w.end_ms, w.components, inputs, flags=w.flags)
                        for w in minutes
                    ]
                    changed += await tx.save_windows(recomputed, reason.value, detail, causes=why)
                    chunk = until
            periods = (Period.MONTH, Period.YEAR) if reason in _MONTHLY_REASONS else ROLLUP_PERIODS
            for period in periods:
                # windows already stored (later ones are materialised from the restated minutes); changed
                # data also fills the range's missing windows up to the materialised ones (late data from
                # before the site's first window, a rebuild after an upgrade)
                windows = await tx.windows_overlapping(site.id, period.value, a, b)
                done = self._done.get((site.id, period.value))
                if data and done is not None:
                    stored = set(windows)
                    windows += [
                        w
                        for w in windows_overlapping(period, a, b, site.timezone)
                        if w[1] <= done and w not in stored
                    ]
                    windows.sort()
                recomputed = [await self._period_window(tx, site, period, s, e) for s, e in windows]
                changed += await tx.save_windows(
                    recomputed, reason.value, detail, causes=why, exact_flags=data
                )
        if changed:
            log.info("restated %d windows of %s (%s): %s", changed, site.id, reason.value, detail)
            await self._on_restated(site.id, a, b)
        return changed

    async def _on_restated(self, site_id: str, a: int, b: int) -> None:
        if self._restated_hook is not None:
            await self._restated_hook(site_id, a, b)

    async def _check_fence(self, tx: AccountingTransaction, site_id: str) -> None:
        if self._fence is not None:
            await tx.check_fence({site_id: self._fence.get(site_id, 0)})

    async def _rederive(
        self, tx: AccountingTransaction, site: Site, meter_id: str, from_ms: int, to_ms: int, frontier: int
    ) -> tuple[tuple[int, int], Flags] | None:
        """Re-derive one meter's ledger around ``[from_ms, to_ms)`` from its stored readings. Returns the
        minutes it covers and their flags as the derivation sees them, or ``None`` when they reach past
        the committed frontier (try again later)."""
        meter = self._registry.meter(site.id, meter_id)
        if meter is None:
            return (from_ms, from_ms), Flags()
        replacements = await self._store.inputs.list_replacements(site.id, meter_id)
        # serialise with the live path: its write upserts this meter's state in the same transaction as
        # the meter's new intervals, so none of them can land between our read and our rewrite
        await tx.lock_meter(site.id, meter_id)
        lo, hi = await tx.reading_bounds(site.id, meter_id, from_ms, to_ms)
        start, end = _floor_minute(lo), _ceil_minute(hi)
        if end > frontier:
            return None
        readings = await tx.readings_around(site.id, meter_id, start, end, context=CONTEXT_READINGS)
        derived = derive_intervals(meter, readings, replacements, MINUTE_MS, from_ms=start, to_ms=end)
        await tx.replace_intervals(site.id, meter_id, start, end, derived.amounts, derived.estimated)
        flags = Flags()
        for event in derived.events:
            if start <= event.ts_ms < end and event.kind.value not in NOT_FLAGS:
                window = interval_window_ms(event.ts_ms, MINUTE_MS)
                flags.added.setdefault(window, set()).add(event.kind.value)
        # what the live path flagged for this meter and the derivation no longer sees (a drop that a
        # replacement explains is no reset) is withdrawn, unless another meter flagged it too
        stored = await tx.meter_events(site.id, start, end)
        others = {(interval_window_ms(ts, MINUTE_MS), k) for m, ts, k in stored if m != meter_id}
        for m, ts, kind in stored:
            w = interval_window_ms(ts, MINUTE_MS)
            mine = m == meter_id and kind in REREAD and kind not in flags.added.get(w, ())
            if mine and (w, kind) not in others:
                flags.withdrawn.setdefault(w, set()).add(kind)
        return (start, end), flags

    async def _rebuild_minutes(
        self, tx: AccountingTransaction, site: Site, a: int, b: int, why: Attribution, flags: Flags | None
    ) -> int:
        """Recompute the 1-minute windows in ``[a, b)`` from the ledger (``flags``: a re-derived meter's,
        which replace what the live path flagged for it)."""
        meters = self._registry.site_meters(site.id)
        ledger = await tx.ledger(site.id, a, b)
        old = {w.start_ms: w for w in await tx.load_windows(site.id, Period.MINUTE.value, a, b)}
        inputs = self.inputs(site, Period.MINUTE)
        recomputed: list[KpiWindow] = []
        for start in sorted(ledger.keys() | old.keys()):
            minute = ledger.get(start)
            components = (
                minute_components(meters, minute.amounts, estimated=minute.estimated)
                if minute is not None
                else minute_components(meters, {})
            )
            kept = set(old[start].flags) if start in old else set()
            if flags is not None:
                kept = (kept - flags.withdrawn.get(start, set())) | flags.added.get(start, set())
            recomputed.append(
                window_kpis(site.id, start, start + MINUTE_MS, components, inputs, flags=tuple(sorted(kept)))
            )
        return await tx.save_windows(recomputed, "", "", causes=why, exact_flags=True)
