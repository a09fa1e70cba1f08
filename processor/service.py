"""The processor service: bus -> meters -> windows -> KPIs -> rules -> store, one transaction per step.

One step::

    polled = await bus.poll()              # up to max_poll_readings, waits up to poll_timeout_s
    batch  = step(polled, now)             # pure CPU: MeterTracker, SiteWindows, RuleEngine
    await store.write(batch)               # one transaction; retried while the error is retryable
    await bus.commit(polled)               # only after the write: at-least-once, idempotent store

``run`` pipelines the steps: while step N's transaction is in flight, step N+1 is polled, computed and
its transaction started on another pooled connection, so this process and several database backends
work at the same time (on a 2-core machine that is most of the throughput). At most
``writes_in_flight`` (3) steps' output is in flight; the next step is polled once the oldest committed.

Each step carries an id (``ProcessedBatch.write_id``) that its transaction records: a write retried
after an ambiguous failure (the COMMIT reached the server, its reply was lost) is applied once.

Two transactions may overlap because what they write commutes: readings are insert-if-absent,
meter states keep the newest timestamp, interval amounts add up, events and dead letters append, and
a KPI window is closed once. What does not commute is kept in order: a step carrying alert changes
starts its transaction only after the previous one committed, and bus commits happen strictly in
order (commit N+1 waits for write N). If write N fails for good while N+1 was stored, the processor
stops and N+1's poll is never committed.

Back-pressure: while a retryable ``StoreError`` is being retried, the processor does not poll (beyond
the one step already computed), so the bus fills up and the collector's ``publish`` blocks. Only one
step is computed at a time (a lock), so ``flush`` can be called while ``run`` is going.

Shared bus (Kafka; ``Bus.shared``): processors on several machines split the sites, and this one
processes only those the bus gives it (``Ownership``). ``released`` (the group is changing) waits for
the writes in flight, whose bus commits then follow, and forgets every site; ``acquired`` names the
sites owned from now on, and before its next step the processor claims them in the store
(``site_owners``: the epochs its writes then carry, so a stalled former owner cannot write any more)
and restores them exactly as after a restart (below). A hand-over is a restart of the sites that
moved, from what the store holds, and what the bus delivers again is applied once.

Restart (``start``): meter baselines come from ``load_meter_states``; each site's event time is set
to at least the end of its latest stored KPI window plus the allowed lateness (so no written window
is closed again) and at least its newest meter reading; the amounts of windows that can still be open
(starting at or after the smallest restored watermark minus one window) are reloaded with
``load_intervals`` so the window spanning the restart is completed, not restarted; rule states come
from ``load_open_alerts``. Window flags (reset, rollover ...) of windows open at the restart are not
restored: they stay in the meter events table.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry

from peakwatch.bus import Bus, Polled
from peakwatch.clock import now_ms
from peakwatch.config import Registry, Rule, Settings, parse_rule
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.models import (
    AlertChange,
    DeadLetter,
    KpiWindow,
    MeterEvent,
    MeterFlag,
    MeterInterval,
    MeterState,
    ProcessedBatch,
    Reading,
    Restatement,
    RestatementReason,
)
from peakwatch.domain.periods import Period
from peakwatch.domain.spreading import interval_window_ms, window_start_ms
from peakwatch.errors import BusError, ConfigError, FencedError, StoreError
from peakwatch.store import restate
from peakwatch.supervise import Supervisor
from processor.accountant import Accountant
from processor.alerts import RuleEngine
from processor.meters import DEFAULT_DEDUP_RETENTION_MS, MeterTracker, StepOutput
from processor.metrics import ProcessorMetrics
from processor.windows import SiteWindows, site_inputs

if TYPE_CHECKING:  # the store package imports asyncpg; the processor only needs the record's shape
    from peakwatch.store import Store
    from peakwatch.store.records import AlertRecord

log = logging.getLogger(__name__)

ACCOUNTANT_TASK = "processor-accountant"
RULES_TASK = "processor-rules"
"""Names of the processor's background loops (``peakwatch.supervise``: metrics and health)."""

BEFORE_BASELINE = 3
"""Stored readings before a meter's baseline a restart looks at to find the drop the baseline may be
(readings without the meter's main quantity, such as a power sample on an energy meter, are skipped)."""


