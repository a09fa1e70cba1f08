"""Processor.run computes step N+1 while step N is being written, yet writes one step at a time, in
order, and polls no further than one step ahead of the write in flight (processor/service.py)."""

from __future__ import annotations

import asyncio

import pytest

from peakwatch.bus import MemoryBus, Polled
from peakwatch.config import Settings
from peakwatch.domain.models import AlertChange, ProcessedBatch, Reading, ReadingBatch
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


class CommitLog(MemoryBus):
    """Records the order in which polled steps are committed (by their first reading's time)."""

    def __init__(self) -> None:
        super().__init__()
        self.committed: list[int] = []

    async def commit(self, polled: Polled) -> None:
        self.committed.append(polled.batches[0].readings[0].ts_ms)


async def test_writes_overlap_up_to_the_limit_and_commits_stay_in_order() -> None:
    bus, store = CommitLog(), GatedStore()
    await publish_steps(bus, 4)
    proc = make(bus, store)
    task = asyncio.create_task(proc.run())
    try:
        # Three transactions in flight at once (writes_in_flight=3); step 4 waits for write 1.
        await eventually(lambda: store.started == 3, "three writes started")
        assert store.most_active == 3
        assert bus.lag == 1
        assert bus.committed == []  # nothing is committed before its write (and the ones before it)
        store.gate.set()
        await eventually(lambda: len(store.readings) == 8, "every reading written")
        await eventually(lambda: len(bus.committed) == 4, "every step committed")
    finally:
        proc.stop()
        await asyncio.wait_for(task, 5)
    assert bus.committed == sorted(bus.committed)


async def test_a_step_with_alert_changes_waits_for_the_write_before_it() -> None:
    bus, store = MemoryBus(), GatedStore()
    proc = make(bus, store)
    await proc.start()
    reading = Reading(site_id="dc", meter_id="facility", ts_ms=W0, energy_kwh=1.0)
    alert = AlertChange(fingerprint="r@dc", rule="r", site_id="dc", state="pending", severity="warning",
                        summary="", value=1.6, started_ms=W0, at_ms=W0 + 60_000)  # fmt: skip
    first = proc._enqueue_write(ProcessedBatch(readings=[reading]), None)
    second = proc._enqueue_write(ProcessedBatch(alerts=[alert]), None)
    await eventually(lambda: store.started == 1, "first write started")
    await asyncio.sleep(0)  # give the second write every chance to start (it must not)
    assert store.started == 1
    store.gate.set()
    assert await first
    assert await second
    assert [bool(b.alerts) for b in store.writes] == [False, True]


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
    assert store.readings == {}  # step 1 failed for good; whatever followed it was not stored
    assert store.attempts <= 2  # step 2 at most attempted alongside it, never committed
