"""Which MQTT protocol version a broker speaks, asked with one throw-away raw MQTT 5 CONNECT.

Why not gmqtt's own fall-back: amqtt (the embedded broker, 3.1.1 only) closes the socket right after
refusing, and gmqtt then loses the refusal and retries MQTT 5 forever; where it does fall back, it
logs a CONNACK warning a newcomer takes for a fault, and reconnects after a delay. The collector and
the simulators' publisher both ask first and connect with the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Final

from peakwatch.mqtt_url import BrokerAddress

MQTTv311: Final = 4  # protocol levels as gmqtt's ``connect(version=...)`` takes them
MQTTv50: Final = 5


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
