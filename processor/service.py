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

Restart (``start``): the sites are restored from the store (``processor/restore.py``).

The parts, each owning its state (this class composes them and orders their waiting):

* ``processor/step.py`` ``StepState``: meters, windows, rules and the per-site frontiers; ``step``.
* ``processor/writer.py`` ``Writer``: the writes in flight, their retry and the failure clock.
* ``processor/ownership.py`` ``SiteOwnership``: the sites owned on a shared bus and the fence.
* ``processor/accountant.py`` ``Accountant`` and ``processor/restated.py`` ``Rejudging`` over
  ``processor.ports.AccountantStore``; ``processor/rule_reload.py`` ``RuleBook`` over ``RuleStore``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from peakwatch.bus import Bus, Polled
from peakwatch.clock import now_ms
from peakwatch.config import Registry, Settings
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.models import ProcessedBatch
from peakwatch.errors import FencedError, StoreError
from peakwatch.health import ComponentStatus
from peakwatch.retry import pause, retry
from peakwatch.supervise import Supervisor
from processor.accountant import Accountant
from processor.meters import DEFAULT_DEDUP_RETENTION_MS
from processor.metrics import ProcessorMetrics
from processor.ownership import Claim, SiteOwnership
from processor.ports import AccountantStore, ProcessorStore, RuleStore
from processor.restated import Rejudging
from processor.restore import restore
from processor.rule_reload import RuleBook
from processor.step import StepState
from processor.writer import Writer, settle

log = logging.getLogger(__name__)

ACCOUNTANT_TASK = "processor-accountant"
RULES_TASK = "processor-rules"
"""Names of the processor's background loops (``peakwatch.supervise``: metrics and health)."""


