"""Collector.handle: decoded messages go to the bus, grouped per site, and handle returns only once
the bus holds them (the in-process MemoryBus: no I/O)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client import CollectorRegistry

import collector.service
from collector import Collector, CollectorMetrics, DecodeContext, Decoded
from peakwatch.bus import MemoryBus, Polled
from peakwatch.config import Registry
from peakwatch.errors import BusError

REGISTRY = Registry.from_mapping(
    {
        "sites": [
            {
                "id": "park-1",
                "name": "Park",
                "kind": "park",
                "meters": [
                    {"id": "grid-in", "carrier": "electricity", "role": "grid_import"},
                    {"id": "pv", "carrier": "electricity", "role": "pv_generation"},
                ],
            },
            {
                "id": "dc-1",
                "name": "DC",
                "kind": "data_centre",
                "meters": [{"id": "it", "carrier": "electricity", "role": "it_load"}],
            },
        ]
    }
)
CTX = DecodeContext(registry=REGISTRY)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def payload(ts_ms: int, energy_kwh: float = 1.0) -> bytes:
    return json.dumps({"ts": ts_ms, "energy_kwh": energy_kwh}).encode()


def make(bus: MemoryBus, **kwargs: int) -> tuple[Collector, CollectorRegistry]:
    registry = CollectorRegistry()
    return Collector(bus, CTX, CollectorMetrics(registry), **kwargs), registry


async def drain(bus: MemoryBus) -> Polled:
    """Everything on the bus now (a MemoryBus poll returns all that is queued)."""
    polled = await bus.poll(timeout_s=0)
    assert bus.lag == 0
    return polled


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_one_message_reaches_the_bus_before_handle_returns() -> None:
    bus = MemoryBus()
    coll, registry = make(bus)
    ts = now_ms()
    await coll.handle("telemetry/park-1/grid-in", payload(ts, 5.0), ts)
    polled = await drain(bus)
    got = [(b.site_id, [(r.meter_id, r.ts_ms, r.energy_kwh) for r in b.readings]) for b in polled.batches]
    assert got == [("park-1", [("grid-in", ts, 5.0)])]
    assert polled.dead_letters == []
    assert metric(registry, "peakwatch_collector_messages_total") == 1
    assert metric(registry, "peakwatch_collector_readings_total") == 1


async def test_concurrent_messages_are_coalesced_per_site_in_arrival_order() -> None:
    bus = MemoryBus()
    coll, registry = make(bus)
    ts = now_ms()
    topics = ["telemetry/park-1/grid-in", "telemetry/dc-1/it", "telemetry/park-1/pv"]
    await asyncio.gather(*(coll.handle(topics[i % 3], payload(ts - 1000 + i), ts) for i in range(60)))
    polled = await drain(bus)
    assert sorted(b.site_id for b in polled.batches) == ["dc-1", "park-1"]  # one hand-over, one batch a site
    by_site = {b.site_id: [r.ts_ms for r in b.readings] for b in polled.batches}
    assert by_site["dc-1"] == [ts - 1000 + i for i in range(60) if i % 3 == 1]
    assert by_site["park-1"] == [ts - 1000 + i for i in range(60) if i % 3 != 1]
    assert metric(registry, "peakwatch_collector_messages_total") == 60
    assert metric(registry, "peakwatch_collector_readings_total") == 60


async def test_dead_letters_go_to_the_bus_and_are_counted_by_reason() -> None:
    bus = MemoryBus()
    coll, registry = make(bus)
    ts = now_ms()
    await asyncio.gather(
        coll.handle("telemetry/park-1/unknown", payload(ts), ts),
        coll.handle("telemetry/park-1/grid-in", b"{", ts),
        coll.handle("telemetry/park-1/grid-in", b"[1, 2]", ts),
    )
    polled = await drain(bus)
    assert polled.batches == []
    assert sorted(d.reason for d in polled.dead_letters) == [
        "malformed_json",
        "not_an_object",
        "not_an_object",
        "unknown_meter",
    ]
    assert metric(registry, "peakwatch_collector_dead_letters_total", reason="not_an_object") == 2
    assert metric(registry, "peakwatch_collector_dead_letters_total", reason="unknown_meter") == 1
    assert metric(registry, "peakwatch_collector_readings_total") == 0


async def test_large_groups_are_split_into_batches_of_at_most_max_batch_readings() -> None:
    bus = MemoryBus()
    coll, _ = make(bus, max_batch_readings=10)
    ts = now_ms()
    batch = json.dumps([{"ts": ts - i, "energy_kwh": i} for i in range(25)]).encode()
    await coll.handle("telemetry/park-1/grid-in", batch, ts)
    assert [len(b.readings) for b in (await drain(bus)).batches] == [10, 10, 5]


async def test_handle_waits_while_the_bus_applies_back_pressure() -> None:
    bus = MemoryBus(max_items=1)
    coll, _ = make(bus)
    ts = now_ms()
    await coll.handle("telemetry/park-1/grid-in", payload(ts - 1), ts)  # fills the bus
    second = asyncio.create_task(coll.handle("telemetry/park-1/grid-in", payload(ts), ts))
    for _ in range(20):  # let every ready callback run: the hand-over is stuck on the full queue
        await asyncio.sleep(0)
    assert not second.done()
    first = await bus.poll(timeout_s=1)
    await asyncio.wait_for(second, 5)
    second_polled = await bus.poll(timeout_s=1)
    assert [r.ts_ms for b in first.batches + second_polled.batches for r in b.readings] == [ts - 1, ts]


async def test_a_refusing_bus_makes_every_waiting_handle_raise() -> None:
    bus = MemoryBus()
    coll, registry = make(bus)
    await bus.close()
    ts = now_ms()
    results = await asyncio.gather(
        coll.handle("telemetry/park-1/grid-in", payload(ts), ts),
        coll.handle("telemetry/dc-1/it", payload(ts), ts),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [BusError, BusError]
    assert metric(registry, "peakwatch_collector_handler_failures_total") == 2
    assert metric(registry, "peakwatch_collector_messages_total") == 0


async def test_a_decoder_crash_becomes_an_internal_error_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(topic: str, payload: bytes, received_ms: int, ctx: DecodeContext) -> Decoded:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(collector.service, "decode_message", broken)
    bus = MemoryBus()
    coll, _ = make(bus)
    await coll.handle("telemetry/park-1/grid-in", b'{"ts": 1}', 123)
    [letter] = (await drain(bus)).dead_letters
    assert (letter.reason, letter.payload, letter.received_ms) == ("internal_error", b'{"ts": 1}', 123)
    assert "ZeroDivisionError: bug" in letter.detail


async def test_drain_waits_for_the_hand_over_in_progress() -> None:
    bus = MemoryBus()
    coll, _ = make(bus)
    ts = now_ms()
    task = asyncio.create_task(coll.handle("telemetry/park-1/grid-in", payload(ts), ts))
    await asyncio.sleep(0)  # handle ran up to its wait: the group is open, the flusher scheduled
    await coll.drain()
    assert bus.lag == 1
    await task
