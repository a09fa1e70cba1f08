"""The fast path: messages straight from gmqtt's parser into the collector's hand-over group (no task
per message), and for QoS 1 the PUBACKs of a whole group in one write once the bus accepted it (the
package docstring, "Grouped hand-over").

The QoS 1 guarantee is the slow path's: no PUBACK before the bus holds the message; a refused group
gets none (the source then re-opens the connection and the broker delivers the group again); a group
whose connection was lost meanwhile gets none either (the broker re-delivers on the next one).

QoS 0 messages join the same groups and have nothing to acknowledge. Nobody can send them again, so
a refused group's QoS 0 messages are lost: ``lost(count)`` is told (the source counts and logs them)
and the connection stays up (re-opening it would only lose the QoS 0 messages in flight on it).

Back-pressure: QoS 1 has the broker's in-flight window; QoS 0 has none, so while more than
``max_outstanding`` messages wait for their hand-over the source stops reading the socket (TCP then
holds the broker back, which queues or drops by its own limits and counts what it drops), and reads
again once half of them are on the bus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from collector.mqtt.gmqtt_client import Client

log = logging.getLogger(__name__)


@runtime_checkable
class Batching(Protocol):
    """A handler owner that can take a message without a task of its own (``collector.Collector``)."""

    def submit(self, topic: str, payload: bytes, received_ms: int) -> asyncio.Future[None]:
        """Take the message; the future completes once it is on the bus (shared by a group of
        messages), or fails if the bus refused it."""
        ...


class _Acks:
    """Packet ids waiting for one group's hand-over, and the connection they arrived on."""

    __slots__ = ("client", "connection", "done", "packet_ids", "qos0")

    def __init__(self, done: asyncio.Future[None], client: Client | None, connection: Any) -> None:
        self.done = done
        self.client = client
        self.connection = connection
        self.packet_ids: list[int] = []
        self.qos0 = 0  # QoS 0 messages of the group: nothing to acknowledge, counted if the bus refused

    def callback(self, then: Callable[[_Acks], None]) -> Callable[[asyncio.Future[None]], None]:
        return lambda _future: then(self)


class GroupedAcks:
    """Packet ids by hand-over group. ``failed(count)`` is told of a hand-over of QoS 1 messages that
    failed (``count``: nobody counted it yet), ``acknowledged()`` of a group acknowledged, ``lost(n)``
    of ``n`` QoS 0 messages in a refused group; the source re-delivers, resets its back-off and counts
    on them."""

    def __init__(
        self,
        batching: Batching,
        *,
        failed: Callable[[bool], None],
        acknowledged: Callable[[], None],
        lost: Callable[[int], None],
        max_outstanding: int = 20_000,
    ) -> None:
        self._batching = batching
        self._max_outstanding = max_outstanding
        self._outstanding = 0  # messages submitted whose group is not done yet
        self._held: tuple[Client, Any] | None = None  # the client and connection whose reading is paused
        self._failed = failed
        self._acknowledged = acknowledged
        self._lost = lost
        self._acks: _Acks | None = None  # the group the next message is likely to join
        self._pending: set[_Acks] = set()

    @property
    def pending(self) -> set[asyncio.Future[None]]:
        """The hand-overs whose PUBACKs have not left yet (``stop`` gives them a moment)."""
        return {acks.done for acks in self._pending}

    def take(self, client: Client | None, mid: int | None, topic: str | bytes, payload: bytes) -> None:
        """A message straight from gmqtt's parser (no task): submit it and, for QoS 1 (``mid``, its
        packet id), remember the packet id with its group's future; ``_group_done`` acknowledges the
        group. ``client`` is ``None`` while stopping: then a QoS 1 message is not taken (nor
        acknowledged: the broker keeps it for the next connection), a QoS 0 one still is (nobody
        would send it again)."""
        received_ms = time.time_ns() // 1_000_000
        if isinstance(topic, bytes):  # gmqtt hands over raw bytes when the topic is not UTF-8
            topic = topic.decode("utf-8", errors="replace")
        if client is None and mid is not None:
            return
        try:
            done = self._batching.submit(topic, payload, received_ms)
        except Exception:
            log.exception("handing a message from %s to the collector failed", topic)
            if mid is None:
                self._lost(1)
            else:
                self._failed(True)
            return
        connection = None if client is None else client.current_connection
        acks = self._acks
        if acks is None or acks.done is not done or acks.connection is not connection:
            acks = self._acks = _Acks(done, client, connection)
            self._pending.add(acks)
            done.add_done_callback(acks.callback(self._group_done))
        if mid is None:
            acks.qos0 += 1
        else:
            acks.packet_ids.append(mid)
        self._outstanding += 1
        if self._outstanding >= self._max_outstanding and client is not None:
            held = self._held
            if held is None or held[1] is not connection:  # a new connection (a reconnect) is held anew
                client.hold_reading(connection, True)
                self._held = (client, connection)

    def _group_done(self, acks: _Acks) -> None:
        self._pending.discard(acks)
        if self._acks is acks:
            self._acks = None
        self._outstanding -= acks.qos0 + len(acks.packet_ids)
        if self._held is not None and self._outstanding <= self._max_outstanding // 2:
            client, connection = self._held  # not acks.client: a group taken while stopping has none
            client.hold_reading(connection, False)
            self._held = None
        done = acks.done
        if done.cancelled() or done.exception() is not None:
            # the submitter counted the failure (Collector: handler_failures); no PUBACK, re-delivery
            if acks.qos0:
                self._lost(acks.qos0)
            if acks.packet_ids:
                self._failed(False)
            return
        self._acknowledged()
        if acks.packet_ids and acks.client is not None:
            acks.client.send_pubacks(acks.connection, acks.packet_ids)
