"""Processor: the whole step loop with a real MemoryBus and the in-memory FakeStore, on a test clock."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from peakwatch.bus import MemoryBus
from peakwatch.config import Settings
from peakwatch.domain.models import DeadLetter, Reading, ReadingBatch
from peakwatch.errors import StoreError
from peakwatch.store.records import AlertRecord
from processor.metrics import ProcessorMetrics
from processor.service import Processor
from tests.unit.fakes import FakeStore, make_registry

MIN = 60_000
W0 = 1_699_999_980_000  # a window boundary
SETTINGS = Settings(window_ms=MIN, allowed_lateness_ms=10_000, idle_close_ms=5_000)
LATENCY_MS = 200  # wall clock = event time + this, as if meters' clocks were in sync


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class Site:
    """A data centre whose meters report every 10 s; cumulative facility and IT, interval cooling."""

    def __init__(self, bus: MemoryBus, clock: Clock) -> None:
        self.bus = bus
        self.clock = clock
        self.facility = 1000.0
        self.it = 500.0

    async def tick(
        self, ts_ms: int, facility_kwh: float = 1.6, it_kwh: float = 1.0, *, cooling: bool = True
    ) -> None:
        """Advance the registers by the given amounts and publish the readings stamped ``ts_ms``."""
        self.facility += facility_kwh
        self.it += it_kwh
        readings = [
            Reading(site_id="dc", meter_id="facility", ts_ms=ts_ms, energy_kwh=self.facility),
            Reading(site_id="dc", meter_id="it", ts_ms=ts_ms, energy_kwh=self.it),
        ]
        if cooling and ts_ms % MIN == 0 and ts_ms != W0:  # the minute ending at ts_ms
            readings.append(Reading(site_id="dc", meter_id="cooling", ts_ms=ts_ms, energy_kwh=0.5))
        await self.bus.publish(ReadingBatch("dc", readings))
        self.clock.ms = ts_ms + LATENCY_MS


def processor(bus: MemoryBus, store: FakeStore, clock: Clock, **kwargs: object) -> Processor:
    options: dict[str, object] = {"clock_ms": clock, "poll_timeout_s": 0.0, **kwargs}
    return Processor(bus, store, make_registry(), SETTINGS, **options)  # type: ignore[arg-type]


def sample(proc: Processor, name: str, labels: dict[str, str] | None = None) -> float | None:
    registry = proc.metrics.registry
    return registry.get_sample_value(name, labels or {})


async def drive(
    proc: Processor,
    site: Site,
    start_ms: int,
    end_ms: int,
    facility_kwh: float = 1.6,
    *,
    cooling: bool = True,
) -> None:
    """Publish a tick every 10 s in [start, end] and process each one."""
    for ts in range(start_ms, end_ms + 1, 10_000):
        await site.tick(ts, facility_kwh, cooling=cooling)
        await proc.run_once(timeout_s=0)


async def test_pue_rule_fires_and_resolves_end_to_end() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    proc, site = processor(bus, store, clock), Site(bus, clock)
    await drive(proc, site, W0, W0 + 6 * MIN)  # PUE 1.6 for six minutes
    await drive(proc, site, W0 + 6 * MIN + 10_000, W0 + 9 * MIN, facility_kwh=1.2)  # then PUE 1.2
    windows = store.windows_of("dc")
    # the last published reading is at W0+9 min: windows up to W0+8 min have closed (lateness 10 s)
    assert [w.start_ms for w in windows] == [W0 + i * MIN for i in range(8)]
    assert [w.pue for w in windows] == pytest.approx([1.6] * 6 + [1.2] * 2)
    # six 10-s ticks of 1.6 kWh per window; cooling 0.5 kWh per minute (interval register)
    assert windows[0].facility_kwh == pytest.approx(9.6)
    assert all(w.completeness == 1.0 for w in windows)
    # the first window carries the first-reading flag of the two cumulative meters
    assert windows[0].flags == ("first",)
    assert [(a.state, a.fired_ms, a.resolved_ms) for a in store.alerts] == [
        ("resolved", W0 + 5 * MIN, W0 + 7 * MIN)
    ]
    # every step wrote its readings once
    assert len(store.readings) == 2 * 55 + 9


async def test_duplicates_replayed_do_not_change_totals() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    proc, site = processor(bus, store, clock), Site(bus, clock)
    await drive(proc, site, W0, W0 + 70_000)
    before = (store.meter_total("dc", "facility"), store.meter_total("dc", "cooling"), len(store.readings))
    # the collector delivers everything again (e.g. MQTT QoS 1 redelivery after a reconnect)
    for written in list(store.writes):
        await bus.publish(ReadingBatch("dc", list(written.readings)))
    await proc.run_once(timeout_s=0)
    after = (store.meter_total("dc", "facility"), store.meter_total("dc", "cooling"), len(store.readings))
    assert after == before
    assert before[0] == pytest.approx(7 * 1.6)
    assert before[1] == 0.5
    # the newest reading of each meter is a duplicate; the older ones are out of order (no energy)
    assert sample(proc, "peakwatch_processor_readings_duplicate_total") == 3


async def test_idle_close_without_new_messages() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    proc, site = processor(bus, store, clock), Site(bus, clock)
    await drive(proc, site, W0, W0 + 30_000, cooling=False)  # meters fall silent 30 s into the window
    assert store.windows_of("dc") == []
    clock.ms += 5_000
    await proc.flush()  # idle for 5 s: event time moves 5 s, the window needs 40 s
    assert store.windows_of("dc") == []
    clock.ms += 34_999
    await proc.flush()
    assert store.windows_of("dc") == []
    clock.ms += 1
    await proc.flush()
    [w] = store.windows_of("dc")
    assert w.start_ms == W0
    assert w.facility_kwh == pytest.approx(4.8)
    assert w.it_kwh == pytest.approx(3.0)
    assert w.completeness == pytest.approx(2 / 3)  # cooling never reported


async def test_restart_does_not_double_count_the_interval_spanning_it() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    site = Site(bus, clock)
    first = processor(bus, store, clock)
    await drive(first, site, W0, W0 + 90_000)  # window [W0+1 min, W0+2 min) is open with 30 s of data
    assert [w.start_ms for w in store.windows_of("dc")] == [W0]
    # a new processor on the same store; the old one is gone without closing anything more
    second = processor(bus, store, clock)
    await second.start()
    await drive(second, site, W0 + 100_000, W0 + 5 * MIN)
    windows = store.windows_of("dc")
    assert [w.start_ms for w in windows] == [W0 + i * MIN for i in range(4)]
    # every window has six 10-s ticks: 9.6 kWh facility, 6 kWh IT, including the one spanning the restart
    assert [w.facility_kwh for w in windows] == pytest.approx([9.6] * 4)
    assert [w.it_kwh for w in windows] == pytest.approx([6.0] * 4)
    # the baseline came from the store: no second "first" event
    assert [e.kind.value for e in store.events].count("first") == 2


class RestoreFails(FakeStore):
    """Loses the database after the open windows' amounts were read back, like an outage during start."""

    def __init__(self) -> None:
        super().__init__()
        self.restore_failures: list[StoreError] = []
        self.failed = asyncio.Event()

    async def load_open_alerts(self) -> list[AlertRecord]:
        if self.restore_failures:
            self.failed.set()
            raise self.restore_failures.pop(0)
        return await super().load_open_alerts()


