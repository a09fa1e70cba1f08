"""Processor.run computes step N+1 while step N is being written, yet writes one step at a time, in
order, and polls no further than one step ahead of the write in flight (processor/service.py)."""

from __future__ import annotations

import asyncio

import pytest

from peakwatch.bus import MemoryBus, Polled
from peakwatch.config import Settings
from peakwatch.domain.models import ProcessedBatch, Reading, ReadingBatch
from peakwatch.errors import StoreError
from processor.service import Processor
from tests.support import eventually
from tests.unit.fakes import FakeStore, make_registry

W0 = 1_699_999_980_000
SETTINGS = Settings(window_ms=60_000, allowed_lateness_ms=10_000, idle_close_ms=5_000)


class GatedStore(FakeStore):
    """Writes wait for ``gate``; records how many ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = 0
        self.active = 0
        self.most_active = 0

    async def write(self, batch: ProcessedBatch) -> None:
        self.started += 1
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await self.gate.wait()
            await super().write(batch)
        finally:
            self.active -= 1


async def publish_steps(bus: MemoryBus, steps: int) -> None:
    """One bus item per 10 s of event time: facility and IT registers of the data centre."""
    for i in range(steps):
        ts = W0 + i * 10_000
        await bus.publish(
            ReadingBatch(
                "dc",
                [
                    Reading(site_id="dc", meter_id="facility", ts_ms=ts, energy_kwh=1000.0 + i),
                    Reading(site_id="dc", meter_id="it", ts_ms=ts, energy_kwh=500.0 + i),
                ],
            )
        )


def make(bus: MemoryBus, store: FakeStore) -> Processor:
    return Processor(
        bus,
        store,
        make_registry(),
        SETTINGS,
        clock_ms=lambda: W0 + 60_000,
        poll_timeout_s=0.01,
        max_poll_readings=2,  # one bus item per step
    )


async def test_the_next_step_is_computed_while_a_write_is_in_flight_but_written_after_it() -> None:
    bus, store = MemoryBus(), GatedStore()
    await publish_steps(bus, 4)
    proc = make(bus, store)
    task = asyncio.create_task(proc.run())
    try:
        await eventually(lambda: store.started == 1 and bus.lag == 2, "step 2 polled during write 1")
        processed = proc.metrics.registry.get_sample_value("peakwatch_processor_readings_processed_total")
        assert processed == 4  # steps 1 and 2 computed
        assert store.started == 1  # write 2 waits for write 1
        store.gate.set()
        await eventually(lambda: len(store.readings) == 8, "every reading written")
    finally:
        proc.stop()
        await asyncio.wait_for(task, 5)
    assert store.most_active == 1
    written = [r.ts_ms for batch in store.writes for r in batch.readings]
    assert written == sorted(written)


class DawdlingBus(MemoryBus):
    """Every poll first lets the event loop run other tasks for a moment (e.g. a write to fail)."""

    async def poll(self, max_readings: int = 50_000, timeout_s: float = 0.5) -> Polled:
        await asyncio.sleep(0.05)
        return await super().poll(max_readings, timeout_s)


@pytest.mark.parametrize("bus_type", [MemoryBus, DawdlingBus], ids=["write-fails-later", "write-fails-first"])
async def test_a_failed_write_stops_run_and_the_step_behind_it_is_not_written(
    bus_type: type[MemoryBus],
) -> None:
    bus, store = bus_type(), GatedStore()
    await publish_steps(bus, 3)
    store.fail_next = [StoreError("constraint violated", retryable=False)]
    store.gate.set()
    proc = make(bus, store)
    with pytest.raises(StoreError, match="constraint"):
        await asyncio.wait_for(proc.run(), 5)
    assert store.attempts == 1  # step 2 was computed, but never handed to the store
    assert store.readings == {}
