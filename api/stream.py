"""The live alert stream (``GET /api/v1/alerts/stream``): one LISTEN connection per API process, fanned
out to every Server-Sent-Events client.

Why a broadcaster: a LISTEN per client would hold a pooled connection per open dashboard. Instead one
task listens on ``ALERTS_CHANNEL``, works out which alerts changed (the same queries for every client),
and hands each client the changes in its scope through a bounded queue. A client whose queue is full is
disconnected (its browser reconnects and gets a fresh snapshot) rather than holding memory for it.

Why the change detection compares rows instead of following ``updated_at``: a NOTIFY says *that*
something changed, not what, and ``updated_at`` is the processor's event time, which is neither
monotonic in commit order (a replayed window carries an old one) nor touched by an acknowledgement.
So every wake-up reads the open alerts and the most recently updated ones and compares each row with
the one last published (``ChangeTracker``); any difference (state, acknowledgement, value, ...) is sent.
An open alert that is no longer open was closed, whatever its ``updated_at``: it is read again by id.
The one change this can miss is an alert opened *and* closed between two wake-ups whose row is not
among the ``RECENT_ALERTS`` most recently updated; a client never saw it open, so its view stays right.

The stream ends when the client goes (the response is cancelled), when ``close()`` runs (shutdown:
call ``close_streams(app)`` *before* asking uvicorn to exit, which otherwise waits for open streams),
when its queue overflows, or when its credentials stop being valid (checked every ``RECHECK_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

from fastapi import FastAPI, Request
from fastapi.sse import format_sse_event
from pydantic import TypeAdapter
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from api.schemas.alerts import AlertPublic
from peakwatch.errors import StoreError
from peakwatch.store import Store
from peakwatch.store.records import AlertRecord

log = logging.getLogger(__name__)

KEEPALIVE_S: Final = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""
RECHECK_S: Final = 60.0
"""How often a stream checks that its credentials are still valid (revoked, expired, demoted)."""
QUEUE_SIZE: Final = 1000
"""Alert events a client may fall behind before it is disconnected."""
RECENT_ALERTS: Final = 500
"""Most recently updated alerts read on every wake-up, besides the open ones."""
READY_TIMEOUT_S: Final = 10.0
"""How long a first client waits for the broadcaster to listen before it gets a 503."""
RETRY_MIN_S: Final = 1.0
RETRY_MAX_S: Final = 30.0
RECONNECT_MS: Final = 5000
"""``retry:`` sent to clients: how long an EventSource waits before reconnecting."""
OPEN_STATES: Final = frozenset({"pending", "firing"})

_ALERT_LIST: Final = TypeAdapter(list[AlertPublic])

AlertFilter = Callable[[AlertRecord], bool]


def is_open(alert: AlertRecord) -> bool:
    return alert.state in OPEN_STATES


class ChangeTracker:
    """Each alert as last published; tells which rows differ now. Holds the open alerts and the closed
    ones among the most recently updated (the only closed rows a later read can return again)."""

    def __init__(self) -> None:
        self._known: dict[int, AlertRecord] = {}

    def to_reread(self, recent: Sequence[AlertRecord], open_now: Sequence[AlertRecord]) -> set[int]:
        """Alerts seen open (last published, or in ``recent``, which is read before ``open_now``) that
        ``open_now`` no longer lists: they were closed, and the closed row may not be in ``recent``."""
        open_ids = {a.id for a in open_now}
        latest = {a.id: a for a in recent}
        seen_open = {i for i, a in self._known.items() if is_open(a)} | {a.id for a in recent if is_open(a)}
        return {i for i in seen_open - open_ids if i not in latest or is_open(latest[i])}

    def update(
        self,
        recent: Sequence[AlertRecord],
        open_now: Sequence[AlertRecord],
        reread: Sequence[AlertRecord] = (),
    ) -> list[AlertRecord]:
        """The alerts whose row differs from the one last published, oldest update first. Arguments in
        the order they were read: a later read of the same alert wins."""
        current = {a.id: a for a in recent}
        current.update((a.id, a) for a in open_now)
        current.update((a.id, a) for a in reread)
        changed = [a for a in current.values() if self._known.get(a.id) != a]
        recent_ids = {a.id for a in recent}
        self._known = {i: a for i, a in current.items() if is_open(a) or i in recent_ids}
        changed.sort(key=lambda a: (a.updated_ms, a.id))
        return changed


class Subscription:
    """One client's queue of alert events; ``None`` in the queue ends the stream (``reason`` says why)."""

    def __init__(self, accepts: AlertFilter, size: int) -> None:
        self.accepts = accepts
        self.reason = ""
        self._queue: asyncio.Queue[AlertRecord | None] = asyncio.Queue(size)
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def offer(self, alert: AlertRecord) -> bool:
        """Queue ``alert``; ``False`` when the queue is full (the client is too slow)."""
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            return False
        return True

    def end(self, reason: str) -> None:
        """End the stream now: what is still queued is dropped (the client reconnects and gets a
        snapshot, which supersedes it)."""
        if self._ended:
            return
        self._ended = True
        self.reason = reason
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self, timeout_s: float) -> AlertRecord | None:
        """The next alert, ``None`` at the end; ``TimeoutError`` when nothing came within ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            return await self._queue.get()


class AlertBroadcaster:
    """Started by the first subscriber, stopped by ``close()``; reconnects (with backoff) when the
    database goes away, and then publishes whatever changed meanwhile."""

    def __init__(self, store: Store, *, queue_size: int = QUEUE_SIZE, recent: int = RECENT_ALERTS) -> None:
        self._store = store
        self._queue_size = queue_size
        self._recent = recent
        self._subscribers: set[Subscription] = set()
        self._tracker = ChangeTracker()
        self._task: asyncio.Task[None] | None = None
        self._rounds = 0
        """Rounds since the last (re)connection."""
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, accepts: AlertFilter) -> Subscription:
        """A subscription receiving every later change ``accepts``. Returns once the broadcaster
        listens and has its baseline, so a snapshot read afterwards misses nothing. StoreError (a 503)
        when it cannot start within ``READY_TIMEOUT_S`` or the API is shutting down."""
        if self._closed:
            raise StoreError("the API is shutting down", retryable=True)
        subscription = Subscription(accepts, self._queue_size)
        self._subscribers.add(subscription)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alert-stream")
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self._ready.wait()
        except TimeoutError:
            self.unsubscribe(subscription)
            raise StoreError(
                f"starting the live alert stream: not listening within {READY_TIMEOUT_S:g} s", retryable=True
            ) from None
        if self._closed:
            self.unsubscribe(subscription)
            raise StoreError("the API is shutting down", retryable=True)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Idempotent: called by the stream when it ends and again by the response when it is done."""
        self._subscribers.discard(subscription)

    async def close(self) -> None:
        """End every stream and stop listening (idempotent)."""
        self._closed = True
        for subscription in list(self._subscribers):
            subscription.end("the API is shutting down")
        self._subscribers.clear()
        self._ready.set()  # wakes a subscriber still waiting for the start: it sees _closed
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            self._rounds = 0
            try:
                await self._listen()
                log.warning("alert stream: the database connection was lost; reconnecting")
            except StoreError as exc:
                log.warning("alert stream: %s; retrying in %.0f s", exc, delay)
            except Exception:  # a bug must not leave clients waiting forever: they reconnect
                log.exception("alert stream failed; ending every stream and restarting")
                for subscription in list(self._subscribers):
                    self._drop(subscription, "internal error")
            if self._rounds > 1:  # it worked for a while: this is a new outage, not the same one
                delay = RETRY_MIN_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _listen(self) -> None:
        """Until the connection is lost: publish the changes after every NOTIFY. The first round only
        records the baseline (nobody has subscribed to anything older)."""
        async with self._store.notify.listening() as listener:
            await self._round(publish=self._ready.is_set())
            self._ready.set()
            while True:
                await listener.changed.wait()
                if listener.lost.is_set():
                    return
                listener.changed.clear()  # before reading: a change committed meanwhile wakes us again
                await self._round(publish=True)

    async def _round(self, *, publish: bool) -> None:
        recent = await self._store.list_alerts(limit=self._recent)
        open_now = await self._store.load_open_alerts()
        reread = []
        for alert_id in sorted(self._tracker.to_reread(recent, open_now)):
            alert = await self._store.get_alert(alert_id)
            if alert is not None:
                reread.append(alert)
        changed = self._tracker.update(recent, open_now, reread)
        self._rounds += 1
        if publish and changed:
            self._publish(changed)

    def _publish(self, changed: Sequence[AlertRecord]) -> None:
        for subscription in list(self._subscribers):
            for alert in changed:
                if subscription.accepts(alert) and not subscription.offer(alert):
                    log.warning(
                        "alert stream: a client fell %d events behind; disconnected", self._queue_size
                    )
                    self._drop(subscription, f"more than {self._queue_size} events behind")
                    break

    def _drop(self, subscription: Subscription, reason: str) -> None:
        subscription.end(reason)
        self._subscribers.discard(subscription)


