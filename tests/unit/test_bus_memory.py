"""The in-process bus: order, batching up to a size, dead letters, back-pressure and closing."""

from __future__ import annotations

import asyncio
import time

import pytest

from peakwatch.bus import MemoryBus
from peakwatch.domain.models import DeadLetter, Reading, ReadingBatch
from peakwatch.errors import BusError


def batch(site: str, n: int, start: int = 0) -> ReadingBatch:
    return ReadingBatch(site, [Reading(site_id=site, meter_id="m", ts_ms=start + i) for i in range(n)])


LETTER = DeadLetter(received_ms=1, source="t", reason="malformed_json", detail="x", payload=b"{")


async def test_poll_returns_everything_queued_in_order_with_dead_letters() -> None:
    bus = MemoryBus()
    await bus.publish(batch("a", 2))
    await bus.publish_dead_letters([LETTER])
    await bus.publish(batch("b", 3))
    assert bus.lag == 3
    polled = await bus.poll()
    assert [b.site_id for b in polled.batches] == ["a", "b"]
    assert polled.dead_letters == [LETTER]
    assert polled.reading_count == 5
    assert bus.lag == 0


async def test_poll_stops_once_max_readings_is_reached() -> None:
    bus = MemoryBus()
    for i in range(3):
        await bus.publish(batch("a", 10, start=i * 10))
    first = await bus.poll(max_readings=15)
    assert first.reading_count == 20  # whole batches: stops after the one that crossed the limit
    assert bus.lag == 1


async def test_empty_poll_waits_at_most_the_timeout() -> None:
    bus = MemoryBus()
    started = time.monotonic()
    polled = await bus.poll(timeout_s=0.05)
    assert not polled
    assert time.monotonic() - started < 1.0


async def test_a_full_bus_blocks_the_publisher_until_polled() -> None:
    bus = MemoryBus(max_items=1)
    await bus.publish(batch("a", 1))
    blocked = asyncio.create_task(bus.publish(batch("b", 1)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await bus.poll()
    await asyncio.wait_for(blocked, 1)
    assert bus.lag == 1


async def test_closed_bus_refuses_new_items_but_hands_out_what_it_holds() -> None:
    bus = MemoryBus()
    await bus.publish(batch("a", 1))
    await bus.close()
    with pytest.raises(BusError):
        await bus.publish(batch("b", 1))
    assert (await bus.poll()).reading_count == 1
    assert bus.lag == 0
    started = time.monotonic()
    assert not await bus.poll(timeout_s=5)  # closed and empty: at once
    assert time.monotonic() - started < 1.0


async def test_empty_dead_letter_list_is_not_queued() -> None:
    bus = MemoryBus()
    await bus.publish_dead_letters([])
    assert bus.lag == 0
