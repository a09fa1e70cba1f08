"""In-process bus: one bounded asyncio queue. Used by ``peakwatch up`` and the tests.

It is not durable: a process crash loses what sits in the queue, which is why the collector
acknowledges MQTT messages only once ``publish`` returned (the broker keeps the rest; see
docs/architecture.md).
"""

from __future__ import annotations

import asyncio

from peakwatch.bus.base import Bus, Polled
from peakwatch.domain.models import DeadLetter, ReadingBatch
from peakwatch.errors import BusError

_Item = ReadingBatch | list[DeadLetter]


class MemoryBus(Bus):
    def __init__(self, max_items: int = 10_000) -> None:
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(max_items)
        self._closed = False

    async def publish(self, batch: ReadingBatch) -> None:
        await self._put(batch)

    async def publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        if letters:
            await self._put(list(letters))

    async def _put(self, item: _Item) -> None:
        if self._closed:
            raise BusError("bus is closed")
        await self._queue.put(item)

    async def poll(self, max_readings: int = 50_000, timeout_s: float = 0.5) -> Polled:
        polled = Polled()
        if self._queue.empty():
            if self._closed:
                return polled
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout_s)
            except TimeoutError:
                return polled
        else:
            item = self._queue.get_nowait()
        count = 0
        while True:
            if isinstance(item, ReadingBatch):
                polled.batches.append(item)
                count += len(item.readings)
            else:
                polled.dead_letters.extend(item)
            if count >= max_readings or self._queue.empty():
                return polled
            item = self._queue.get_nowait()

    async def commit(self, polled: Polled) -> None:
        """Nothing to do: the queue hands each item out once."""

    async def close(self) -> None:
        """Refuse new items; what is queued can still be polled (a closed, empty bus polls empty
        at once)."""
        self._closed = True

    @property
    def lag(self) -> int:
        return self._queue.qsize()
