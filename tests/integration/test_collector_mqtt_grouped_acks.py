"""Grouped acknowledgements: with a ``Collector`` behind it, ``MqttSource`` takes QoS 1 messages without
a task each and acknowledges a whole hand-over group with one write (collector/mqtt.py). Against
mosquitto, which re-delivers unacknowledged messages on the next connection (amqtt drops them).
"""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from collector import Collector, CollectorMetrics, DecodeContext, MqttSource
from peakwatch.bus import MemoryBus
from peakwatch.config import Registry
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.errors import BusError
from tests.fixtures.mqtt import acknowledged, mosquitto_path, publisher, unique_prefix

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (re-delivery on reconnect)"),
]

REGISTRY = Registry.from_mapping(
    {
        "sites": [
            {
                "id": "park-1",
                "name": "Park",
                "kind": "park",
                "meters": [
                    {"id": f"m{i}", "carrier": "electricity", "role": "grid_import"} for i in range(5)
                ],
            }
        ]
    }
)


class RefusingBus(MemoryBus):
    """Refuses the first ``refusals`` hand-overs, as a bus that is briefly unavailable would."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def publish(self, batch: ReadingBatch) -> None:
        if self.refusals:
            self.refusals -= 1
            raise BusError("bus refused (simulated)")
        await super().publish(batch)


def make_source(url: str, bus: MemoryBus, prefix: str) -> tuple[MqttSource, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    ctx = DecodeContext(registry=REGISTRY, topic_prefix=prefix)
    collector = Collector(bus, ctx, metrics)
    source = MqttSource(
        url,
        f"collector-{uuid.uuid4().hex[:10]}",
        ctx.topic_filter,
        1,
        collector.handle,
        connect_timeout_s=15,
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        metrics=metrics,
    )
    return source, registry


async def collect(bus: MemoryBus, count: int, timeout_s: float = 15.0) -> list[Reading]:
    readings: list[Reading] = []
    deadline = time.monotonic() + timeout_s
    while len(readings) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"bus gave {len(readings)}/{count} readings in {timeout_s} s"
        polled = await bus.poll(timeout_s=min(remaining, 0.5))
        readings.extend(r for b in polled.batches for r in b.readings)
    return readings


async def test_a_burst_is_acknowledged_in_groups_after_the_hand_over(mqtt_url: str) -> None:
    bus = MemoryBus()
    prefix = unique_prefix()
    source, registry = make_source(mqtt_url, bus, prefix)
    await source.start()
    try:
        assert source.grouped_acks
        base = time.time_ns() // 1_000_000 - 60_000
        async with publisher(mqtt_url) as pub:
            for i in range(500):
                payload = msgspec.json.encode({"ts": base + i, "energy_kwh": float(i)})
                pub.publish(f"{prefix}/park-1/m{i % 5}", payload, qos=1)
            await acknowledged(pub)
        readings = await collect(bus, 500)
    finally:
        await source.stop()
    assert sorted(r.ts_ms for r in readings) == [base + i for i in range(500)]
    assert registry.get_sample_value("peakwatch_collector_messages_total") == 500
    assert registry.get_sample_value("peakwatch_collector_handler_failures_total") == 0


async def test_a_refused_group_is_not_acknowledged_and_the_broker_delivers_it_again(mqtt_url: str) -> None:
    bus = RefusingBus(refusals=1)
    prefix = unique_prefix()
    source, registry = make_source(mqtt_url, bus, prefix)
    await source.start()
    try:
        assert source.grouped_acks
        ts = time.time_ns() // 1_000_000
        async with publisher(mqtt_url) as pub:
            pub.publish(f"{prefix}/park-1/m0", msgspec.json.encode({"ts": ts, "energy_kwh": 1.0}), qos=1)
            await acknowledged(pub)
        [reading] = await collect(bus, 1)
    finally:
        await source.stop()
    assert (reading.meter_id, reading.ts_ms) == ("m0", ts)
    assert bus.refusals == 0
    assert registry.get_sample_value("peakwatch_collector_handler_failures_total") == 1
    assert registry.get_sample_value("peakwatch_collector_mqtt_connects_total") == 2  # the re-delivery
