"""The collector: decoded messages onto the bus, acknowledged only once the bus holds them.

``Collector.handle`` is called once per MQTT message, concurrently (the MQTT client runs one task per
in-flight message). Rather than one bus hand-over per message, messages that arrive together are
coalesced: every ``handle`` adds its result to the open group and waits; a single flusher task hands
the group over (one ``ReadingBatch`` per site, then the dead letters) and wakes all its waiters.
Under no load a group is one message and adds one event-loop turn of latency; under load groups grow
to whatever arrived while the previous hand-over was blocked by back-pressure, which keeps the bus
and the processor working on large batches. Groups are handed over in arrival order.

``Collector.submit`` is ``handle`` without the wait: it returns the group's future, shared by every
message of the group. ``MqttSource`` uses it (when its handler is a collector's ``handle``) to skip
the task per message and to acknowledge a whole group with one write: at tens of thousands of
messages per second, that task and that write cost more than decoding the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from collector.decode import DecodeContext, Decoded, decode_message
from collector.metrics import CollectorMetrics
from peakwatch.bus import Bus
from peakwatch.domain.models import DeadLetter, Reading, ReadingBatch
from peakwatch.domain.reasons import Reason

log = logging.getLogger(__name__)


class _Group:
    """Messages decoded while the previous group was being handed over."""

    __slots__ = ("by_site", "done", "letters", "messages")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.by_site: dict[str, list[Reading]] = {}
        self.letters: list[DeadLetter] = []
        self.messages = 0

    def add(self, decoded: Decoded) -> None:
        self.messages += 1
        by_site = self.by_site
        for reading in decoded.readings:
            bucket = by_site.get(reading.site_id)
            if bucket is None:
                bucket = by_site[reading.site_id] = []
            bucket.append(reading)
        self.letters.extend(decoded.dead_letters)


class Collector:
    """Decodes MQTT messages and hands the results to the bus.

    ``handle`` returns only after the bus accepted everything the message produced, readings and dead
    letters alike, so the caller may acknowledge the message; it raises (and the caller must then not
    acknowledge) if the bus refused. A message the decoder cannot judge becomes an ``internal_error``
    dead letter rather than an exception. Use from one event loop only.
    """

    def __init__(
        self, bus: Bus, ctx: DecodeContext, metrics: CollectorMetrics, *, max_batch_readings: int = 5_000
    ) -> None:
        self._bus = bus
        self._ctx = ctx
        self._metrics = metrics
        self._max_batch = max_batch_readings
        self._open: _Group | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def handle(self, topic: str, payload: bytes, received_ms: int) -> None:
        # Not shielded (a shield per message costs more than the decoding): cancelling one caller
        # cancels the group's future and so fails every caller of the group; the messages then stay
        # unacknowledged and come again. Callers are only cancelled when the process stops.
        await self.submit(topic, payload, received_ms)

    def submit(self, topic: str, payload: bytes, received_ms: int) -> asyncio.Future[None]:
        """Decode the message into the open group and return the group's future: done once the bus
        holds everything the group produced, failed (with the bus's error) if it refused. The future
        is shared by every message of the group: await it, never cancel it (that fails the group)."""
        try:
            decoded = decode_message(topic, payload, received_ms, self._ctx)
        except Exception as exc:  # a decoder bug must neither lose the message nor stop the collector
            log.exception("decoder failed on a message from %s", topic)
            decoded = Decoded(
                [],
                [
                    DeadLetter(
                        received_ms=received_ms,
                        source=topic,
                        reason=Reason.INTERNAL_ERROR.value,
                        detail=f"collector failed: {type(exc).__name__}: {exc}",
                        payload=bytes(payload),
                    )
                ],
            )
        group = self._open
        if group is None:
            group = self._open = _Group(asyncio.get_running_loop().create_future())
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_loop(), name="collector-flush")
        group.add(decoded)
        return group.done

    async def drain(self) -> None:
        """Wait until everything handed to ``handle`` so far is on the bus (or failed)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def _flush_loop(self) -> None:
        while self._open is not None:
            group, self._open = self._open, None
            try:
                await self._hand_over(group)
            except asyncio.CancelledError:
                group.done.cancel()
                if self._open is not None:
                    self._open.done.cancel()
                    self._open = None
                raise
            except Exception as exc:
                log.warning("bus refused %d message(s); they stay unacknowledged: %s", group.messages, exc)
                self._metrics.handler_failures.inc(group.messages)
                if not group.done.done():
                    group.done.set_exception(exc)
                    group.done.exception()  # mark retrieved: the waiters re-raise it themselves
            else:
                if not group.done.done():  # done already if a caller was cancelled
                    group.done.set_result(None)

    async def _hand_over(self, group: _Group) -> None:
        started = time.perf_counter()
        readings = 0
        size = self._max_batch
        batches: list[ReadingBatch] = []
        for site_id, site_readings in group.by_site.items():
            readings += len(site_readings)
            if len(site_readings) <= size:
                batches.append(ReadingBatch(site_id, site_readings))
                continue
            for start in range(0, len(site_readings), size):
                batches.append(ReadingBatch(site_id, site_readings[start : start + size]))
        await self._bus.publish_many(batches, group.letters)
        metrics = self._metrics
        metrics.publish_seconds.observe(time.perf_counter() - started)
        metrics.messages.inc(group.messages)
        if readings:
            metrics.readings.inc(readings)
        for reason, count in Counter(letter.reason for letter in group.letters).items():
            metrics.dead_letters.labels(reason).inc(count)
