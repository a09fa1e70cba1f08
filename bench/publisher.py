"""Load generator of the end-to-end bench: a minimal MQTT 3.1.1 QoS 1 (or 0) publisher, in its own process.

    python -m bench.publisher --url mqtt://127.0.0.1:1883 --sites 10 --meters 20 --steps 500 \
        --batch 1 --part 0/1 --start-ms 1700000000000

Why not the simulators' gmqtt publisher: on a 2-core machine the load generator shares the CPU with
the system under test (broker, collector, processor, PostgreSQL), and a Python MQTT client spends
about as much CPU per message as the collector does. So every message (topic, payload, packet id) is
built *before* the clock starts, in the simulators' payload format, and the timed part only writes
pre-encoded PUBLISH packets and counts PUBACKs. It is still a real QoS 1 client: each message has a
packet id, stays "in flight" until the broker acknowledges it, at most ``--window`` are in flight,
and only acknowledged messages count as published.

With ``--qos 0`` the PUBLISH packets carry no packet id and nothing is acknowledged: they are written
as fast as TCP flow control lets them (or paced with ``--rate``), then a PINGREQ follows. The broker
handles one connection's packets in order, so its PINGRESP proves it has read every PUBLISH before
it: at QoS 0, "published" (``readings_acked``, ``messages_acked``) is everything sent once the
PINGRESP arrived (nothing if it did not within two minutes), and ``last_ack_s`` is when it did.

Readings: the synthetic fleet of ``simulators.fleet`` (sites ``load-site-0001`` ..., meters
``load-0001`` ...); each meter reports a cumulative kWh register and its power once per second of
event time (``--step-ms``), so the processor closes 1-minute windows and computes KPIs as it goes.
With ``--batch B`` a message carries B consecutive readings of one meter (a JSON array).

With ``--rate R`` the publisher is paced: at most R readings per second, sent in slices of a few
milliseconds (a steady background load for latency benches); without it, as fast as the window allows.

Protocol with the parent (stdout JSON lines, stdin): ``{"ev": "ready", ...}`` once the messages are
built; the parent writes a line to start; ``{"ev": "done", ...}`` at the end with what was
acknowledged and when (``time.time()``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from simulators.fleet import FleetSpec, site_infos
from simulators.synthetic import synthetic_meter_ids

_CONNACK = 0x20
_PUBACK = 0x40
_PINGRESP = 0xD0
_MAX_ID = 65535


@dataclass(frozen=True, slots=True)
class Plan:
    """Which readings one publisher sends."""

    sites: int
    meters: int
    steps: int
    """Readings per meter."""
    batch: int
    start_ms: int
    step_ms: int = 1000
    part: int = 0
    parts: int = 1
    topic_prefix: str = "telemetry"
    seed: int = 0

    def site_ids(self) -> list[str]:
        ids = [info.id for info in site_infos(FleetSpec(sites=self.sites, synthetic_meters=self.meters))]
        return ids[self.part :: self.parts]


def build_messages(plan: Plan, qos: int = 1) -> tuple[list[bytes], list[int]]:
    """PUBLISH packets (QoS 1: packet ids 1..65535 in turn; QoS 0: none) and the readings each carries.

    Order: event time first, then site, then meter, as a fleet reporting in real time would send
    them; with batches, a meter's message leaves when its batch is full.
    """
    meters = synthetic_meter_ids(plan.meters)
    topics: list[tuple[bytes, list[float]]] = []
    for site_id in plan.site_ids():
        for meter_id in meters:
            rng = random.Random(f"{plan.seed}/{site_id}/{meter_id}")
            base_kw = rng.uniform(5.0, 50.0)
            register = round(rng.uniform(100.0, 50_000.0), 2)
            topics.append((f"{plan.topic_prefix}/{site_id}/{meter_id}".encode(), [base_kw, register]))
    noise = random.Random(plan.seed)
    gauss = noise.gauss
    hours = plan.step_ms / 3_600_000
    packets: list[bytes] = []
    counts: list[int] = []
    for first in range(0, plan.steps, plan.batch):
        last = min(first + plan.batch, plan.steps)
        for topic, state in topics:
            objects: list[str] = []
            for step in range(first, last):
                kw = max(state[0] * (1.0 + 0.02 * gauss(0.0, 1.0)), 0.0)
                if step:
                    state[1] += kw * hours
                ts = plan.start_ms + step * plan.step_ms
                objects.append(f'{{"ts":{ts},"energy_kwh":{state[1]:.4f},"power_kw":{kw:.4f}}}')
            payload = (objects[0] if len(objects) == 1 else "[" + ",".join(objects) + "]").encode()
            packets.append(publish_packet(topic, payload, len(packets) % _MAX_ID + 1 if qos else 0))
            counts.append(len(objects))
    return packets, counts


def publish_packet(topic: bytes, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH; with ``packet_id`` 0 a QoS 0 one (which has no packet id)."""
    if not packet_id:
        body = len(topic).to_bytes(2, "big") + topic + payload
        return bytes([0x30]) + _varint(len(body)) + body
    body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big") + payload
    return bytes([0x32]) + _varint(len(body)) + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    # protocol "MQTT" level 4, clean session, keep-alive 0 (off: the run is short and busy)
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid
    return b"\x10" + _varint(len(body)) + body