class Processor:
    """Runs the processing loop. Create one per process; ``run`` until ``stop``.

    ``accounting``: the store the accountant works in (longer windows, restatements; unit tests with an
    in-memory store run without one); ``stored_rules``: the alert rules made through the API, reloaded
    when they change."""

    def __init__(
        self,
        bus: Bus,
        store: ProcessorStore,
        registry: Registry,
        settings: Settings,
        metrics: ProcessorMetrics | None = None,
        *,
        accounting: AccountantStore | None = None,
        stored_rules: RuleStore | None = None,
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
        if writes_in_flight < 1:
            raise ValueError("writes_in_flight must be >= 1")
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
        self._writes_in_flight = writes_in_flight
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._dedup_retention_ms = dedup_retention_ms
        self._accountant_interval_s = accountant_interval_s
        self._rules_interval_s = rules_interval_s
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        """Held by a step (poll to enqueued write): ``flush`` and the rule reload wait for it."""
        self._accounting = asyncio.Lock()
        """Held by an accountant pass; a hand-over waits for it."""
        self._accountant_wake = asyncio.Event()
        self._written = asyncio.Condition()
        self._started = False
        self._restore_failing_since_ms: int | None = None
        """Since when the database keeps ``start`` from restoring (``None``: it does not; health reads it)."""
        self._fatal: BaseException | None = None
        """A failure of a side task (the accountant fenced off) that ends ``run``."""
        self._ownership = SiteOwnership(bus.shared)
        self._rule_book = RuleBook(registry, stored_rules)
        self._accounting_store = accounting
        self._writer = Writer(
            store,
            bus,
            self.metrics,
            self._stop,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
            on_stored=self._stored,
        )
        self._rejudging = Rejudging(accounting, lambda: self.state)
        self.accountant: Accountant | None = None
        """Runs beside ``run`` (longer windows, restatements) when there is an ``accounting`` store."""
        if bus.shared:
            bus.watch_ownership(self)
            self._build(registry.only(()))
        else:
            self._build(registry)

    @property
    def write_failing_since_ms(self) -> int | None:
        """Since when the write being retried fails (``None``: writes succeed; health reads it)."""
        return self._writer.failing_since_ms

    def health(self) -> ComponentStatus:
        """Whether the database takes the processor's writes; while it does not, for how long (the
        readings wait in the bus and are retried)."""
        if self._restore_failing_since_ms is not None:
            away_s = (now_ms() - self._restore_failing_since_ms) / 1000
            detail = f"waiting {away_s:.0f} s for the database to restore its state; readings wait in the bus"
            return ComponentStatus(name="processor", ok=False, detail=detail)
        failing = self.write_failing_since_ms
        return ComponentStatus(
            name="processor",
            ok=failing is None,
            detail="writing"
            if failing is None
            else f"database writes failing for {(now_ms() - failing) / 1000:.0f} s; "
            "readings are kept in the spool and retried",
        )

    def _build(self, view: Registry) -> None:
        """Fresh per-site state for the sites of ``view`` (all of them, or this processor's share);
        ``_restore`` then fills it from the store. A hand-over makes a new accountant too."""
        state = StepState(
            view,
            self._rule_book.rules,
            self._settings,
            self.metrics,
            dedup_retention_ms=self._dedup_retention_ms,
            fence=self._ownership.fence,
        )
        self.state = state
        if self._accounting_store is None:
            return
        self.supervisor.clear_problems(ACCOUNTANT_TASK)  # the old accountant's failures go with it
        self.accountant = Accountant(
            self._accounting_store,
            view,
            committed=lambda: state.committed_end_ms,
            closed=lambda: state.closed_end_ms,
            on_factors=self._use_factors,
            on_replacements=state.tracker.add_replacements,
            owns=self._ownership.owns,
            fence=self._ownership.fence,
            on_restated=self._rejudging.restated,
            on_problem=functools.partial(self.supervisor.problem, ACCOUNTANT_TASK),
            retry_initial_s=self.supervisor.initial_s,
            retry_max_s=self.supervisor.max_s,
        )

    def _use_factors(self, library: FactorLibrary) -> None:
        self.state.use_factors(self._registry, library)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Restore state from the store (idempotent; ``run`` calls it). On a shared bus there is
        nothing to restore yet: the sites come with the bus's first assignment."""
        async with self._lock:
            if self._started:
                return
            attempt = 0

            async def restore_once() -> None:
                nonlocal attempt
                attempt += 1
                if attempt > 1 and not self._ownership.shared:
                    self._build(self._registry)  # a restore cut short left half-filled state behind
                await self._reload_rules()  # before restoring: alerts of API rules are not orphans
                if not self._ownership.shared:
                    await self._restore()

            # a database that is away at start (or goes away during it) is waited for, as in a step:
            # the readings wait in the bus meanwhile
            await retry(
                restore_once,
                initial_s=self._retry_initial_s,
                max_s=self._retry_max_s,
                stop=self._stop,
                on_retry=self._start_failed,
            )
            self._restore_failing_since_ms = None
            self._started = True

    def _start_failed(self, exc: Exception, delay_s: float) -> None:
        if self._restore_failing_since_ms is None:
            self._restore_failing_since_ms = now_ms()
        log.warning("restoring the processor's state failed (retrying in %.1f s): %s", delay_s, exc)

    async def _restore(self) -> None:
        await restore(
            self.state,
            self._store,
            self._registry,
            now_ms=self._clock_ms(),
            lateness_ms=self._settings.allowed_lateness_ms,
            owns=self._ownership.owns,
        )
        if self.accountant is not None:
            await self.accountant.start()

    async def run(self) -> None:
        """Process until ``stop``; then close what the watermark allows and write it. Step N+1 is
        polled and computed while step N is being written (see the module docstring)."""
        await self.start()
        in_flight: collections.deque[asyncio.Task[bool]] = collections.deque()
        side_tasks = self._side_tasks()
        try:
            while not self._stop.is_set():
                async with self._lock:
                    polled = await self._bus.poll(self._max_poll_readings, self._poll_timeout_s)
                    if self._ownership.pending is not None:  # records of newly owned sites: restore first
                        await self._take_ownership()
                    if polled:
                        self._ownership.refuse_foreign(polled)
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
                await settle(task, cancel=isinstance(exc, asyncio.CancelledError))
            for side_task in side_tasks.values():
                await settle(side_task, cancel=True)
            raise
        await self._finish(side_tasks)

    def _side_tasks(self) -> dict[str, asyncio.Task[None]]:
        """The accountant's and the rule reload's loops, supervised, beside ``run``."""
        tasks: dict[str, asyncio.Task[None]] = {}
        if self.accountant is not None:
            body = self.supervisor.run(ACCOUNTANT_TASK, self._run_accountant, stop=self._stop)
            tasks[ACCOUNTANT_TASK] = asyncio.create_task(body, name=ACCOUNTANT_TASK)
        if self._rule_book.reloads:
            body = self.supervisor.run(RULES_TASK, self._watch_rules, stop=self._stop)
            tasks[RULES_TASK] = asyncio.create_task(body, name=RULES_TASK)
        return tasks

    async def _finish(self, side_tasks: dict[str, asyncio.Task[None]]) -> None:
        """A clean stop: the rule reload ends, the accountant's pass under way finishes, then what the
        watermark allows is closed and written and accounted."""
        rules = side_tasks.get(RULES_TASK)
        if rules is not None:
            await settle(rules, cancel=True)
        accountant = side_tasks.get(ACCOUNTANT_TASK)
        if accountant is not None:
            self._accountant_wake.set()
            await settle(accountant, cancel=False)
        if self._fatal is not None:
            raise self._fatal
        await self.flush()
        async with self._accounting:
            await self.account()

    def stop(self) -> None:
        """Ask ``run`` to finish after the current step (and a write being retried to give up)."""
        self._stop.set()

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

    def step(self, polled: Polled | None, now_ms: int, *, backlog: bool = False) -> ProcessedBatch:
        """One step's pure part (``StepState.step``): no I/O."""
        return self.state.step(polled, now_ms, backlog=backlog)

    async def wait_for_window(self, site_id: str, end_ms: int) -> None:
        """Return once a KPI window of ``site_id`` ending at or after ``end_ms`` has been written.
        Wrap in ``asyncio.wait_for`` for a deadline."""
        async with self._written:
            await self._written.wait_for(lambda: self.state.written_end_ms.get(site_id, end_ms - 1) >= end_ms)

    # ------------------------------------------------------------------ writes

    def _enqueue_write(
        self, batch: ProcessedBatch, polled: Polled | None, after: asyncio.Task[bool] | None = None
    ) -> asyncio.Task[bool]:
        """Hand ``batch`` to the writer (``Writer.enqueue``). Once it and every write before it are
        stored, the windows this step (and every one before it) closed are the accountant's, and late
        data wakes it at once; if it fails, its re-judged ranges are judged again."""
        state = self.state
        closed = dict(state.closed_end_ms)
        judged = self._rejudging.take_judged()  # their changes went into ``batch`` (no await between)

        def committed() -> None:
            state.commit(closed)
            if batch.restatements:
                self._accountant_wake.set()

        return self._writer.enqueue(
            batch,
            polled,
            after=after,
            committed=committed,
            failed=functools.partial(self._rejudging.unstored, judged),
        )

    async def _stored(self, batch: ProcessedBatch) -> None:
        if batch.kpi_windows:
            self.state.written(batch.kpi_windows)
            async with self._written:
                self._written.notify_all()
        if self._on_written is not None:
            self._on_written(batch)

    # ------------------------------------------------------------------ ownership (shared bus)

    async def released(self) -> None:
        """The bus takes every site away (a rebalance begins): let the writes in flight commit, with
        their bus offsets, and forget the sites. Never waits for ``_lock``: the run loop may hold it in
        a poll that the bus only ends once this returns."""
        ownership = self._ownership
        ownership.releasing()
        if self.accountant is not None:
            self.accountant.halt()  # a long restatement pass must not hold the hand-over up
        async with ownership.lock:
            ownership.pending = None
            await self._writer.settled()
            async with self._accounting:
                ownership.drop_all()
                self._build(self._registry.only(()))
            log.info("sites released for the bus's new assignment")

    async def acquired(self, owns: Callable[[str], bool]) -> None:
        """The sites for which ``owns`` is true are this processor's now; restored before the next
        step (the bus is mid-rebalance: no database work here)."""
        self._ownership.acquired(owns)

    async def _take_ownership(self) -> None:
        """Claim and restore the sites last acquired. Retries while the database is away: the records
        of those sites wait in the bus meanwhile."""
        ownership = self._ownership
        async with ownership.lock:
            claim = ownership.claim(self._registry)
            if claim is None:
                return
            taken = await retry(
                functools.partial(self._claim, claim),
                initial_s=self._retry_initial_s,
                max_s=self._retry_max_s,
                stop=self._stop,
                on_retry=_claim_failed,
            )
            if not taken:
                return  # the group moved on while the database was away: this claim would be stale
            ownership.pending = None
            log.info("this processor owns %d site(s): %s", len(claim.sites), ", ".join(claim.sites[:20]))

    async def _claim(self, claim: Claim) -> bool:
        ownership = self._ownership
        if ownership.stale(claim):
            return False
        fence = await self._store.claim_sites(claim.sites, ownership.owner) if claim.sites else {}
        async with self._accounting:
            ownership.take(claim, fence)
            self._build(self._registry.only(claim.sites))
            await self._restore()
        return True

    # ------------------------------------------------------------------ accountant and rules

    async def account(self) -> int:
        """One accountant pass now (tests, ``flush``); 0 without an accountant."""
        if self.accountant is None:
            return 0
        await self._rejudging.judge()
        return await self.accountant.run_once()

    async def _run_accountant(self) -> None:
        """The accountant's loop: a pass every interval, and at once when a write queued restatements.
        Anything else it raises crashes the loop, which ``run`` supervises (logged, counted, shown in
        health, restarted with backoff); one site's failing work is isolated inside the pass."""
        while not self._stop.is_set():
            try:
                async with self._accounting:  # the accountant of the sites owned now
                    await self.account()
                self.supervisor.ok(ACCOUNTANT_TASK)
            except FencedError as exc:
                log.error("accountant stopped: %s", exc)
                self._fatal = exc
                self.stop()
                return
            except StoreError as exc:
                log.warning("accountant pass failed (retrying): %s", exc)
            self._accountant_wake.clear()
            await pause(self._accountant_interval_s, self._accountant_wake)

    async def _reload_rules(self) -> None:
        if await self._rule_book.reload():
            self.state.rules.reload(self._rule_book.rules)

    async def _watch_rules(self) -> None:
        while not self._stop.is_set():
            await pause(self._rules_interval_s, self._stop)
            try:
                async with self._lock:  # never between a step's poll and its evaluation
                    await self._reload_rules()
            except StoreError as exc:
                log.warning("reading the alert rules failed (retrying): %s", exc)
                continue
            self.supervisor.ok(RULES_TASK)


def _claim_failed(exc: Exception, delay_s: float) -> None:
    log.warning("restoring the sites given by the bus failed (retrying in %.1f s): %s", delay_s, exc)
