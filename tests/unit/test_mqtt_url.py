"""Broker URLs (peakwatch.mqtt_url), shared by the collector, the simulators and the CLI."""

from __future__ import annotations

import pytest

from peakwatch.errors import ConfigError
from peakwatch.mqtt_url import BrokerAddress


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", BrokerAddress("127.0.0.1", 1883, False)),
        ("mqtt://broker.example", BrokerAddress("broker.example", 1883, False)),
        ("tcp://broker:1884", BrokerAddress("broker", 1884, False)),
        ("mqtts://broker", BrokerAddress("broker", 8883, True)),
        ("ssl://broker:9999", BrokerAddress("broker", 9999, True)),
        (
            "mqtt://collector:s%40cret@broker:1883",
            BrokerAddress("broker", 1883, False, "collector", "s@cret"),
        ),
        ("mqtt://us%40er:p%3Ass@h:1", BrokerAddress("h", 1, False, "us@er", "p:ss")),
        ("mqtt://collector@broker", BrokerAddress("broker", 1883, False, "collector", None)),
        ("mqtt://[::1]:1884", BrokerAddress("::1", 1884, False)),
    ],
)
def test_broker_urls(url: str, expected: BrokerAddress) -> None:
    assert BrokerAddress.parse(url) == expected


@pytest.mark.parametrize(
    "url", ["http://broker:1883", "broker:1883", "mqtt://", "mqtt://broker:port", "mqtt://broker:70000"]
)
def test_bad_broker_urls_are_refused_with_the_url_named(url: str) -> None:
    with pytest.raises(ConfigError, match="MQTT url"):
        BrokerAddress.parse(url)


def test_the_password_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as info:
        BrokerAddress.parse("mqtt://user:topsecret@broker:notaport")
    assert "topsecret" not in str(info.value)
    assert "user:***@broker" in str(info.value)
