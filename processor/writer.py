"""The writes of the steps: in order where order matters, retried while the store may recover, and the
failure clock that health reads.

The writer owns the *tail*, the last write enqueued: a new write waits for it where it must (see
``processor/service.py``: alert changes reach the store in order, bus commits strictly in order, and a
step computed on top of a step that was not stored is not stored either). A write is retried while the
store says trying again may help (``peakwatch.retry``); meanwhile ``failing_since_ms`` says since when,
and ``run`` polls no further (back-pressure). Each step carries an id (``ProcessedBatch.write_id``)
that its transaction records, so a write retried after an ambiguous failure is applied once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from peakwatch.bus import Bus, Polled
from peakwatch.clock import now_ms
from peakwatch.domain.models import ProcessedBatch
from peakwatch.errors import StoreError
from peakwatch.retry import retry
from processor.metrics import ProcessorMetrics
from processor.ports import ProcessorStore

log = logging.getLogger(__name__)


class Writer:
    """Writes each step's batch, then commits its poll. One per processor."""

    def __init__(
        self,
        store: ProcessorStore,
        bus: Bus,
        metrics: ProcessorMetrics,
        stop: asyncio.Event,
        *,
        retry_initial_s: float,
        retry_max_s: float,
        on_stored: Callable[[ProcessedBatch], Awaitable[None]],
    ) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._stop = stop
        """Set: a write being retried gives up instead of holding the failure back."""
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._on_stored = on_stored
        self.tail: asyncio.Task[bool] | None = None
        """The last write enqueued; the next one waits for it (``enqueue``)."""
        self.failing_since_ms: int | None = None
        """Wall-clock time of the first failed attempt of the write being retried (``None``: writes
        succeed): health reports the processor degraded meanwhile."""

    def enqueue(
        self,
        batch: ProcessedBatch,
        polled: Polled | None,
        *,
        after: asyncio.Task[bool] | None = None,
        committed: Callable[[], None],
        failed: Callable[[], None],
    ) -> asyncio.Task[bool]:
        """Write ``batch`` and then commit ``polled`` once the write before it ended: the write still
        in flight if there is one, else ``after``. The task returns whether anything was written; it
        raises what the write raised, or a StoreError without writing if the write it waited for
        failed (``run`` passes its previous write as ``after``). ``committed()`` runs once this write
        and every one before it are stored (before the bus commit); ``failed()`` if it raises."""
        tail = self.tail
        previous = tail if tail is not None and not tail.done() else after
        task = asyncio.create_task(
            self._in_turn(previous, batch, polled, committed, failed), name="processor-write"
        )
        self.tail = task
        return task

    async def settled(self) -> None:
        """Wait for the writes in flight (a hand-over lets them commit, with their bus offsets)."""
        tail = self.tail
        if tail is not None and not tail.done():
            await asyncio.wait({tail})

    async def _in_turn(
        self,
        previous: asyncio.Task[bool] | None,
        batch: ProcessedBatch,
        polled: Polled | None,
        committed: Callable[[], None],
        failed: Callable[[], None],
    ) -> bool:
        try:
            if previous is not None and batch.alerts:
                await _after(previous)  # alert transitions must reach the store in order
            _raise_if_failed(previous)
            written = await self._write(batch)
            if previous is not None:
                await _after(previous)  # bus commits strictly in order
                _raise_if_failed(previous)
            committed()
            if polled:
                await self._bus.commit(polled)
            return written
        except BaseException:
            failed()
            raise

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
        try:
            await retry(
                functools.partial(self._attempt, batch),
                initial_s=self._retry_initial_s,
                max_s=self._retry_max_s,
                stop=self._stop,
                on_retry=self._failing,
            )
        except StoreError as exc:
            if exc.retryable and self._stop.is_set():
                log.error(
                    "store write failed while stopping; giving up on %d readings: %s",
                    len(batch.readings),
                    exc,
                )
            raise
        if self.failing_since_ms is not None:
            log.info("store writes succeed again after %.1f s", (now_ms() - self.failing_since_ms) / 1000)
            self.failing_since_ms = None
        await self._stored(batch)
        return True

    async def _attempt(self, batch: ProcessedBatch) -> None:
        started = time.perf_counter()
        try:
            await self._store.write(batch)
        except StoreError as exc:
            self._metrics.store_errors.labels(retryable=str(exc.retryable).lower()).inc()
            raise
        self._metrics.store_write_seconds.observe(time.perf_counter() - started)

    def _failing(self, exc: Exception, delay_s: float) -> None:
        if self.failing_since_ms is None:
            self.failing_since_ms = now_ms()
        log.warning("store write failed (retrying in %.1f s): %s", delay_s, exc)

    async def _stored(self, batch: ProcessedBatch) -> None:
        metrics = self._metrics
        for event in batch.events:
            metrics.meter_events.labels(kind=event.kind.value).inc()
        for change in batch.alerts:
            metrics.alert_changes.labels(state=change.state).inc()
        if batch.kpi_windows:
            metrics.windows_closed.inc(len(batch.kpi_windows))
            metrics.last_window_end.set(max(w.end_ms for w in batch.kpi_windows) / 1000)
        await self._on_stored(batch)


async def settle(task: asyncio.Task[Any], *, cancel: bool) -> None:
    """Wait for ``task`` (cancelled first if ``cancel``), swallowing its outcome: the caller is already
    failing or being cancelled, and a write in flight is better finished than abandoned."""
    if cancel:
        task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: asyncio would log it as never retrieved


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