async def test_database_lost_during_start_is_waited_for_and_nothing_restored_twice() -> None:
    bus, store, clock = MemoryBus(), RestoreFails(), Clock(W0)
    site = Site(bus, clock)
    await drive(processor(bus, store, clock), site, W0, W0 + 90_000)  # 30 s of the 2nd minute open
    store.restore_failures = [StoreError("connection lost", retryable=True)] * 2
    second = processor(bus, store, clock, retry_initial_s=0.001)
    await second.start()  # two failed attempts, then a restore from scratch
    assert store.restore_failures == []
    await drive(second, site, W0 + 100_000, W0 + 5 * MIN)
    # six 10-s ticks per window (9.6 kWh facility, 6 kWh IT): the open amounts were restored once
    assert [w.facility_kwh for w in store.windows_of("dc")] == pytest.approx([9.6] * 4)
    assert [w.it_kwh for w in store.windows_of("dc")] == pytest.approx([6.0] * 4)


async def test_health_says_the_processor_waits_for_the_database_at_start() -> None:
    bus, store, clock = MemoryBus(), RestoreFails(), Clock(W0)
    store.restore_failures = [StoreError("connection lost", retryable=True)] * 2
    proc = processor(bus, store, clock, retry_initial_s=0.05)
    starting = asyncio.create_task(proc.start())
    await store.failed.wait()  # the first attempt failed; the second waits 0.05 s
    waiting = proc.health()
    assert not waiting.ok
    assert waiting.detail.startswith("waiting 0 s for the database to restore its state")
    await starting
    assert proc.health().ok


