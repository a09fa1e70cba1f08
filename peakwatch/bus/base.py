"""The bus interface, shaped after a consumer-group log so Kafka fits behind it unchanged.

Producers call ``publish`` (readings, keyed by ``batch.site_id``) and ``publish_dead_letters``.
A processor loops ``polled = await bus.poll(...)``, stores what it computed, then ``await
bus.commit(polled)``: delivery is at-least-once, and the store's idempotent writes make results exact.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry

from peakwatch.domain.models import DeadLetter, ReadingBatch
from peakwatch.health import ComponentStatus


@dataclass(slots=True)
class Polled:
    """What one ``poll`` returned. ``token`` is opaque to callers and handed back to ``commit``."""

    batches: list[ReadingBatch] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    token: object = None

    def __bool__(self) -> bool:
        return bool(self.batches or self.dead_letters)

    @property
    def reading_count(self) -> int:
        return sum(len(b.readings) for b in self.batches)


class Ownership(Protocol):
    """Told by a shared bus which sites this process processes (the processor implements it).

    A shared bus splits the sites between the processes consuming it (Kafka: partitions of a consumer
    group). ``released`` comes first, while this process still owns its sites: finish and commit what
    was polled, because the next owner restores from the store. ``acquired`` then names the sites owned
    from now on; it must return quickly (the bus is mid-rebalance) and may defer the restore to the
    next poll."""

    async def released(self) -> None: ...

    async def acquired(self, owns: Callable[[str], bool]) -> None: ...


class Bus(abc.ABC):
    """Moves reading batches and dead letters. Safe to share between tasks of one event loop."""

    shared: bool = False
    """Whether processes other than this one publish to and consume from it (Kafka). A local bus
    (memory, spool) belongs to one process, whose processor owns every site."""

    async def start(self) -> None:
        """Connect (a local bus has nothing to connect to). Called once before the first use."""
        return None

    def watch_ownership(self, listener: Ownership) -> None:
        """Report ownership changes to ``listener``. A local bus never changes owner: it ignores this,
        and its processor owns every site from the start."""
        return None

    async def publish_many(self, batches: Sequence[ReadingBatch], letters: Sequence[DeadLetter]) -> None:
        """Hand over what one collector flush gathered; returns once all of it is on the bus. A remote
        bus overrides this to send everything before waiting for the acknowledgements."""
        for batch in batches:
            await self.publish(batch)
        if letters:
            await self.publish_dead_letters(list(letters))

    @abc.abstractmethod
    async def publish(self, batch: ReadingBatch) -> None:
        """Hand a batch over. Blocks (back-pressure) while the bus is full; raises BusError if closed."""

    @abc.abstractmethod
    async def publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Hand over rejected input; same blocking and error rules as ``publish``."""

    @abc.abstractmethod
    async def poll(self, max_readings: int = 50_000, timeout_s: float = 0.5) -> Polled:
        """Wait up to ``timeout_s`` for data, then return everything available up to about
        ``max_readings`` readings. An empty ``Polled`` means nothing arrived (or the bus closed)."""

    @abc.abstractmethod
    async def commit(self, polled: Polled) -> None:
        """Mark ``polled`` as durably processed; after a crash, uncommitted data is delivered again."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop accepting data; pending ``poll`` calls return what is left."""

    @property
    @abc.abstractmethod
    def lag(self) -> int:
        """Items published but not yet polled (for metrics and health)."""

    def health(self) -> ComponentStatus:
        """What ``/healthz`` shows of the bus: its lag. A bus that can refuse writes (the spool) says
        why instead."""
        return ComponentStatus(name="bus", ok=True, detail=f"lag={self.lag}")

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Gauges of the bus's own state in ``registry``, read at scrape time (the spool's depth and
        bound); none for a bus that has no state of its own to show."""
        del registry  # nothing of its own: the lag is in health() and the services' metrics

    def kept_at_stop(self) -> int | None:
        """What a stop leaves in the bus for the next start (the spool keeps it on disk); ``None``: a bus
        that keeps nothing of its own, so what is left unprocessed at a stop is reported lost."""
        return None
