"""The collector behind a real broker: gmqtt publisher -> broker -> MqttSource -> Collector -> MemoryBus.

Runs against mosquitto (MQTT 5 via the protocol probe, and pinned 3.1.1) and the embedded amqtt
broker (3.1.1). Each test has its own topic prefix and client id: the brokers are session-wide.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from collector import Collector, CollectorMetrics, DecodeContext, MqttError, MqttSource
from collector.mqtt import Handler, ProtocolVersion
from peakwatch.bus import MemoryBus
from peakwatch.config import Registry
from peakwatch.domain.models import DeadLetter, Reading
from tests.fixtures.mqtt import (
    acknowledged,
    mosquitto_path,
    publisher,
    running_embedded_broker,
    running_mosquitto,
    unique_prefix,
)
from tests.support import eventually, free_port

pytestmark = pytest.mark.integration

REGISTRY = Registry.from_mapping(
    {
        "sites": [
            {
                "id": "park-1",
                "name": "Park",
                "kind": "park",
                "meters": [
                    {"id": "grid-in", "carrier": "electricity", "role": "grid_import"},
                    {"id": "gas", "carrier": "natural_gas", "role": "boiler", "unit": "m3"},
                ],
            },
        ]
    }
)

_DEFAULT_BROKER_VERSION = "5" if mosquitto_path() is not None else "3.1.1"
BROKERS = [  # (fixture, protocol asked, version expected)
    pytest.param(("mqtt_url", "auto", _DEFAULT_BROKER_VERSION), id="default-broker-auto"),
    pytest.param(("mqtt_url", "3.1.1", "3.1.1"), id="default-broker-3.1.1"),
    pytest.param(("embedded_mqtt_url", "auto", "3.1.1"), id="embedded-amqtt"),
]


encode = msgspec.json.encode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Rig:
    """One collector wired to a broker, with its own prefix, client id, bus and metrics."""

    url: str
    protocol: ProtocolVersion = "auto"
    expected_version: str | None = None
    prefix: str = field(default_factory=unique_prefix)
    client_id: str = field(default_factory=lambda: f"collector-{uuid.uuid4().hex[:10]}")
    readings: list[Reading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bus = MemoryBus()
        self.metrics = CollectorMetrics(CollectorRegistry())
        self.ctx = DecodeContext(registry=REGISTRY, topic_prefix=self.prefix)
        self.collector = Collector(self.bus, self.ctx, self.metrics)

    def source(self, handler: Handler | None = None) -> MqttSource:
        handler = handler or self.collector.handle
        return MqttSource(
            self.url,
            self.client_id,
            self.ctx.topic_filter,
            1,
            handler,
            protocol=self.protocol,
            connect_timeout_s=15,
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
            metrics=self.metrics,
        )

    def topic(self, meter_id: str, site_id: str = "park-1") -> str:
        return f"{self.prefix}/{site_id}/{meter_id}"

    async def collect(self, *, readings: int = 0, dead_letters: int = 0, timeout_s: float = 15.0) -> None:
        """Poll the bus until it gave at least this many readings and dead letters in total."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self.readings) < readings or len(self.dead_letters) < dead_letters:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"bus gave {len(self.readings)}/{readings} readings, "
                    f"{len(self.dead_letters)}/{dead_letters} dead letters in {timeout_s} s"
                )
            polled = await self.bus.poll(timeout_s=min(remaining, 0.5))
            for batch in polled.batches:
                assert all(r.site_id == batch.site_id for r in batch.readings)
                self.readings.extend(batch.readings)
            self.dead_letters.extend(polled.dead_letters)


@pytest.fixture(params=BROKERS)
def rig(request: pytest.FixtureRequest) -> Rig:
    fixture_name, protocol, version = request.param
    return Rig(request.getfixturevalue(fixture_name), protocol, expected_version=version)


async def test_readings_and_dead_letters_reach_the_bus(rig: Rig) -> None:
    source = rig.source()
    await source.start()
    try:
        assert source.connected
        assert source.protocol_version == rig.expected_version
        ts = now_ms()
        async with publisher(rig.url) as pub:
            pub.publish(rig.topic("grid-in"), encode({"ts": ts, "energy_kwh": 10.5, "power_kw": 3}), qos=1)
            batch = [{"ts": ts + i, "volume_l": 250.0 * i} for i in range(3)]
            pub.publish(rig.topic("gas"), encode(batch), qos=1)
            pub.publish(rig.topic("unknown-meter"), b'{"ts": 1, "energy_kwh": 1}', qos=1)
            pub.publish(rig.topic("grid-in"), b"{not json", qos=1)
            await acknowledged(pub)
        await rig.collect(readings=4, dead_letters=2)
    finally:
        await source.stop()
    by_meter = {(r.meter_id, r.ts_ms): r for r in rig.readings}
    assert by_meter[("grid-in", ts)].energy_kwh == 10.5
    assert by_meter[("grid-in", ts)].power_kw == 3.0
    assert [by_meter[("gas", ts + i)].volume_m3 for i in range(3)] == [0.0, 0.25, 0.5]
    reasons = {(d.reason, d.meter_id) for d in rig.dead_letters}
    assert reasons == {("unknown_meter", "unknown-meter"), ("malformed_json", "grid-in")}
    quarantined = next(d for d in rig.dead_letters if d.reason == "unknown_meter")
    assert quarantined.payload == b'{"ts": 1, "energy_kwh": 1}'
    assert quarantined.source == rig.topic("unknown-meter")


