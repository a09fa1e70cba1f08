"""The broker side of the MQTT edge: which broker (``parse_broker_url``), which protocol version it
speaks (``probe_protocol``), what to subscribe (``shared_topic_filter``), how errors are told
(``MqttError``) and how long to wait before trying again (``Backoff``). The probe lives in the core
(``peakwatch/mqtt_probe.py``), since the simulators' publisher asks the broker the same question.
"""

from __future__ import annotations

import random
from typing import Literal

from peakwatch.config import check_mqtt_shared_group
from peakwatch.errors import ConfigError, MqttError
from peakwatch.mqtt_probe import MQTTv50, MQTTv311, probe_protocol
from peakwatch.mqtt_url import BrokerAddress

__all__ = [
    "DEFAULT_SESSION_EXPIRY_S",
    "Backoff",
    "MQTTv50",
    "MQTTv311",
    "ProtocolVersion",
    "parse_broker_url",
    "probe_protocol",
    "shared_topic_filter",
]

ProtocolVersion = Literal["auto", "3.1.1"]

DEFAULT_SESSION_EXPIRY_S = 7 * 86_400
"""How long an MQTT 5 broker keeps the collector's session (and queues its messages) while it is
away. MQTT 3.1.1 has no such field: the broker's own setting applies (mosquitto
``persistent_client_expiration``, never by default)."""


def shared_topic_filter(topic_filter: str, group: str | None) -> str:
    """What to subscribe: ``$share/<group>/<topic_filter>`` for a group, else ``topic_filter``. A
    group that cannot be a share name is a non-retryable ``MqttError``."""
    if group is None:
        return topic_filter
    try:
        check_mqtt_shared_group(group)
    except ConfigError as exc:
        raise MqttError(str(exc), retryable=False) from exc
    return f"$share/{group}/{topic_filter}"


def parse_broker_url(url: str) -> BrokerAddress:
    """The broker address, with a bad URL reported as a non-retryable ``MqttError``."""
    try:
        return BrokerAddress.parse(url)
    except ConfigError as exc:
        raise MqttError(str(exc), retryable=False) from exc


class Backoff:
    """Exponential back-off with jitter (so a fleet of collectors does not reconnect in step), reset by
    every success."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._next_s = initial_s
        self._jitter = random.Random()  # noqa: S311 - spreading reconnects, not cryptography

    def reset(self) -> None:
        self._next_s = self._initial_s

    def next_delay_s(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self._max_s)
        return delay * self._jitter.uniform(0.8, 1.2)
