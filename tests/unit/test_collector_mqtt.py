"""The parts of the MQTT edge that need no broker: URLs, back-off, argument checks."""

from __future__ import annotations

import pytest

from collector.mqtt import MqttSource, parse_broker_url
from collector.mqtt.broker import Backoff
from peakwatch.errors import MqttError


async def _noop(topic: str, payload: bytes, received_ms: int) -> None:
    return None


@pytest.mark.parametrize("url", ["http://broker:1883", "broker:1883", "mqtt://", "mqtt://broker:70000"])
def test_bad_broker_urls_are_refused_for_good(url: str) -> None:
    with pytest.raises(MqttError, match="MQTT url") as info:
        parse_broker_url(url)
    assert not info.value.retryable


def test_backoff_doubles_up_to_the_maximum_with_jitter_and_resets() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next_delay_s() for _ in range(6)]
    for delay, nominal in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2
    backoff.reset()
    assert 0.08 <= backoff.next_delay_s() <= 0.12


@pytest.mark.parametrize(
    ("qos", "receive_maximum", "message"),
    [
        (2, 100, "qos must be 0 or 1"),
        (1, 0, "receive_maximum must be 1..65535"),
        (1, 70000, "receive_maximum must be 1..65535"),
    ],
)
def test_arguments_are_checked(qos: int, receive_maximum: int, message: str) -> None:
    with pytest.raises(MqttError, match=message):
        MqttSource("mqtt://localhost", "c", "t/+/+", qos, _noop, receive_maximum=receive_maximum)


def test_a_new_source_is_not_connected_and_does_not_know_the_protocol_yet() -> None:
    source = MqttSource("mqtt://localhost", "c", "t/+/+", 1, _noop)
    assert not source.connected
    assert source.protocol_version is None
    pinned = MqttSource("mqtt://localhost", "c", "t/+/+", 1, _noop, protocol="3.1.1")
    assert pinned.protocol_version == "3.1.1"