async def test_messages_published_while_the_collector_is_down_arrive_after_restart(rig: Rig) -> None:
    first = rig.source()
    await first.start()
    await first.stop()
    base = now_ms()
    async with publisher(rig.url) as pub:
        for i in range(20):
            pub.publish(rig.topic("grid-in"), encode({"ts": base + i, "energy_kwh": float(i)}), qos=1)
        await acknowledged(pub)  # the broker holds them now, for a session that is offline
    second = rig.source()  # a new process would do the same: same client id, persistent session
    await second.start()
    try:
        await rig.collect(readings=20)
    finally:
        await second.stop()
    assert sorted(r.ts_ms for r in rig.readings) == [base + i for i in range(20)]


@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
async def test_a_failed_hand_over_is_not_acknowledged_and_the_broker_redelivers_it(
    mqtt_url: str, protocol: ProtocolVersion
) -> None:
    if mosquitto_path() is None:
        pytest.skip("needs mosquitto: amqtt drops unacknowledged in-flight messages on disconnect")
    rig = Rig(mqtt_url, protocol)
    deliveries: list[bytes] = []

    async def flaky(topic: str, payload: bytes, received_ms: int) -> None:
        deliveries.append(payload)
        if len(deliveries) == 1:
            raise RuntimeError("bus refused (simulated)")
        await rig.collector.handle(topic, payload, received_ms)

    source = rig.source(flaky)
    await source.start()
    try:
        ts = now_ms()
        payload = encode({"ts": ts, "energy_kwh": 1.0})
        async with publisher(rig.url) as pub:
            pub.publish(rig.topic("grid-in"), payload, qos=1)
            await acknowledged(pub)
        await rig.collect(readings=1)
    finally:
        await source.stop()
    assert deliveries == [payload, payload]
    assert [r.ts_ms for r in rig.readings] == [ts]


async def test_the_source_reconnects_when_the_broker_comes_back() -> None:
    port = free_port()
    run = running_mosquitto if mosquitto_path() is not None else running_embedded_broker
    with run(port) as url:
        rig = Rig(url)
        source = rig.source()
        await source.start()
    try:
        await eventually(lambda: not source.connected, "connection loss noticed")
        with run(port):
            await source.wait_connected(timeout_s=15)
            ts = now_ms()
            async with publisher(url) as pub:
                pub.publish(rig.topic("grid-in"), encode({"ts": ts, "energy_kwh": 2.0}), qos=1)
                await acknowledged(pub)
            await rig.collect(readings=1)
            await source.stop()
    finally:
        await source.stop()
    assert [r.ts_ms for r in rig.readings] == [ts]


async def test_start_gives_up_with_a_clear_error_when_nothing_listens() -> None:
    source = MqttSource(
        f"mqtt://127.0.0.1:{free_port()}",
        "c",
        "t/+/+",
        1,
        Rig("mqtt://x").collector.handle,
        connect_timeout_s=0.3,
        backoff_initial_s=0.05,
    )
    with pytest.raises(MqttError, match="not usable within") as info:
        await source.start()
    assert info.value.retryable
    assert not source.connected


async def test_a_broker_refusing_the_client_is_a_permanent_error() -> None:
    if mosquitto_path() is None:
        pytest.skip("needs mosquitto")
    with running_mosquitto(allow_anonymous=False) as url:
        source = Rig(url).source()
        with pytest.raises(MqttError, match="refused the connection") as info:
            await source.start()
    assert not info.value.retryable
    assert source.protocol_version == "5"  # the refusal came as an MQTT 5 answer


async def test_a_stopped_source_can_be_started_again(mqtt_url: str) -> None:
    rig = Rig(mqtt_url)
    source = rig.source()
    await source.start()
    await source.stop()
    assert not source.connected
    await source.start()
    try:
        assert source.connected
        ts = now_ms()
        async with publisher(rig.url) as pub:
            pub.publish(rig.topic("grid-in"), encode({"ts": ts, "energy_kwh": 3.0}), qos=1)
            await acknowledged(pub)
        await rig.collect(readings=1)
    finally:
        await source.stop()
    assert [r.ts_ms for r in rig.readings] == [ts]
