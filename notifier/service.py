"""The notifier's loop: read alerts, plan with the routing math, deliver, remember what was sent.

Each round is a reconciliation, not an event handler: it reads every firing alert (and the resolved
ones some group last reported as firing), the silences, and its own per-group logs, and asks
``peakwatch.domain.routing.plan`` what to send now. Because the whole state lives in the database, a
restarted notifier picks up exactly where the last one stopped: no repeated message (a group's log
says what it sent), no lost timer (group_wait, repeat and escalation times are computed from the
stored instants). A message that was sent but whose log was not yet saved (a crash in between) is the
one case that repeats: delivery is at least once, like Alertmanager's.

Rounds run when an alert changes (the processor's commit sends ``NOTIFY``, so reading -> message
takes milliseconds beyond the rule's own ``for``), when the plan's next instant comes (``wake_ms``),
and every ``poll_ms`` at the latest. Deliveries run as their own tasks, so a channel that hangs for
its timeout holds back only its own group. Only one notifier sends: several may run (for failover);
the others wait on a PostgreSQL advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from notifier.channels import Channels
from peakwatch.clock import now_ms
from peakwatch.domain.notifications import Notification
from peakwatch.domain.routing import GroupLog, after_failure, plan
from peakwatch.errors import DeliveryError, StoreError
from peakwatch.health import ComponentStatus
from peakwatch.notify_config import Notifications
from peakwatch.retry import pause
from peakwatch.store import Store
from peakwatch.store.notify import Listener, silence_of
from peakwatch.store.records import Delivery
from peakwatch.supervise import Supervisor

log = logging.getLogger(__name__)

DELIVERY_LOG_DAYS = 90
"""How long the delivery log is kept."""
NOTIFIER_TASK = "notifier"
"""The reconciliation loop's name in ``peakwatch.supervise`` (metrics and health)."""
MAX_BACKOFF_MS = 300_000
"""Longest wait between two attempts of one message (and the wait after an answer that says the
channel cannot succeed as configured: a wrong key, HTTP 400)."""


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "peakwatch_notifier_deliveries_total",
            "Messages delivered to (or refused by) a channel.",
            ["channel_type", "outcome"],
            registry=registry,
        )
        self.leader = Gauge(
            "peakwatch_notifier_leader", "1 while this notifier is the one that sends.", registry=registry
        )
        self.muted = Gauge(
            "peakwatch_notifier_muted_alerts",
            "Firing alerts not notified (silenced, inhibited or in a maintenance window).",
            registry=registry,
        )


