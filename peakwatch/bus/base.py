"""The bus interface, shaped after a consumer-group log so Kafka fits behind it unchanged.

Producers call ``publish`` (readings, keyed by ``batch.site_id``) and ``publish_dead_letters``.
A processor loops ``polled = await bus.poll(...)``, stores what it computed, then ``await
bus.commit(polled)``: delivery is at-least-once, and the store's idempotent writes make results exact.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from peakwatch.domain.models import DeadLetter, ReadingBatch


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


class Bus(abc.ABC):
    """Moves reading batches and dead letters. Safe to share between tasks of one event loop."""

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