async def test_a_wrong_store_at_start_is_not_retried() -> None:
    bus, store, clock = MemoryBus(), RestoreFails(), Clock(W0)
    store.restore_failures = [StoreError("permission denied", retryable=False)]
    with pytest.raises(StoreError, match="permission denied"):
        await processor(bus, store, clock, retry_initial_s=0.001).start()


async def test_restart_does_not_close_written_windows_again() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    site = Site(bus, clock)
    first = processor(bus, store, clock)
    await drive(first, site, W0, W0 + 30_000)
    clock.ms += 60_000
    await first.flush()  # idle close of [W0, W0+1 min); event time is now ahead of the newest reading
    assert len(store.windows_of("dc")) == 1
    written = len(store.writes)
    second = processor(bus, store, clock)
    await second.start()
    assert second.state.windows["dc"].is_closed(W0)
    assert await second.flush() is None
    assert len(store.writes) == written


async def test_retryable_store_error_retries_same_batch_without_polling() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    proc = processor(bus, store, clock, retry_initial_s=0.001, max_poll_readings=1)
    site = Site(bus, clock)
    await site.tick(W0)
    await site.tick(W0 + 10_000)
    store.fail_next = [StoreError("connection lost", retryable=True)] * 2
    written = await proc.run_once(timeout_s=0)
    assert written is not None
    assert store.attempts == 3
    assert store.writes == [written]
    assert bus.lag == 1  # the second batch was not polled while the store was down
    await proc.run_once(timeout_s=0)
    assert store.meter_total("dc", "facility") == pytest.approx(1.6)
    assert sample(proc, "peakwatch_processor_store_errors_total", {"retryable": "true"}) == 2


async def test_non_retryable_store_error_stops_the_step() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    proc = processor(bus, store, clock)
    await Site(bus, clock).tick(W0)
    store.fail_next = [StoreError("constraint violated", retryable=False)]
    with pytest.raises(StoreError, match="constraint"):
        await proc.run_once(timeout_s=0)
    assert store.attempts == 1


async def test_run_until_stop_and_wait_for_window() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    seen: list[int] = []
    proc = processor(
        bus,
        store,
        clock,
        poll_timeout_s=0.01,
        on_written=lambda b: seen.extend(w.end_ms for w in b.kpi_windows),
    )
    task = asyncio.create_task(proc.run())
    site = Site(bus, clock)
    for ts in range(W0, W0 + 80_001, 10_000):
        await site.tick(ts)
    await asyncio.wait_for(proc.wait_for_window("dc", W0 + MIN), timeout=5)
    proc.stop()
    await asyncio.wait_for(task, timeout=5)
    assert seen == [W0 + MIN]
    assert store.windows_of("dc")[0].pue == pytest.approx(1.6)


async def test_dead_letters_and_metrics() -> None:
    bus, store, clock = MemoryBus(), FakeStore(), Clock(W0)
    proc = processor(bus, store, clock, metrics=ProcessorMetrics(CollectorRegistry()))
    letter = DeadLetter(
        received_ms=W0, source="telemetry/dc/x", reason="malformed_json", detail="x", payload=b"{"
    )
    await bus.publish_dead_letters([letter])
    await bus.publish(
        ReadingBatch(
            "dc",
            [
                Reading(site_id="dc", meter_id="ghost", ts_ms=W0, energy_kwh=1.0),
                Reading(site_id="dc", meter_id="it", ts_ms=W0, energy_kwh=1.0),
            ],
        )
    )
    await proc.run_once(timeout_s=0)
    assert [d.reason for d in store.dead_letters] == ["malformed_json", "unknown_meter"]
    assert list(store.readings) == [("dc", "it", W0)]
    assert sample(proc, "peakwatch_processor_readings_processed_total") == 2
    assert sample(proc, "peakwatch_processor_meter_events_total", {"kind": "first"}) == 1
    assert sample(proc, "peakwatch_processor_store_write_seconds_count") == 1
