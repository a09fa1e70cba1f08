"""Every reach into gmqtt's private parts, in one place: gmqtt's client with the hooks the collector
needs and gmqtt does not offer.

Why. The collector may acknowledge a QoS 1 message only once the bus holds it. gmqtt's public way to
defer a PUBACK is ``optimistic_acknowledgement=False`` with a coroutine ``on_message``: gmqtt then runs
one asyncio task per message (``run_coroutine_or_function`` -> ``ensure_future``) and writes one PUBACK
per message when that task ends (``MqttPackageHandler.__handle_publish_callback`` -> ``_send_puback``).
That keeps the guarantee, and ``MqttSource`` uses it for plain handlers, but at tens of thousands of
messages per second the task and the write per message cost more than decoding the message
(``bench.mqtt_ingest``, docs/operations.md: 20-25k against 107-138k msg/s; measured again for issue
#16 on a shared 2-core machine: 10-22k against 42-98k). gmqtt has no public API to acknowledge later
or in bulk (wialon/gmqtt#113 answers "set optimistic_acknowledgement=False"; #115, not acknowledging
at all, is open). So:

* ``take_qos1`` replaces the package handler's ``_handle_qos_1_publish_packet(mid, packet,
  print_topic, properties)``, which gmqtt's parser (``_handle_publish_packet``) calls for every QoS 1
  PUBLISH, with a plain function: no task, no PUBACK;
* ``send_pubacks`` writes the PUBACKs of a group in one ``send_package`` on the client's private
  ``_connection``, and only if that connection is still the open one (a PUBACK on a new connection
  would acknowledge a packet id the broker gave to another message);
* ``drop_connection`` closes ``_connection`` as a network failure would;
* ``hold_reading`` pauses (and resumes) reading the socket of ``_connection`` (its ``_transport``):
  QoS 0 has no in-flight window, so when the bus falls behind TCP is what holds the broker back.

Tied to gmqtt 0.8 (pyproject: ``gmqtt>=0.8,<0.9``; read in 0.8.0's ``gmqtt/mqtt/handler.py`` and
``gmqtt/client.py``). ``tests/unit/test_collector_gmqtt_client.py`` fails when any of these parts
disappears or changes signature; at run time a gmqtt without the hook falls back to the public path
(``take_qos1`` returns False), slower but correct.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import gmqtt

from collector.mqtt.broker import Backoff

PUBACK: Final = b"\x40\x02"  # fixed header of a PUBACK without reason code (success, 3.1.1 and 5)
QOS1_HOOK: Final = "_handle_qos_1_publish_packet"
"""gmqtt's method (on ``Client._package_handler``) that receives each parsed QoS 1 PUBLISH."""


class Client(gmqtt.Client):  # type: ignore[misc]  # gmqtt ships no type hints
    """gmqtt's client with an exponential reconnect delay instead of its fixed 6 s, and the grouped
    acknowledgement hooks (see the module docstring)."""

    def __init__(self, client_id: str, backoff: Backoff, **kwargs: Any) -> None:
        super().__init__(client_id, **kwargs)
        self.peakwatch_backoff = backoff
        self.takes_qos1 = False

    def take_qos1(self, take: Callable[[int, str | bytes, bytes], None]) -> bool:
        """Route QoS 1 PUBLISHes to ``take(packet_id, topic, payload)`` instead of ``on_message``:
        nothing is acknowledged for them unless the caller does it (``send_pubacks``). False when
        this gmqtt has no such hook (the caller then keeps the ``on_message`` path)."""
        handler: Any = getattr(self, "_package_handler", self)  # gmqtt >= 0.7: a separate object
        if not callable(getattr(handler, QOS1_HOOK, None)):
            return False

        def qos1(mid: int, packet: bytes, print_topic: str | bytes, properties: Any) -> None:
            take(mid, print_topic, packet)

        setattr(handler, QOS1_HOOK, qos1)
        self.takes_qos1 = True
        return True

    @property
    def current_connection(self) -> Any:
        return self._connection

    def send_pubacks(self, connection: Any, packet_ids: list[int]) -> bool:
        """PUBACK (success) for ``packet_ids`` in one write, if ``connection`` is still the open one."""
        if connection is None or connection is not self._connection or connection.is_closing():
            return False
        connection.send_package(b"".join([PUBACK + mid.to_bytes(2, "big") for mid in packet_ids]))
        return True

    def hold_reading(self, connection: Any, hold: bool) -> None:
        """Pause (``hold``) or resume reading ``connection``'s socket; nothing if it is closed."""
        transport = getattr(connection, "_transport", None)
        if transport is None or transport.is_closing():
            return
        if hold:
            transport.pause_reading()
        else:
            transport.resume_reading()

    async def reconnect(self, delay: bool = False) -> None:
        if delay:
            self.reconnect_delay = self.peakwatch_backoff.next_delay_s()
        await super().reconnect(delay=delay)

    async def drop_connection(self) -> None:
        """Close the socket as a network failure would; gmqtt then reconnects on its own. (Calling
        ``reconnect`` directly races with the reconnect gmqtt starts when it sees the old socket
        close, and can leave a second, orphaned connection under the same client id.)"""
        connection = self._connection
        if connection is not None and not connection.is_closing():
            await connection.close()