class ProcessorStore(Protocol):
    """The part of ``peakwatch.store.Store`` the processor uses (tests pass an in-memory fake)."""

    async def write(self, batch: ProcessedBatch) -> None: ...

    async def load_meter_states(self) -> list[MeterState]: ...

    async def load_readings_before_baselines(self, count: int) -> list[Reading]: ...

    async def load_intervals(self, since_ms: int) -> list[MeterInterval]: ...

    async def load_open_alerts(self) -> list[AlertRecord]: ...

    async def latest_kpis(self, site_id: str) -> KpiWindow | None: ...

    async def claim_sites(self, sites: list[str], owner: str) -> dict[str, int]: ...


async def _settle(task: asyncio.Task[Any], *, cancel: bool) -> None:
    """Wait for ``task`` (cancelled first if ``cancel``), swallowing its outcome: the caller is already
    failing or being cancelled, and a write in flight is better finished than abandoned."""
    if cancel:
        task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: asyncio would log it as never retrieved


class Processor:
    """Runs the processing loop. Create one per process; ``run`` until ``stop``."""

    def __init__(
        self,
        bus: Bus,
        store: ProcessorStore,
        registry: Registry,
        settings: Settings,
        metrics: ProcessorMetrics | None = None,
        *,
        clock_ms: Callable[[], int] = now_ms,
        on_written: Callable[[ProcessedBatch], None] | None = None,
        poll_timeout_s: float = 0.5,
        max_poll_readings: int = 50_000,
        writes_in_flight: int = 3,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        dedup_retention_ms: int = DEFAULT_DEDUP_RETENTION_MS,
        accountant_interval_s: float = 1.0,
        rules_interval_s: float = 2.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._bus = bus
        self._store = store
        self._registry = registry
        self._settings = settings
        self.metrics = metrics or ProcessorMetrics(CollectorRegistry())
        self.supervisor = supervisor or Supervisor()
        """Runs the accountant and the rule reload: a crash is logged, counted, shown and restarted."""
        self._clock_ms = clock_ms
        self._on_written = on_written
        self._poll_timeout_s = poll_timeout_s
        self._max_poll_readings = max_poll_readings
        if writes_in_flight < 1:
            raise ValueError("writes_in_flight must be >= 1")
        self._writes_in_flight = writes_in_flight
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self.window_ms = settings.window_ms
        self._dedup_retention_ms = dedup_retention_ms
        self._rule_list: tuple[Rule, ...] = (*registry.rules, *registry.staleness_rules)
        """The rules running now: the registry's, then those made through the API (``_load_rules``)."""
        self.accountant: Accountant | None = None
        """Set by ``attach_accountant``; runs beside ``run`` (longer windows, restatements)."""
        self._accountant_store: Store | None = None
        self._accounting = asyncio.Lock()
        """Held by an accountant pass; a hand-over waits for it."""
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._owns: Callable[[str], bool] | None = None
        """Shared bus: whether this processor owns a site now (``None``: a local bus, every site)."""
        self._pending_owns: Callable[[str], bool] | None = None
        """Sites the bus gave this processor that it has not restored yet (``_take_ownership``)."""
        self._ownership_lock = asyncio.Lock()
        self._releases = 0
        """Counts ``released`` calls: a restore that a release overtook gives up (its claim is stale)."""
        self._fence: dict[str, int] | None = None
        self._fatal: BaseException | None = None
        """A failure of a side task (the accountant fenced off) that ends ``run``."""
        self.committed_end_ms: dict[str, int] = {}
        """Per site, end of the newest 1-minute window whose write and every write before it committed:
        the accountant's frontier (it never touches a window still in memory or in flight)."""
        self.closed_end_ms: dict[str, int] = {}
        """Per site, end of the newest window closed by ``step`` (maybe not stored yet)."""
        self._written_end_ms: dict[str, int] = {}
        if bus.shared:
            self._owns = _nothing
            self._fence = {}
            bus.watch_ownership(self)
            self._build(registry.only(()))
        else:
            self._build(registry)
        self._lock = asyncio.Lock()
        self._tail: asyncio.Task[bool] | None = None
        """The last write enqueued; the next one waits for it (``_enqueue_write``)."""
        self._stop = asyncio.Event()
        self._started = False
        self._unjudged: list[tuple[str, int, int]] = []
        """Restated ``(site, from, to)`` not re-judged yet (``_rejudge``)."""
        self._judged: list[tuple[str, int, int]] = []
        """Re-judged; their alert changes wait in the rule engine for the next step (``_rejudge``)."""
        self._written = asyncio.Condition()
        self._accountant_interval_s = accountant_interval_s
        self._accountant_wake = asyncio.Event()
        self._rules_store: Store | None = None
        self._rules_version: str | None = None
        self._rules_interval_s = rules_interval_s
        self.write_failing_since_ms: int | None = None
        """Wall-clock time of the first failed attempt of the write being retried (``None``: writes
        succeed): health reports the processor degraded meanwhile."""

    def _build(self, view: Registry) -> None:
        """Fresh per-site state for the sites of ``view`` (all of them, or this processor's share);
        ``_restore`` then fills it from the store."""
        settings = self._settings
        self._view = view
        self.tracker = MeterTracker(view, settings.window_ms, dedup_retention_ms=self._dedup_retention_ms)
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
        self.rules = RuleEngine(view, self._rule_list)
        self.committed_end_ms = {}
        self.closed_end_ms = {}
        self._written_end_ms = {}
        if self._accountant_store is not None:
            self.supervisor.clear_problems(ACCOUNTANT_TASK)  # the old accountant's failures go with it
            self.accountant = Accountant(
                self._accountant_store,
                view,
                committed=lambda: self.committed_end_ms,
                closed=lambda: self.closed_end_ms,
                on_factors=self._use_factors,
                on_replacements=self.tracker.add_replacements,
                owns=self._owns,
                fence=self._fence,
                on_restated=self._rejudge,
                on_problem=functools.partial(self.supervisor.problem, ACCOUNTANT_TASK),
                retry_initial_s=self.supervisor.initial_s,
                retry_max_s=self.supervisor.max_s,
            )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Restore state from the store (idempotent; ``run`` calls it). On a shared bus there is
        nothing to restore yet: the sites come with the bus's first assignment."""
        async with self._lock:
            if self._started:
                return
            if self._rules_store is not None:
                await self._load_rules()  # before restoring: alerts of API rules are not orphans
            if self._owns is None:
                await self._restore()
            self._started = True

    # ------------------------------------------------------------------ ownership (shared bus)

    async def released(self) -> None:
        """The bus takes every site away (a rebalance begins): let the writes in flight commit, with
        their bus offsets, and forget the sites. Never waits for ``_lock``: the run loop may hold it in
        a poll that the bus only ends once this returns."""
        self._releases += 1
        self._pending_owns = None
        if self.accountant is not None:
            self.accountant.halt()  # a long restatement pass must not hold the hand-over up
        async with self._ownership_lock:
            self._pending_owns = None
            tail = self._tail
            if tail is not None and not tail.done():
                await asyncio.wait({tail})
            async with self._accounting:
                self._owns, self._fence = _nothing, {}
                self._build(self._registry.only(()))
            log.info("sites released for the bus's new assignment")

    async def acquired(self, owns: Callable[[str], bool]) -> None:
        """The sites for which ``owns`` is true are this processor's now; restored before the next
        step (the bus is mid-rebalance: no database work here)."""
        self._pending_owns = owns

    def _refuse_foreign(self, polled: Polled) -> None:
        """A record of a site this processor does not own would become an ``unknown_site`` dead letter
        and be committed, i.e. lost for its owner: stop instead (nothing of this poll is committed)."""
        assert self._owns is not None
        foreign = sorted({b.site_id for b in polled.batches if not self._owns(b.site_id)})
        if foreign:
            raise BusError(
                f"the bus delivered readings of site(s) {', '.join(foreign[:5])} that this processor does "
                "not own (were the topic's partitions changed?); nothing of them is committed"
            )

    async def _take_ownership(self) -> None:
        """Claim and restore the sites last acquired. Retries while the database is away: the records
        of those sites wait in the bus meanwhile."""
        delay_s = self._retry_initial_s
        async with self._ownership_lock:
            owns = self._pending_owns
            if owns is None:
                return
            releases = self._releases
            sites = sorted(s for s in self._registry.sites if owns(s))
            while True:
                if self._releases != releases:
                    return  # the group moved on while the database was away: this claim would be stale
                try:
                    fence = await self._store.claim_sites(sites, self._owner) if sites else {}
                    async with self._accounting:
                        self._owns, self._fence = owns, fence
                        self._build(self._registry.only(sites))
                        await self._restore()
                    break
                except StoreError as exc:
                    if not exc.retryable or self._stop.is_set():
                        raise
                    log.warning(
                        "restoring the sites given by the bus failed (retrying in %.1f s): %s", delay_s, exc
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay_s)
                    delay_s = min(delay_s * 2, self._retry_max_s)
            self._pending_owns = None
            log.info("this processor owns %d site(s): %s", len(sites), ", ".join(sites[:20]))

    async def run(self) -> None:
        """Process until ``stop``; then close what the watermark allows and write it. Step N+1 is
        polled and computed while step N is being written (see the module docstring)."""
        await self.start()
        in_flight: collections.deque[asyncio.Task[bool]] = collections.deque()
        accountant = (
            None
            if self.accountant is None
            else asyncio.create_task(
                self.supervisor.run(ACCOUNTANT_TASK, self._run_accountant, stop=self._stop),
                name=ACCOUNTANT_TASK,
            )
        )
        rules = (
            None
            if self._rules_store is None
            else asyncio.create_task(
                self.supervisor.run(RULES_TASK, self._watch_rules, stop=self._stop), name=RULES_TASK
            )
        )
        try:
            while not self._stop.is_set():
                async with self._lock:
                    polled = await self._bus.poll(self._max_poll_readings, self._poll_timeout_s)
                    if self._pending_owns is not None:  # records of newly owned sites: restore first
                        await self._take_ownership()
                    if self._owns is not None and polled:
                        self._refuse_foreign(polled)
                    batch = self.step(polled, self._clock_ms(), backlog=self._bus.lag > 0)
                    after = in_flight[-1] if in_flight else None
                    in_flight.append(self._enqueue_write(batch, polled, after=after))
                while len(in_flight) >= self._writes_in_flight or (in_flight and in_flight[0].done()):
                    await in_flight.popleft()  # the oldest write committed before another step is polled
            while in_flight:
                await in_flight.popleft()
        except BaseException as exc:
            self._stop.set()  # a write being retried gives up instead of holding the failure back
            for task in reversed(in_flight):  # newest first: none commits the bus past an older one
                await _settle(task, cancel=isinstance(exc, asyncio.CancelledError))
            if accountant is not None:
                await _settle(accountant, cancel=True)
            if rules is not None:
                await _settle(rules, cancel=True)
            raise
        if rules is not None:
            await _settle(rules, cancel=True)
        if accountant is not None:
            self._accountant_wake.set()
            await _settle(accountant, cancel=False)
        if self._fatal is not None:
            raise self._fatal
        await self.flush()
        async with self._accounting:
            await self.account()

    def stop(self) -> None:
        """Ask ``run`` to finish after the current step (and a write being retried to give up)."""
        self._stop.set()

    def attach_accountant(self, store: Store) -> Accountant:
        """Give the processor an accountant over ``store`` (the composition root does; unit tests with
        an in-memory store run without one). A hand-over makes a new one for the sites owned then."""
        self._accountant_store = store
        self._build(self._view)
        assert self.accountant is not None
        return self.accountant

    async def _rejudge(self, site_id: str, from_ms: int, to_ms: int) -> None:
        """The accountant restated the site's windows in ``[from_ms, to_ms)``: the alert rules judge them
        again (``_judge_restated``). Never raises: the restatement is committed and its request done, so
        a failure here must not fail (and retry) the request, whose second pass restates nothing and
        would re-judge nothing; the range is kept instead until the re-judgement's alert changes are
        stored.

        A range goes ``_unjudged`` (a failed re-judgement stays there; the accountant's next pass tries
        again) -> ``_judged`` (its changes wait in the rule engine) -> the write of the next step, which
        carries them (``_enqueue_write``) -> gone once that write committed, back to ``_unjudged`` if it
        failed (re-judged against the rule state then held)."""
        self._unjudged.append((site_id, from_ms, to_ms))
        await self._judge_restated()

    async def _judge_restated(self) -> None:
        """Re-judge the restated ranges not judged yet, oldest first; a failing one stays for later."""
        todo, self._unjudged = self._unjudged, []
        for i, (site_id, from_ms, to_ms) in enumerate(todo):
            try:
                await self._judge_range(site_id, from_ms, to_ms)
            except StoreError as exc:
                log.warning("re-judging restated windows of %s failed (retried later): %s", site_id, exc)
                self._unjudged[:0] = todo[i:]
                return
            self._judged.append((site_id, from_ms, to_ms))

    async def _judge_range(self, site_id: str, from_ms: int, to_ms: int) -> None:
        """The alert rules judge the stored windows their look-back needs again (``RuleEngine.rejudge``;
        changes go out at the next step)."""
        span = self.rules.rejudge_span(site_id, from_ms, to_ms)
        if span is None or self._accountant_store is None:
            return
        stored_to = min(span[1], self.committed_end_ms.get(site_id, span[0]))
        async with self._accountant_store.transaction("reading restated windows") as conn:
            stored = await restate.load_windows(conn, site_id, Period.MINUTE.value, span[0], stored_to)
        self.rules.rejudge(site_id, from_ms, to_ms, stored, stored_to)

    def attach_rules(self, store: Store) -> None:
        """Also run the alert rules made through the API (``store.rules``), reloaded when they change."""
        self._rules_store = store

    async def _load_rules(self) -> None:
        """Reload the rules if the stored ones changed. A stored rule that no longer parses (an older
        peakwatch wrote it) is skipped with a warning rather than stopping every other rule."""
        assert self._rules_store is not None
        version = await self._rules_store.rules.version()
        if version == self._rules_version:
            return
        stored: list[Rule] = []
        in_file = {r.name for r in self._registry.rules} | {r.name for r in self._registry.staleness_rules}
        for r in await self._rules_store.rules.list():
            if r.name in in_file:
                log.warning(
                    "alert rule %s made through the API is skipped: the registry file has one", r.name
                )
                continue
            try:
                stored.append(parse_rule(r.spec, "stored rule"))
            except ConfigError as exc:
                log.warning("alert rule %s is skipped: %s", r.name, exc)
        self._rule_list = (*self._registry.rules, *self._registry.staleness_rules, *stored)
        self.rules.reload(self._rule_list)
        if self._rules_version is not None:
            log.info(
                "alert rules reloaded: %d from the registry, %d made through the API",
                len(self._registry.rules) + len(self._registry.staleness_rules),
                len(stored),
            )
        self._rules_version = version

    async def _watch_rules(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._rules_interval_s)
            try:
                async with self._lock:  # never between a step's poll and its evaluation
                    await self._load_rules()
            except StoreError as exc:
                log.warning("reading the alert rules failed (retrying): %s", exc)
                continue
            self.supervisor.ok(RULES_TASK)

    def _use_factors(self, library: FactorLibrary) -> None:
        for sw in self.windows.values():
            sw.inputs = site_inputs(self._registry, library, sw.site)

    async def account(self) -> int:
        """One accountant pass now (tests, ``flush``); 0 without an accountant."""
        if self.accountant is None:
            return 0
        await self._judge_restated()
        return await self.accountant.run_once()

    async def _run_accountant(self) -> None:
        """The accountant's loop: a pass every interval, and at once when a write queued restatements.
        Anything else it raises crashes the loop, which ``run`` supervises (logged, counted, shown in
        health, restarted with backoff); one site's failing work is isolated inside the pass."""
        assert self.accountant is not None
        while not self._stop.is_set():
            try:
                async with self._accounting:  # the accountant of the sites owned now
                    await self._judge_restated()
                    await self.accountant.run_once()
                self.supervisor.ok(ACCOUNTANT_TASK)
            except FencedError as exc:
                log.error("accountant stopped: %s", exc)
                self._fatal = exc
                self.stop()
                return
            except StoreError as exc:
                log.warning("accountant pass failed (retrying): %s", exc)
            self._accountant_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._accountant_wake.wait(), self._accountant_interval_s)

    async def run_once(self, timeout_s: float | None = None) -> ProcessedBatch | None:
        """One step: poll, process, write, commit. Returns what was written (``None``: nothing)."""
        if not self._started:
            await self.start()
        async with self._lock:
            polled = await self._bus.poll(
                self._max_poll_readings, self._poll_timeout_s if timeout_s is None else timeout_s
            )
            batch = self.step(polled, self._clock_ms(), backlog=self._bus.lag > 0)
            return batch if await self._enqueue_write(batch, polled) else None

    async def flush(self) -> ProcessedBatch | None:
        """Close whatever the watermark (with idle advance at the current clock) allows and write it,
        without polling."""
        if not self._started:
            await self.start()
        async with self._lock:
            batch = self.step(None, self._clock_ms(), backlog=self._bus.lag > 0)
            return batch if await self._enqueue_write(batch, None) else None

    async def wait_for_window(self, site_id: str, end_ms: int) -> None:
        """Return once a KPI window of ``site_id`` ending at or after ``end_ms`` has been written.
        Wrap in ``asyncio.wait_for`` for a deadline."""
        async with self._written:
            await self._written.wait_for(lambda: self._written_end_ms.get(site_id, end_ms - 1) >= end_ms)

    # ------------------------------------------------------------------ the step (pure CPU)

    def step(self, polled: Polled | None, now_ms: int, *, backlog: bool = False) -> ProcessedBatch:
        """Everything one poll produces, plus the windows that close at ``now_ms``. No I/O.
        ``backlog``: the bus still holds readings, so no site counts as silent (no idle advance)."""
        started = time.perf_counter()
        out = StepOutput(now_ms)
        dead_letters: list[DeadLetter] = []
        if polled is not None:
            dead_letters.extend(polled.dead_letters)
            for b in polled.batches:
                self.tracker.apply_batch(b, out)
        intervals, states = self.tracker.drain(out, now_ms)
        windows = self.windows
        late: dict[tuple[str, str], list[MeterInterval]] = {}
        for iv in intervals:
            sw = windows.get(iv.site_id)
            if sw is not None and not sw.add(iv.meter_id, iv.window_start_ms, iv.amount, iv.estimated):
                late.setdefault((iv.site_id, iv.meter_id), []).append(iv)
        restatements: list[Restatement] = []
        # A low glitch took back what its drop counted: one re-derivation of the meter over the span
        # (and over its late windows of this step), so the stored windows are exactly the derivation's.
        glitched: dict[tuple[str, str], tuple[int, int, int]] = {}
        for site_id, meter_id, t0, ts in out.glitches:
            first, last, count = glitched.get((site_id, meter_id), (t0, ts + 1, 0))
            glitched[(site_id, meter_id)] = (min(first, t0), max(last, ts + 1), count + 1)
        for (site_id, meter_id), ivs in late.items():
            first = min(iv.window_start_ms for iv in ivs)
            last = max(iv.window_start_ms for iv in ivs) + self.window_ms
            total = sum(iv.amount for iv in ivs)
            detail = f"{meter_id}: {total:.6g} for {len(ivs)} closed window(s) from {first}"
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
        for (site_id, meter_id), (first, last, count) in glitched.items():
            restatements.append(
                Restatement(
                    site_id=site_id,
                    meter_id=meter_id,
                    from_ms=first,
                    to_ms=last,
                    reason=RestatementReason.GLITCH,
                    detail=f"{meter_id}: {count} low reading(s) contradicted by the next: glitch taken "
                    "back, re-derived",
                )
            )
        # One request per meter and step, over the range of its out-of-order readings: a replay after a
        # crash brings thousands of them, and each request costs a re-derivation.
        spans: dict[tuple[str, str], tuple[int, int, int]] = {}
        for site_id, meter_id, ts in out.rederive:
            first, last, count = spans.get((site_id, meter_id), (ts, ts, 0))
            spans[(site_id, meter_id)] = (min(first, ts), max(last, ts), count + 1)
        for (site_id, meter_id), (first, last, count) in spans.items():
            restatements.append(
                Restatement(
                    site_id=site_id,
                    meter_id=meter_id,
                    from_ms=first,
                    to_ms=last + 1,
                    reason=RestatementReason.OUT_OF_ORDER,
                    detail=f"{meter_id}: {count} reading(s) from {first} to {last} older than the meter's "
                    "newest: re-derived",
                )
            )
        events: list[MeterEvent] = out.events()
        for ev in events:
            if ev.kind is not MeterFlag.LATE:
                sw = windows.get(ev.site_id)
                if sw is not None:
                    # a reading at ts closes the period ending at ts; a first reading opens the one after it
                    start = (
                        window_start_ms(ev.ts_ms, self.window_ms)
                        if ev.kind is MeterFlag.FIRST
                        else interval_window_ms(ev.ts_ms, self.window_ms)
                    )
                    sw.flag(start, ev.kind.value)
        for site_id, max_ts in out.site_max_ts.items():
            windows[site_id].observe(max_ts, now_ms)
        kpi_windows: list[KpiWindow] = []
        alerts: list[AlertChange] = self.rules.take_rejudged()  # restated windows judged again: first
        for sw in windows.values():
            sw.tick(now_ms, backlog=backlog)
            for w in sw.close_ready():
                kpi_windows.append(w)
                alerts.extend(self.rules.evaluate(w))
            watermark = sw.watermark_ms
            if watermark is not None:
                # every window ending by the watermark is closed, whether or not anything reported in it
                closed = watermark - watermark % self.window_ms
                if closed > self.closed_end_ms.get(sw.site.id, closed - 1):
                    self.closed_end_ms[sw.site.id] = closed
        alerts.extend(self.rules.evaluate_staleness(now_ms, self._seen_ms, backlog=backlog))
        self.tracker.prune(now_ms)
        dead_letters.extend(out.dead_letters)
        m = self.metrics
        if polled is not None:
            m.readings_processed.inc(polled.reading_count)
        if out.duplicates:
            m.readings_duplicate.inc(out.duplicates)
        m.step_seconds.observe(time.perf_counter() - started)
        return ProcessedBatch(
            fence=self._fence,
            readings=out.readings,
            meter_states=states,
            intervals=intervals,
            events=events,
            kpi_windows=kpi_windows,
            alerts=alerts,
            dead_letters=dead_letters,
            restatements=restatements,
        )

    # ------------------------------------------------------------------ store

    def _enqueue_write(
        self, batch: ProcessedBatch, polled: Polled | None, after: asyncio.Task[bool] | None = None
    ) -> asyncio.Task[bool]:
        """Write ``batch`` and then commit ``polled`` once the write before it ended: the write still
        in flight if there is one, else ``after``. The task returns whether anything was written; it
        raises what the write raised, or a StoreError without writing if the write it waited for
        failed (``run`` passes its previous write as ``after``: a step computed on top of a step that
        was not stored is not stored either)."""
        tail = self._tail
        previous = tail if tail is not None and not tail.done() else after
        closed = dict(self.closed_end_ms)  # what this step (and every one before it) closed
        # the re-judged ranges whose alert changes ``step`` just took into ``batch`` (no await between)
        judged, self._judged = self._judged, []
        task = asyncio.create_task(
            self._write_in_turn(previous, batch, polled, closed, judged), name="processor-write"
        )
        self._tail = task
        return task

    async def _write_in_turn(
        self,
        previous: asyncio.Task[bool] | None,
        batch: ProcessedBatch,
        polled: Polled | None,
        closed: dict[str, int],
        judged: list[tuple[str, int, int]],
    ) -> bool:
        try:
            return await self._write_after(previous, batch, polled, closed)
        except BaseException:
            self._unjudged[:0] = judged  # its re-judged alert changes were not stored: judge them again
            raise

    async def _write_after(
        self,
        previous: asyncio.Task[bool] | None,
        batch: ProcessedBatch,
        polled: Polled | None,
        closed: dict[str, int],
    ) -> bool:
        if previous is not None and batch.alerts:
            await _after(previous)  # alert transitions must reach the store in order
        _raise_if_failed(previous)
        written = await self._write(batch)
        if previous is not None:
            await _after(previous)  # bus commits strictly in order
            _raise_if_failed(previous)
        # this write and every one before it are stored: the accountant may use what they closed (it
        # looks every accountant_interval_s; late data wakes it at once)
        for site_id, end_ms in closed.items():
            if end_ms > self.committed_end_ms.get(site_id, end_ms - 1):
                self.committed_end_ms[site_id] = end_ms
        if batch.restatements:
            self._accountant_wake.set()
        if polled:
            await self._bus.commit(polled)
        return written

    async def _write(self, batch: ProcessedBatch) -> bool:
        if not (
            batch.readings
            or batch.meter_states
            or batch.intervals
            or batch.events
            or batch.kpi_windows
            or batch.alerts
            or batch.dead_letters
            or batch.restatements
        ):
            return False
        if batch.write_id is None:  # one id for every attempt: the store applies the step once
            batch.write_id = uuid.uuid4().hex
        delay_s = self._retry_initial_s
        m = self.metrics
        while True:
            t0 = time.perf_counter()
            try:
                await self._store.write(batch)
            except StoreError as exc:
                m.store_errors.labels(retryable=str(exc.retryable).lower()).inc()
                if not exc.retryable:
                    raise
                if self._stop.is_set():
                    log.error(
                        "store write failed while stopping; giving up on %d readings: %s",
                        len(batch.readings),
                        exc,
                    )
                    raise
                if self.write_failing_since_ms is None:
                    self.write_failing_since_ms = now_ms()
                log.warning("store write failed (retrying in %.1f s): %s", delay_s, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay_s)
                delay_s = min(delay_s * 2, self._retry_max_s)
                continue
            m.store_write_seconds.observe(time.perf_counter() - t0)
            if self.write_failing_since_ms is not None:
                log.info(
                    "store writes succeed again after %.1f s",
                    (now_ms() - self.write_failing_since_ms) / 1000,
                )
                self.write_failing_since_ms = None
            break
        await self._after_write(batch)
        return True

    async def _after_write(self, batch: ProcessedBatch) -> None:
        m = self.metrics
        for ev in batch.events:
            m.meter_events.labels(kind=ev.kind.value).inc()
        for ch in batch.alerts:
            m.alert_changes.labels(state=ch.state).inc()
        if batch.kpi_windows:
            m.windows_closed.inc(len(batch.kpi_windows))
            newest = max(w.end_ms for w in batch.kpi_windows)
            m.last_window_end.set(newest / 1000)
            for w in batch.kpi_windows:
                if w.end_ms > self._written_end_ms.get(w.site_id, w.end_ms - 1):
                    self._written_end_ms[w.site_id] = w.end_ms
            async with self._written:
                self._written.notify_all()
        if self._on_written is not None:
            self._on_written(batch)

    def _seen_ms(self, site_id: str, meter_id: str) -> int | None:
        slot = self.tracker.slot(site_id, meter_id)
        return None if slot is None else slot.seen_ms

    # ------------------------------------------------------------------ restart

    async def _restore(self) -> None:
        now_ms = self._clock_ms()
        states = await self._store.load_meter_states()
        self.tracker.restore(states)
        # a baseline that was a drop waits for the next reading to confirm it (or prove it a glitch)
        self.tracker.suspect_drops(await self._store.load_readings_before_baselines(BEFORE_BASELINE))
        newest_ts: dict[str, int] = {}
        for st in states:
            if st.last_ts_ms > newest_ts.get(st.site_id, st.last_ts_ms - 1):
                newest_ts[st.site_id] = st.last_ts_ms
        lateness = self._settings.allowed_lateness_ms
        watermarks: list[int] = []
        for site_id, sw in self.windows.items():
            candidates: list[int] = []
            latest = await self._store.latest_kpis(site_id)
            if latest is not None:
                candidates.append(latest.end_ms + lateness)
                self._written_end_ms[site_id] = latest.end_ms
                self.committed_end_ms[site_id] = self.closed_end_ms[site_id] = latest.end_ms
            if site_id in newest_ts:
                candidates.append(newest_ts[site_id])
            if candidates:
                sw.restore(max(candidates), now_ms)
                watermarks.append(max(candidates) - lateness)
        if watermarks:
            restored = 0
            for iv in await self._store.load_intervals(min(watermarks) - self.window_ms):
                site_windows = self.windows.get(iv.site_id)
                if site_windows is None or self._registry.meter(iv.site_id, iv.meter_id) is None:
                    continue
                if not site_windows.is_closed(iv.window_start_ms):
                    site_windows.add(iv.meter_id, iv.window_start_ms, iv.amount)
                    restored += 1
            log.info("restored %d meter states, %d open-window amounts", len(states), restored)
        alerts = await self._store.load_open_alerts()
        owns = self._owns
        # a shared bus: only this processor's sites (any site hashes to one owner, even one no longer
        # in the registry, whose alerts that owner closes)
        self.rules.restore(alerts if owns is None else [a for a in alerts if owns(a.site_id)])
        if self.accountant is not None:
            await self.accountant.start()


async def _after(task: asyncio.Task[bool]) -> None:
    if not task.done():
        await asyncio.wait({task})


def _raise_if_failed(task: asyncio.Task[bool] | None) -> None:
    """A step computed on top of a step that was not stored is not committed either (a cancelled
    write was not stored: committing past it would lose its readings)."""
    if task is None or not task.done():
        return
    if task.cancelled():
        raise StoreError("an earlier write was cancelled", retryable=False)
    if task.exception() is not None:
        raise StoreError(f"an earlier write failed: {task.exception()}", retryable=False)


def _nothing(_site_id: str) -> bool:
    """Ownership before the shared bus's first assignment."""
    return False
