"""The broker side of the MQTT edge: which broker (``parse_broker_url``), which protocol version it
speaks (``probe_protocol``), what to subscribe (``shared_topic_filter``), how errors are told
(``MqttError``) and how long to wait before trying again (``Backoff``). No gmqtt here: the probe
speaks raw MQTT, because gmqtt's own fall-back loses amqtt's refusal (see the package docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from typing import Final, Literal

from peakwatch.config import check_mqtt_shared_group
from peakwatch.errors import ConfigError, MqttError
from peakwatch.mqtt_url import BrokerAddress

MQTTv311: Final = 4  # protocol levels as gmqtt's ``connect(version=...)`` takes them
MQTTv50: Final = 5

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


async def probe_protocol(address: BrokerAddress, timeout_s: float = 5.0) -> int:
    """``MQTTv50`` if the broker accepts an MQTT 5 CONNECT, else ``MQTTv311``.

    The probe connects with a random client id and a clean start (so it leaves no session behind), and
    waits for the broker to close a refused connection before closing its own side (amqtt logs an
    error if the client hangs up first). Raises ``OSError`` if the broker is unreachable.
    """
    client_id = f"peakwatch-probe-{secrets.token_hex(6)}".encode()
    # CONNECT: protocol "MQTT" level 5, clean start, keep-alive 10 s, no properties, client id
    body = b"\x00\x04MQTT\x05\x02\x00\x0a\x00" + len(client_id).to_bytes(2, "big") + client_id
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(address.host, address.port, ssl=address.tls or None)
        try:
            writer.write(bytes([0x10, len(body)]) + body)
            await writer.drain()
            try:
                packet_type = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:  # remaining length: a variable byte integer
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80 or shift > 21:
                        break
                connack = await reader.readexactly(length)
            except asyncio.IncompleteReadError:  # closed without an answer: not MQTT 5
                return MQTTv311
            reason = connack[1] if packet_type == 0x20 and len(connack) >= 2 else 0x01
            if reason == 0:
                with contextlib.suppress(OSError):
                    writer.write(b"\xe0\x00")  # DISCONNECT, normal
                    await writer.drain()
                return MQTTv50
            with contextlib.suppress(OSError):
                await reader.read()  # a refused client waits for the broker to close first
            # 3.1.1 "unacceptable protocol version", 5.0 "unsupported protocol version"; any other
            # refusal (e.g. credentials: the probe sends none) came as an MQTT 5 answer
            return MQTTv311 if reason in (0x01, 0x84) else MQTTv50
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


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
