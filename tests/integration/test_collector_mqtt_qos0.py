"""QoS 0 on the grouped path, against mosquitto: a burst reaches the bus exactly once without a task per
message, over MQTT 5 and 3.1.1, with QoS 1 subscribed (QoS 0 is what the publisher sent) or QoS 0; and
a broker that goes away mid-burst loses at most the messages in flight then (all QoS 0 may lose), and
nothing after it comes back.

The publisher is gmqtt, an independent client; the broker stops and starts for real (same port)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter

import gmqtt
import msgspec
import pytest
from prometheus_client import CollectorRegistry

from collector import Collector, CollectorMetrics, DecodeContext, MqttSource
from collector.mqtt import ProtocolVersion
from peakwatch.bus import MemoryBus
from peakwatch.config import Registry
from tests.fixtures.mqtt import mosquitto_path, running_mosquitto
from tests.support import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (restarted mid-burst on its port)"),
]

REGISTRY = Registry.from_mapping(
    {
        "sites": [
            {
                "id": "park-1",
                "name": "Park",
                "kind": "park",
                "meters": [{"id": "m0", "carrier": "electricity", "role": "grid_import"}],
            }
        ]
    }
)
PREFIX = "telemetry"
TOPIC = f"{PREFIX}/park-1/m0"


class CountingCollector(Collector):
    """A collector that counts calls of the task-per-message entry (``handle``): the grouped path
    calls ``submit`` straight from the parser and never ``handle``."""

    handle_calls = 0

    async def handle(self, topic: str, payload: bytes, received_ms: int) -> None:
        self.handle_calls += 1
        await super().handle(topic, payload, received_ms)


class Rig:
    def __init__(self, url: str, protocol: ProtocolVersion, qos: int) -> None:
        self.bus = MemoryBus()
        self.registry = CollectorRegistry()
        metrics = CollectorMetrics(self.registry)
        ctx = DecodeContext(registry=REGISTRY, topic_prefix=PREFIX)
        self.collector = CountingCollector(self.bus, ctx, metrics)
        self.source = MqttSource(
            url,
            f"collector-{uuid.uuid4().hex[:10]}",
            ctx.topic_filter,
            qos,
            self.collector.handle,
            protocol=protocol,
            connect_timeout_s=15,
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
            metrics=metrics,
        )
        self.stamps: Counter[int] = Counter()

    async def poll(self) -> None:
        polled = await self.bus.poll(timeout_s=0.2)
        self.stamps.update(r.ts_ms for b in polled.batches for r in b.readings)

    async def until(self, stamps: range, at_least: int, timeout_s: float = 30.0) -> None:
        """Poll the bus until at least ``at_least`` of ``stamps`` arrived."""
        deadline = time.monotonic() + timeout_s
        while sum(1 for ts in stamps if ts in self.stamps) < at_least:
            assert time.monotonic() < deadline, f"{self.received(stamps)}/{at_least} of the burst arrived"
            await self.poll()

    def received(self, stamps: range) -> int:
        return sum(1 for ts in stamps if ts in self.stamps)

    def metric(self, name: str) -> float | None:
        return self.registry.get_sample_value(f"peakwatch_collector_{name}_total")


async def publish_burst(url: str, stamps: range) -> gmqtt.Client:
    """Every message of the burst written at QoS 0 (gmqtt writes each PUBLISH straight to the socket)."""
    client = gmqtt.Client(f"pub-{uuid.uuid4().hex[:10]}")
    host, port = url.removeprefix("mqtt://").split(":")
    await client.connect(host, int(port), version=4)
    for i, ts in enumerate(stamps):
        client.publish(TOPIC, msgspec.json.encode({"ts": ts, "energy_kwh": float(i)}), qos=0)
        if i % 200 == 199:
            await asyncio.sleep(0)  # let the socket drain, as a device streaming readings would
    return client


async def disconnect(client: gmqtt.Client) -> None:
    with contextlib.suppress(OSError, RuntimeError, TimeoutError):  # the broker went away under it
        await asyncio.wait_for(client.disconnect(), 5)


@pytest.mark.parametrize(
    ("protocol", "qos"),
    [("auto", 1), ("3.1.1", 1), ("auto", 0)],
    ids=["mqtt5-sub-qos1", "mqtt311-sub-qos1", "mqtt5-sub-qos0"],
)
async def test_a_qos0_burst_arrives_once_and_a_broker_restart_mid_burst_loses_only_what_was_in_flight(
    protocol: ProtocolVersion, qos: int
) -> None:
    port = free_port()
    base = time.time_ns() // 1_000_000 - 3_600_000
    first, middle, last = (
        range(base + k * 100_000, base + k * 100_000 + n) for k, n in ((0, 3000), (1, 20_000), (2, 3000))
    )
    with running_mosquitto(port) as url:
        rig = Rig(url, protocol, qos)
        await rig.source.start()
        assert rig.source.grouped_acks
        await disconnect(await publish_burst(url, first))
        await rig.until(first, len(first))
        pub = await publish_burst(url, middle)
        await rig.until(middle, 1000)  # mid-burst: the collector has some, the broker holds the rest
    try:
        await disconnect(pub)
        assert rig.received(middle) < len(middle), "the burst ended before the broker stopped"
        with running_mosquitto(port) as url:
            await rig.source.wait_connected(timeout_s=15)
            await disconnect(await publish_burst(url, last))
            await rig.until(last, len(last))
            await rig.source.stop()
    finally:
        await rig.source.stop()
    await rig.poll()
    assert max(rig.stamps.values()) == 1, "a message reached the bus twice"
    assert rig.received(first) == len(first)
    assert rig.received(last) == len(last)
    assert set(rig.stamps) <= {*first, *middle, *last}
    assert rig.collector.handle_calls == 0  # no task per message: every one came through submit
    assert rig.metric("handler_failures") == 0
    assert rig.metric("mqtt_qos0_lost") == 0
    assert rig.metric("mqtt_connects") == 2
