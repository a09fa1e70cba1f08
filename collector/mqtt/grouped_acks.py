"""The QoS 1 fast path: messages straight from gmqtt's parser into the collector's hand-over group, and
the PUBACKs of a whole group in one write once the bus accepted it (the package docstring,
"Grouped acknowledgements").

The guarantee is the slow path's: no PUBACK before the bus holds the message; a refused group gets
none (the source then re-opens the connection and the broker delivers the group again); a group
whose connection was lost meanwhile gets none either (the broker re-delivers on the next one).
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

    __slots__ = ("client", "connection", "done", "packet_ids")

    def __init__(self, done: asyncio.Future[None], client: Client, connection: Any) -> None:
        self.done = done
        self.client = client
        self.connection = connection
        self.packet_ids: list[int] = []

    def callback(self, then: Callable[[_Acks], None]) -> Callable[[asyncio.Future[None]], None]:
        return lambda _future: then(self)


class GroupedAcks:
    """Packet ids by hand-over group. ``failed(count)`` is told of a hand-over that failed (``count``:
    nobody counted it yet) and ``acknowledged()`` of a group acknowledged; the source re-delivers and
    resets its back-off on them."""

    def __init__(
        self,
        batching: Batching,
        *,
        failed: Callable[[bool], None],
        acknowledged: Callable[[], None],
    ) -> None:
        self._batching = batching
        self._failed = failed
        self._acknowledged = acknowledged
        self._acks: _Acks | None = None  # the group the next message is likely to join
        self._pending: set[_Acks] = set()

    @property
    def pending(self) -> set[asyncio.Future[None]]:
        """The hand-overs whose PUBACKs have not left yet (``stop`` gives them a moment)."""
        return {acks.done for acks in self._pending}

    def take(self, client: Client | None, mid: int, topic: str | bytes, payload: bytes) -> None:
        """A QoS 1 message, straight from gmqtt's parser (no task): submit it, remember its packet id
        with its group's future; ``_group_done`` acknowledges the group. ``client`` is ``None`` while
        stopping: then the message is not acknowledged, the broker keeps it for the next connection."""
        received_ms = time.time_ns() // 1_000_000
        if isinstance(topic, bytes):
            topic = topic.decode("utf-8", errors="replace")
        if client is None:
            return
        try:
            done = self._batching.submit(topic, payload, received_ms)
        except Exception:
            log.exception("handing a message from %s to the collector failed", topic)
            self._failed(True)
            return
        connection = client.current_connection
        acks = self._acks
        if acks is None or acks.done is not done or acks.connection is not connection:
            acks = self._acks = _Acks(done, client, connection)
            self._pending.add(acks)
            done.add_done_callback(acks.callback(self._group_done))
        acks.packet_ids.append(mid)

    def _group_done(self, acks: _Acks) -> None:
        self._pending.discard(acks)
        if self._acks is acks:
            self._acks = None
        done = acks.done
        if done.cancelled() or done.exception() is not None:
            # the submitter counted the failure (Collector: handler_failures); no PUBACK, re-delivery
            self._failed(False)
            return
        self._acknowledged()
        acks.client.send_pubacks(acks.connection, acks.packet_ids)