class _Protocol(asyncio.Protocol):
    """Counts PUBACKs; tracks which packet ids are in flight and the readings they carry."""

    def __init__(self, counts: Sequence[int]) -> None:
        self.counts = counts
        self.transport: asyncio.Transport | None = None
        self.connack = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.pingresp = asyncio.get_running_loop().create_future()
        self.space = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.inflight_index = [-1] * (_MAX_ID + 1)
        self.inflight = 0
        self.acked = 0
        self.acked_readings = 0
        self.last_ack_s = 0.0
        self.limit = 1
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(f"broker closed the connection: {exc}"))
        if not self.closed.done():
            self.closed.set_result(exc)
        if not self.pingresp.done():
            self.pingresp.set_result(0.0)  # no PINGRESP
        self.space.set()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        packet_ids, connack, pings, used = read_packets(buf)
        self._buffer = buf[used:]
        if pings and not self.pingresp.done():
            self.pingresp.set_result(time.time())
        if connack is not None:
            if connack != 0:
                self.connack.set_exception(ConnectionError(f"CONNACK return code {connack}"))
            else:
                self.connack.set_result(None)
        index, counts = self.inflight_index, self.counts
        acked = readings = 0
        for packet_id in packet_ids:
            i = index[packet_id]
            if i >= 0:
                index[packet_id] = -1
                acked += 1
                readings += counts[i]
        if acked:
            self.acked += acked
            self.acked_readings += readings
            self.inflight -= acked
            self.last_ack_s = time.time()
            if self.inflight < self.limit:
                self.space.set()


def read_acks(buf: bytes) -> tuple[list[int], int | None, int]:
    """The packet ids of the PUBACKs in ``buf``, the return code of its CONNACK (``None``: none) and
    how many bytes they took; the rest is a packet not yet complete, for the next read."""
    packet_ids, connack, _, used = read_packets(buf)
    return packet_ids, connack, used


def read_packets(buf: bytes) -> tuple[list[int], int | None, int, int]:
    """``read_acks`` and the number of PINGRESPs (the QoS 0 publisher's proof that the broker read
    everything it sent). Every packet a publisher receives is short (one length byte), which keeps
    this loop cheap per PUBACK."""
    packet_ids: list[int] = []
    connack: int | None = None
    pings = 0
    pos, end = 0, len(buf)
    while pos + 2 <= end:
        kind, length = buf[pos] & 0xF0, buf[pos + 1]
        if pos + 2 + length > end:
            break
        if kind == _PUBACK:
            packet_ids.append((buf[pos + 2] << 8) | buf[pos + 3])
        elif kind == _CONNACK:
            connack = buf[pos + 3]
        elif kind == _PINGRESP:
            pings += 1
        pos += 2 + length
    return packet_ids, connack, pings, pos


PACE_SLICE_S = 0.005
"""Paced mode sends what is due every slice: 50 readings at 10,000/s, close to a steady stream."""