class EventStreamResponse(StreamingResponse):
    """``text/event-stream``, not cached, not buffered by nginx (``X-Accel-Buffering``)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Callable[[], None]) -> None:
        async def closing() -> None:  # a plain function would run in the thread pool
            on_close()

        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(closing),
        )


async def alert_events(
    subscription: Subscription,
    snapshot: Sequence[AlertRecord],
    *,
    still_allowed: Callable[[], Awaitable[bool]],
    on_close: Callable[[], None],
    keepalive_s: float | None = None,
    recheck_s: float | None = None,
) -> AsyncIterator[bytes]:
    """The wire events of one client: the snapshot, then one ``alert`` event per change. The intervals
    default to the module's ``KEEPALIVE_S`` and ``RECHECK_S`` as they are when the stream starts."""
    keepalive_s = KEEPALIVE_S if keepalive_s is None else keepalive_s
    recheck_s = RECHECK_S if recheck_s is None else recheck_s
    try:
        yield format_sse_event(
            event="snapshot",
            data_str=_ALERT_LIST.dump_json([AlertPublic.from_record(a) for a in snapshot]).decode(),
            retry=RECONNECT_MS,
        )
        checked = time.monotonic()
        while True:
            try:
                alert = await subscription.next(keepalive_s)
            except TimeoutError:
                yield format_sse_event(comment="keepalive")
            else:
                if alert is None:
                    yield format_sse_event(comment=f"closing: {subscription.reason}")
                    return
                yield format_sse_event(
                    event="alert", data_str=AlertPublic.from_record(alert).model_dump_json()
                )
            if time.monotonic() - checked >= recheck_s:
                if not await still_allowed():
                    yield format_sse_event(comment="closing: the credentials are no longer valid")
                    return
                checked = time.monotonic()
    finally:
        on_close()


def alert_broadcaster(request: Request) -> AlertBroadcaster:
    broadcaster = getattr(request.app.state, "alert_stream", None)
    assert isinstance(broadcaster, AlertBroadcaster)  # create_app puts one there
    return broadcaster


async def close_streams(app: FastAPI) -> None:
    """End every open alert stream of ``app``. Call it before asking uvicorn to stop: uvicorn waits for
    open responses (and so never stops while a dashboard streams) before it runs the lifespan's end."""
    broadcaster = getattr(app.state, "alert_stream", None)
    if isinstance(broadcaster, AlertBroadcaster):
        await broadcaster.close()
