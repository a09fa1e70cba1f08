"""The embedded amqtt broker (peakwatch.embedded.mqtt): what it guarantees, measured with plain gmqtt
clients. docs/ingest.md ("The embedded broker") states the same facts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import gmqtt
import pytest

from collector.mqtt import MQTTv311, probe_protocol
from peakwatch.embedded.mqtt import EmbeddedBroker
from peakwatch.errors import ConfigError
from peakwatch.mqtt_url import BrokerAddress
from tests.fixtures.mqtt import acknowledged, publisher, unique_prefix
from tests.support import free_port

pytestmark = pytest.mark.integration

Received = asyncio.Queue[bytes]


def _host_port(url: str) -> tuple[str, int]:
    address = BrokerAddress.parse(url)
    return address.host, address.port


async def _subscriber(
    url: str,
    client_id: str,
    topic: str,
    received: Received,
    *,
    clean_session: bool,
    on_message: Callable[..., Awaitable[int]] | None = None,
    optimistic: bool = True,
) -> gmqtt.Client:
    """A 3.1.1 gmqtt subscriber putting every payload into ``received``; returns once subscribed."""
    subscribed = asyncio.Event()

    async def store(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        received.put_nowait(payload)
        return 0

    client = gmqtt.Client(client_id, clean_session=clean_session, optimistic_acknowledgement=optimistic)
    client.on_message = on_message or store
    client.on_subscribe = lambda *args: subscribed.set()
    host, port = _host_port(url)
    await client.connect(host, port, version=MQTTv311)
    client.subscribe(topic, qos=1)
    await asyncio.wait_for(subscribed.wait(), 10)
    return client


async def _next(received: Received) -> bytes:
    return await asyncio.wait_for(received.get(), 10)


async def test_the_probe_finds_mqtt_3_1_1(embedded_mqtt_url: str) -> None:
    assert await probe_protocol(BrokerAddress.parse(embedded_mqtt_url)) == MQTTv311


async def test_a_persistent_session_gets_the_qos1_messages_published_while_it_was_away(
    embedded_mqtt_url: str,
) -> None:
    topic = f"{unique_prefix()}/site/meter"
    client_id = f"persistent-{uuid.uuid4().hex[:8]}"
    received: Received = asyncio.Queue()
    away = await _subscriber(embedded_mqtt_url, client_id, topic, received, clean_session=False)
    await away.disconnect()
    async with publisher(embedded_mqtt_url) as pub:
        for i in range(5):
            pub.publish(topic, f"m{i}".encode(), qos=1)
        await acknowledged(pub)
    back = await _subscriber(embedded_mqtt_url, client_id, topic, received, clean_session=False)
    try:
        assert [await _next(received) for _ in range(5)] == [f"m{i}".encode() for i in range(5)]
    finally:
        await back.disconnect()


async def test_a_clean_session_gets_nothing_from_while_it_was_away(embedded_mqtt_url: str) -> None:
    topic = f"{unique_prefix()}/site/meter"
    client_id = f"clean-{uuid.uuid4().hex[:8]}"
    received: Received = asyncio.Queue()
    away = await _subscriber(embedded_mqtt_url, client_id, topic, received, clean_session=True)
    await away.disconnect()
    async with publisher(embedded_mqtt_url) as pub:
        pub.publish(topic, b"while away", qos=1)
        await acknowledged(pub)
        back = await _subscriber(embedded_mqtt_url, client_id, topic, received, clean_session=True)
        try:
            pub.publish(topic, b"marker", qos=1)  # anything queued for us would arrive before this
            assert await _next(received) == b"marker"
        finally:
            await back.disconnect()


async def test_known_limit_an_unacknowledged_in_flight_message_is_dropped_on_disconnect(
    embedded_mqtt_url: str,
) -> None:
    """amqtt 0.12 forgets a delivered but unacknowledged QoS 1 message when the subscriber goes away
    (mosquitto re-sends it, see test_collector_mqtt). If this starts failing, amqtt fixed it: update
    docs/ingest.md and peakwatch/embedded/mqtt.py."""
    topic = f"{unique_prefix()}/site/meter"
    client_id = f"inflight-{uuid.uuid4().hex[:8]}"
    received: Received = asyncio.Queue()
    never = asyncio.Event()

    async def hold(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        received.put_nowait(payload)
        await never.wait()  # never acknowledged
        return 0

    holding = await _subscriber(
        embedded_mqtt_url, client_id, topic, received, clean_session=False, on_message=hold, optimistic=False
    )
    async with publisher(embedded_mqtt_url) as pub:
        pub.publish(topic, b"held", qos=1)
        assert await _next(received) == b"held"
        await holding.disconnect()
        back = await _subscriber(embedded_mqtt_url, client_id, topic, received, clean_session=False)
        try:
            pub.publish(topic, b"marker", qos=1)  # a re-sent "held" would arrive before this
            assert await _next(received) == b"marker"
        finally:
            await back.disconnect()
    never.set()  # let the held handler end (its PUBACK goes nowhere: that connection is closed)


async def test_runs_on_the_callers_loop_and_reports_a_busy_port_clearly() -> None:
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    await broker.start()
    try:
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        with pytest.raises(ConfigError, match=f"cannot start the embedded MQTT broker on 127.0.0.1:{port}"):
            await EmbeddedBroker("127.0.0.1", port).start()
        topic = f"{unique_prefix()}/site/meter"
        received: Received = asyncio.Queue()
        client_id = f"local-{uuid.uuid4().hex[:8]}"
        sub = await _subscriber(broker.url, client_id, topic, received, clean_session=True)
        async with publisher(broker.url) as pub:
            pub.publish(topic, b"hello", qos=1)
            assert await _next(received) == b"hello"
        await sub.disconnect()
    finally:
        await broker.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_refuses_to_listen_beyond_loopback(host: str) -> None:
    with pytest.raises(ConfigError, match="only listens on loopback"):
        EmbeddedBroker(host, 1883)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_accepts_loopback_hosts(host: str) -> None:
    assert EmbeddedBroker(host, 1883).host == host
