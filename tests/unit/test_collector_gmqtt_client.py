"""The gmqtt private parts ``collector/mqtt/gmqtt_client.py`` relies on are still there and still work.

These fail loudly on a gmqtt release that renamed, re-signed or re-routed them (the source would
otherwise fall back to one task and one PUBACK per message without a word, or break at run time).
"""

from __future__ import annotations

import inspect
from typing import Any

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.handler import MqttPackageHandler

from collector.mqtt.broker import Backoff
from collector.mqtt.gmqtt_client import QOS1_HOOK, Client


def make_client() -> Client:
    return Client("adapter-test", Backoff(0.1, 1.0), optimistic_acknowledgement=False)


def test_gmqtt_is_the_release_the_adapter_was_written_for() -> None:
    assert gmqtt.__version__.startswith("0.8."), "re-read collector/mqtt/gmqtt_client.py against this gmqtt"


def test_the_qos1_hook_has_the_signature_the_adapter_replaces() -> None:
    hook = getattr(MqttPackageHandler, QOS1_HOOK)
    assert list(inspect.signature(hook).parameters) == ["self", "mid", "packet", "print_topic", "properties"]
    # the parser calls it through ``self``, so replacing it on the instance takes effect
    assert f"self.{QOS1_HOOK}(mid, packet, print_topic, properties)" in inspect.getsource(
        MqttPackageHandler._handle_publish_packet
    )


def test_the_connection_parts_the_adapter_uses_exist() -> None:
    client = make_client()
    assert client.current_connection is None  # ``_connection``: set by gmqtt on connect
    for name in ("send_package", "is_closing", "close"):
        assert callable(getattr(MQTTConnection, name, None)), name


def test_a_qos1_publish_goes_to_take_and_is_not_acknowledged() -> None:
    client = make_client()
    taken: list[tuple[int, str | bytes, bytes]] = []
    assert client.take_qos1(lambda mid, topic, payload: taken.append((mid, topic, payload)))
    assert client.takes_qos1
    handler: Any = client._package_handler
    sent: list[Any] = []
    handler._send_command_with_mid = lambda *args, **kwargs: sent.append(args)  # a PUBACK would land here
    topic = b"telemetry/park-1/m0"
    # PUBLISH, QoS 1: topic length + topic, packet id 0x0102 = 258, MQTT 5 properties length 0, payload
    body = len(topic).to_bytes(2, "big") + topic + b"\x01\x02" + b"\x00" + b'{"kwh":1}'
    handler._handle_publish_packet(0x32, body)
    assert taken == [(258, "telemetry/park-1/m0", b'{"kwh":1}')]
    assert sent == []


class FakeConnection:
    def __init__(self, closing: bool = False) -> None:
        self.closing = closing
        self.writes: list[bytes] = []

    def is_closing(self) -> bool:
        return self.closing

    def send_package(self, data: bytes) -> None:
        self.writes.append(data)


def test_pubacks_of_a_group_leave_in_one_write_on_the_open_connection_only() -> None:
    client = make_client()
    open_one, old_one = FakeConnection(), FakeConnection()
    client._connection = open_one
    assert client.send_pubacks(open_one, [1, 258])
    # PUBACK: 0x40, remaining length 2, packet id big-endian (1 -> 00 01, 258 -> 01 02)
    assert open_one.writes == [b"\x40\x02\x00\x01\x40\x02\x01\x02"]
    assert not client.send_pubacks(old_one, [3])  # a connection lost meanwhile: the broker re-delivers
    assert old_one.writes == []
    open_one.closing = True
    assert not client.send_pubacks(open_one, [4])
    assert len(open_one.writes) == 1


def test_a_qos0_publish_reaches_a_plain_on_message_inline() -> None:
    """The QoS 0 grouped path relies on gmqtt calling a plain (non-coroutine) ``on_message`` right in
    the parser, without a task: the message is taken before ``_handle_publish_packet`` returns."""
    client = make_client()
    taken: list[tuple[str | bytes, bytes, int]] = []

    def on_message(_client: Any, topic: str | bytes, payload: bytes, qos: int, _properties: Any) -> None:
        taken.append((topic, payload, qos))

    client.on_message = on_message
    handler: Any = client._package_handler
    topic = b"telemetry/park-1/m0"
    # PUBLISH, QoS 0 (fixed header 0x30): topic length + topic, no packet id, properties length 0, payload
    handler._handle_publish_packet(0x30, len(topic).to_bytes(2, "big") + topic + b"\x00" + b'{"kwh":2}')
    assert taken == [("telemetry/park-1/m0", b'{"kwh":2}', 0)]


class FakeTransport:
    def __init__(self, closing: bool = False) -> None:
        self.closing = closing
        self.calls: list[str] = []

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def test_hold_reading_pauses_and_resumes_the_connection_transport() -> None:
    assert "self._transport = transport" in inspect.getsource(MQTTConnection.__init__)
    client = make_client()
    connection, transport = FakeConnection(), FakeTransport()
    connection._transport = transport  # type: ignore[attr-defined]  # gmqtt's attribute name
    client.hold_reading(connection, True)
    client.hold_reading(connection, False)
    assert transport.calls == ["pause", "resume"]
    transport.closing = True
    client.hold_reading(connection, True)  # a closed socket: nothing to hold
    client.hold_reading(None, True)
    assert transport.calls == ["pause", "resume"]