class Notifier:
    def __init__(
        self,
        store: Store,
        config: Notifications,
        *,
        public_url: str = "",
        metrics: NotifierMetrics | None = None,
        clock: Callable[[], int] = now_ms,
        poll_ms: int = 10_000,
        standby_retry_s: float = 5.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._channels = Channels(public_url=public_url, timezone=config.timezone)
        self._metrics = metrics or NotifierMetrics(CollectorRegistry())
        self._clock = clock
        self._poll_ms = poll_ms
        self._standby_retry_s = standby_retry_s
        self.supervisor = supervisor or Supervisor()
        """Restarts the loop after a crash (a bug, data it cannot read): logged, counted, shown in health."""
        self._logs: dict[str, GroupLog] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._unsaved: set[str] = set()
        """Log ids changed in memory but not yet written (saved, or deleted when not in ``_logs``)."""
        self._epoch = 0
        """Bumped when leadership ends: deliveries started before record nothing in the logs."""
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.leading = False
        self.ready = asyncio.Event()
        """Set once this notifier leads and has run its first round."""

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Lead (or stand by) until ``stop()``; database failures are waited out and retried, any other
        failure restarts the loop after a backoff (``peakwatch.supervise``): never ends it."""
        try:
            await self.supervisor.run(NOTIFIER_TASK, self._lead_until_stopped, stop=self._stopping)
        finally:
            await self._drain()
            await self._channels.aclose()

    async def _lead_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._lead()
            except StoreError as exc:
                # Whatever the database says (down, read-only, disk full), the notifier keeps
                # trying: it is the last thing that should give up. Its memory of what was sent
                # survives, so nothing is sent twice meanwhile.
                (log.warning if exc.retryable else log.error)(
                    "notifier: %s; retrying in %.1f s", exc, self._standby_retry_s
                )
                self._set_leading(False)
                await self._pause(self._standby_retry_s)

    async def _lead(self) -> None:
        async with self._store.notify.listening() as listener:
            while not await listener.try_lead():
                if await self._pause(self._standby_retry_s):
                    return
            self._set_leading(True)
            log.info("notifier: leading (%d receiver(s))", len(self._config.receivers))
            try:
                await self._follow(listener)
            finally:
                if listener.lost.is_set():
                    # The lock went with the connection and another notifier may lead already: stop
                    # what has not gone out yet (the new leader sends it) and record nothing more.
                    self._epoch += 1
                    for task in list(self._in_flight.values()):
                        task.cancel()
                await self._drain()  # with the lock still held, so no other notifier sends meanwhile
                self._epoch += 1
                self._set_leading(False)

    async def _follow(self, listener: Listener) -> None:
        await self.take_over()
        last_prune = 0
        while not self._stopping.is_set():
            if listener.lost.is_set():
                raise StoreError("the notifier's database connection was lost", retryable=True)
            listener.changed.clear()
            self._wake.clear()
            wake_ms = await self.round()
            self.supervisor.ok(NOTIFIER_TASK)
            self.ready.set()
            now = self._clock()
            if now - last_prune > 3_600_000:
                await self._store.notify.prune_deliveries(now - DELIVERY_LOG_DAYS * 86_400_000)
                last_prune = now
            timeout_ms = self._poll_ms if wake_ms is None else max(0, min(wake_ms - now, self._poll_ms))
            await _first(listener.changed, self._wake, timeout_s=timeout_ms / 1000)

    async def take_over(self) -> None:
        """Load what the previous leader sent (its group logs): the timers continue from there. Logs
        this notifier changed but could not save (the database refused a write) are newer than the
        stored ones: they stay."""
        stored = await self._store.notify.logs()
        for log_id in self._unsaved:
            if log_id in self._logs:
                stored[log_id] = self._logs[log_id]
            else:
                stored.pop(log_id, None)
        self._logs = stored
        await self._save_unsaved()

    async def round(self) -> int | None:
        """One reconciliation; returns the plan's next instant. Public so tests can drive rounds.

        ``plan`` sees a snapshot of the logs taken before the reads; a delivery that finishes during
        them changes its log, and what the plan says about that log is then out of date: it is skipped
        (the finished delivery wakes the loop, and the next round plans with the new log). The same
        holds for a log whose message is still on its way."""
        await self._save_unsaved()
        now = self._clock()
        store = self._store.notify
        snapshot = dict(self._logs)
        reported = {alert_id for entry in snapshot.values() for alert_id in entry.owed}
        alerts = await store.routing_alerts(reported)
        silences = []
        for record in await store.silences(now_ms=now, limit=None):
            try:
                silences.append(silence_of(record))
            except ValueError as exc:  # stored by another version in a form this one refuses
                log.warning("notifier: silence %d is ignored: %s", record.id, exc)
        # pure CPU, linear in the firing alerts: in a thread, so that thousands firing at once (a
        # fleet-wide outage) do not stall the loop the collector and processor share in `peakwatch up`
        result = await asyncio.to_thread(plan, now, alerts, self._config.routing, silences, snapshot)
        self._metrics.muted.set(len(result.muted))

        def current(log_id: str) -> bool:
            return log_id not in self._in_flight and self._logs.get(log_id) is snapshot.get(log_id)

        touched = [t for t in result.touched if current(t.id)]
        dropped = [d for d in result.dropped if current(d)]
        sends = [(n, after) for n, after in result.sends if current(after.id)]
        for t in touched:
            self._logs[t.id] = t
        for d in dropped:
            self._logs.pop(d, None)
        self._unsaved.update(t.id for t in touched)
        self._unsaved.update(dropped)
        for notification, after in sends:
            before = result.before.get(after.id) or msgspec.structs.replace(
                after, sent_ms=None, flushed_ms=None, firing=()
            )
            task = asyncio.create_task(self._deliver(notification, before, after, self._epoch))
            self._in_flight[after.id] = task
            task.add_done_callback(functools.partial(self._done, after.id))
        await self._save_unsaved()
        return result.wake_ms

    async def _save_unsaved(self) -> None:
        """Write the logs changed in memory. Memory is updated first, so a database that refuses writes
        cannot make the next round plan (and send) the same message again; the writes are retried at
        every round, and a round whose writes fail ends the leadership for a while (``run``)."""
        if not self._unsaved:
            return
        ids = list(self._unsaved)
        saves = [self._logs[i] for i in ids if i in self._logs]
        deletes = [i for i in ids if i not in self._logs]
        now = self._clock()
        await self._store.notify.save_logs(saves, now)
        await self._store.notify.delete_logs(deletes)
        self._unsaved.difference_update(ids)

    def _done(self, key: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(key, None)
        self._wake.set()  # the group's log changed: plan again

    async def _deliver(
        self, notification: Notification, before: GroupLog, after: GroupLog, epoch: int
    ) -> None:
        """Send; on success remember ``after``, on failure ``before`` with a backoff (the same message
        is tried again; at once-per-5-minutes when the channel said it cannot succeed as configured)."""
        kind = "unknown"
        try:
            receiver = self._config.receivers[notification.receiver]
            channel = receiver.channels[receiver.channel_ids().index(notification.channel)]
            kind = str(channel.__struct_config__.tag)
            detail = await self._channels.send(channel, notification, receiver.language)
        except DeliveryError as exc:
            failed = after_failure(before, self._clock(), base_ms=1_000 if exc.retryable else MAX_BACKOFF_MS)
            log.warning(
                "notifier: %s failed (attempt %d, next in %.0f s): %s",
                notification.channel,
                failed.failures,
                ((failed.retry_ms or 0) - self._clock()) / 1000,
                exc.detail,
            )
            await self._remember(failed, notification, "failed", exc.detail, failed.failures, epoch)
            self._metrics.deliveries.labels(kind, "failed").inc()
            return
        except Exception as exc:  # a bug must not kill the notifier or loop hot: log it, back off
            log.exception("notifier: %s raised", notification.channel)
            failed = after_failure(before, self._clock(), base_ms=MAX_BACKOFF_MS)
            detail = f"internal error: {type(exc).__name__} (see the notifier's log)"
            await self._remember(failed, notification, "failed", detail, failed.failures, epoch)
            self._metrics.deliveries.labels(kind, "failed").inc()
            return
        self._metrics.deliveries.labels(kind, "sent").inc()
        await self._remember(after, notification, "sent", detail, before.failures + 1, epoch)

    async def _remember(
        self, entry: GroupLog, notification: Notification, outcome: str, detail: str, attempt: int, epoch: int
    ) -> None:
        """Keep the group's log (dropped when nothing is left to report) and record the delivery. The
        log changes in memory at once and is written with the next round's writes if the database
        refuses it now."""
        if epoch == self._epoch:
            if outcome == "sent" and entry.finished:
                self._logs.pop(entry.id, None)
            else:
                self._logs[entry.id] = entry
            self._unsaved.add(entry.id)
        alerts = (*notification.firing, *notification.resolved)
        try:
            if epoch == self._epoch:
                await self._save_unsaved()
            await self._store.notify.record_delivery(
                Delivery(
                    at_ms=self._clock(),
                    receiver=notification.receiver,
                    channel=notification.channel,
                    group_key=notification.group_key,
                    status=notification.status,
                    outcome=outcome,
                    detail=detail[:500],
                    attempt=attempt,
                    escalation=notification.escalation,
                    repeat=notification.repeat,
                    alert_ids=[a.id for a in alerts],
                    site_ids=sorted({a.labels.get("site", "") for a in alerts} - {""}),
                )
            )
        except StoreError as exc:
            log.error(
                "notifier: could not record the %s delivery to %s: %s", outcome, notification.channel, exc
            )

    async def delivered(self) -> None:
        """Return once the deliveries under way have finished and been recorded (tests, shutdown)."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight.values()))
            await asyncio.sleep(0)  # let the done callbacks run

    async def _drain(self) -> None:
        """Let deliveries under way finish (each is bounded by its channel's timeout)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.delivered(), timeout=30)

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; True when stopped."""
        return await pause(seconds, self._stopping)

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        if not leading:
            self.ready.clear()
        self._metrics.leader.set(int(leading))

    def health(self) -> ComponentStatus:
        """Whether this notifier sends, or stands by while another holds the database's lock."""
        return ComponentStatus(
            name="notifier",
            ok=True,
            detail="sending" if self.leading else "standing by (another notifier sends)",
        )


async def _first(*events: asyncio.Event, timeout_s: float) -> None:
    """Return when any of ``events`` is set or after ``timeout_s``."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