async def publish(
    url: str,
    packets: list[bytes],
    counts: list[int],
    window: int,
    chunk: int = 256,
    rate: float = 0.0,
    qos: int = 1,
) -> dict[str, float | int | bool]:
    """Send ``packets`` with at most ``window`` unacknowledged (QoS 1; at QoS 0 as TCP flow control
    allows, then a PINGREQ) and, when ``rate`` > 0, no more readings than ``rate`` per second since
    the first publish; returns the timing and the counts."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(
        lambda: _Protocol(counts), parts.hostname or "127.0.0.1", parts.port or 1883
    )
    transport.write(connect_packet(f"bench-pub-{random.getrandbits(40):010x}"))
    await asyncio.wait_for(proto.connack, 10)
    if qos == 0:
        return await _publish_qos0(transport, proto, packets, counts, chunk, rate)
    proto.limit = window
    index = proto.inflight_index
    total = len(packets)
    first_s = time.time()
    start = time.monotonic()
    sent_readings = 0
    i = 0
    while i < total and not proto.closed.done():
        if not proto.writable.is_set():
            await proto.writable.wait()
            continue
        room = min(window - proto.inflight, chunk, total - i)
        if room <= 0:
            proto.space.clear()
            await proto.space.wait()
            continue
        if rate > 0:
            room = _due(counts, i, room, rate * (time.monotonic() - start) - sent_readings)
            if not room:
                await asyncio.sleep(PACE_SLICE_S)
                continue
        n = 0
        for k in range(i, i + room):
            packet_id = k % _MAX_ID + 1
            if index[packet_id] >= 0:  # still unacknowledged 65535 messages later
                break
            index[packet_id] = k
            n += 1
        if n:
            transport.write(b"".join(packets[i : i + n]))
            proto.inflight += n
            if rate > 0:
                sent_readings += sum(counts[i : i + n])
            i += n
            await asyncio.sleep(0)  # let PUBACKs in even while the window never fills
        else:
            await asyncio.sleep(0.001)
    sent_s = time.time()
    deadline = loop.time() + 120
    proto.limit = 1
    while proto.inflight > 0 and not proto.closed.done() and loop.time() < deadline:
        proto.space.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proto.space.wait(), 1.0)
    if not proto.closed.done():
        transport.write(b"\xe0\x00")  # DISCONNECT
        transport.close()
    return {
        "first_publish_s": first_s,
        "last_write_s": sent_s,
        "last_ack_s": proto.last_ack_s,
        "messages_sent": i,
        "messages_acked": proto.acked,
        "readings_acked": proto.acked_readings,
        "readings_sent": sum(counts[:i]),
        "unacknowledged": proto.inflight,
    }


def _due(counts: Sequence[int], i: int, room: int, due: float) -> int:
    """How many of the next ``room`` messages (from ``i``) fit in ``due`` readings (paced mode)."""
    allowed = 0
    while allowed < room and counts[i + allowed] <= due:
        due -= counts[i + allowed]
        allowed += 1
    return allowed


async def _publish_qos0(
    transport: asyncio.Transport,
    proto: _Protocol,
    packets: list[bytes],
    counts: list[int],
    chunk: int,
    rate: float,
) -> dict[str, float | int | bool]:
    """QoS 0: write every packet (flow control and ``rate`` permitting), then PINGREQ; what was sent
    counts as published once the PINGRESP is back (the broker read it all: it works in order)."""
    total = len(packets)
    first_s = time.time()
    start = time.monotonic()
    sent_readings = 0
    i = 0
    while i < total and not proto.closed.done():
        if not proto.writable.is_set():
            await proto.writable.wait()
            continue
        room = min(chunk, total - i)
        if rate > 0:
            room = _due(counts, i, room, rate * (time.monotonic() - start) - sent_readings)
            if not room:
                await asyncio.sleep(PACE_SLICE_S)
                continue
            sent_readings += sum(counts[i : i + room])
        transport.write(b"".join(packets[i : i + room]))
        i += room
        await asyncio.sleep(0)  # let pause_writing in
    sent_s = time.time()
    pong_s = 0.0
    if not proto.closed.done():
        transport.write(b"\xc0\x00")  # PINGREQ
        with contextlib.suppress(TimeoutError):
            pong_s = await asyncio.wait_for(proto.pingresp, 120)
    if not proto.closed.done():
        transport.write(b"\xe0\x00")  # DISCONNECT
        transport.close()
    readings = sum(counts[:i])
    return {
        "first_publish_s": first_s,
        "last_write_s": sent_s,
        "last_ack_s": pong_s,
        "messages_sent": i,
        "messages_acked": i if pong_s else 0,
        "readings_acked": readings if pong_s else 0,
        "readings_sent": readings,
        "unacknowledged": 0 if pong_s else i,
        "qos": 0,
    }


async def _main(args: argparse.Namespace) -> None:
    part, parts = (int(x) for x in args.part.split("/"))
    plan = Plan(
        sites=args.sites,
        meters=args.meters,
        steps=args.steps,
        batch=args.batch,
        start_ms=args.start_ms,
        step_ms=args.step_ms,
        part=part,
        parts=parts,
        topic_prefix=args.topic_prefix,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    packets, counts = build_messages(plan, args.qos)
    ready = {
        "ev": "ready",
        "messages": len(packets),
        "readings": sum(counts),
        "bytes": sum(map(len, packets)),
        "build_s": time.perf_counter() - t0,
    }
    print(json.dumps(ready), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    cpu0 = time.process_time()
    result = await publish(args.url, packets, counts, args.window, rate=args.rate, qos=args.qos)
    print(json.dumps({"ev": "done", **result, "cpu_s": time.process_time() - cpu0}), flush=True)
    await asyncio.to_thread(sys.stdin.read)  # stay until the parent measured our CPU (EOF)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--sites", type=int, required=True)
    parser.add_argument("--meters", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True, help="readings per meter")
    parser.add_argument("--batch", type=int, default=1, help="readings per message")
    parser.add_argument("--start-ms", type=int, required=True, help="event time of the first reading")
    parser.add_argument("--step-ms", type=int, default=1000)
    parser.add_argument("--part", default="0/1", help="i/n: publish every n-th site starting at i")
    parser.add_argument("--window", type=int, default=4000, help="QoS 1 messages in flight (max)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="readings/s, paced (default 0: as fast as possible)"
    )
    parser.add_argument(
        "--qos", type=int, choices=(0, 1), default=1, help="0: no acks; published once a PINGRESP is back"
    )
    parser.add_argument("--topic-prefix", default="telemetry")
    parser.add_argument("--seed", type=int, default=0)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
