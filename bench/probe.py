"""The bench's own ends of an alert, in the bench process: the device that publishes a trial's readings
(``Probe``, a minimal MQTT 3.1.1 QoS 1 client), the webhook's far end that notes when the notification
arrived (``Receiver``, an h11 server), and one trial between them (``run_trial``). Both ends read one
monotonic clock, so their difference is the latency ``bench.notify_latency`` reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import h11

from bench.publisher import connect_packet, publish_packet, read_acks

RULE: Final = "probe_pue"
"""The rule whose firing notifications the receiver times; any other alert is only counted."""
RECEIVER_PATH: Final = "/probe"
LOST_AFTER_S: Final = 10.0
"""A trial whose notification has not come by then is lost."""
WINDOW_MS: Final = 60_000
READING_EVERY_MS: Final = 10_000
FACILITY_KWH_PER_STEP: Final = 2.0
IT_KWH_PER_STEP: Final = 1.0
"""PUE 2.0: far enough above the 1.5 line that no rounding decides a trial."""


# ---------------------------------------------------------------------------------------- receiver


class Receiver:
    """The webhook's far end: an HTTP/1.1 server (h11) that answers 200 and notes, per probe site, when
    the first firing notification naming it was complete (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.posts = 0
        self.other_alerts = 0
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{RECEIVER_PATH}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def arrival(self, site: str) -> asyncio.Future[float]:
        """Resolves with the arrival time of the first notification about ``site`` (at once if it came)."""
        future = self._waiters.get(site)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            if site in self.arrivals:
                future.set_result(self.arrivals[site])
            self._waiters[site] = future
        return future

    def _received(self, body: bytes, at: float) -> None:
        self.posts += 1
        try:
            payload = json.loads(body)
            alerts = payload["alerts"]
        except (ValueError, KeyError, TypeError):
            return
        for alert in alerts:
            labels = alert.get("labels", {})
            site = labels.get("site", "")
            if labels.get("alertname") != RULE or alert.get("status") != "firing":
                self.other_alerts += 1
                continue
            if site in self.arrivals:
                continue
            self.arrivals[site] = at
            future = self._waiters.get(site)
            if future is not None and not future.done():
                future.set_result(at)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER)
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    body.clear()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    self._received(bytes(body), time.monotonic())
                    answer = b'{"status": "ok"}'
                    headers = [("content-type", "application/json"), ("content-length", str(len(answer)))]
                    writer.write(
                        (conn.send(h11.Response(status_code=200, headers=headers)) or b"")
                        + (conn.send(h11.Data(data=answer)) or b"")
                        + (conn.send(h11.EndOfMessage()) or b"")
                    )
                    await writer.drain()
                    conn.start_next_cycle()
                else:  # ConnectionClosed, PAUSED after a client's close
                    break
        except (h11.ProtocolError, ConnectionError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# ---------------------------------------------------------------------------------------- probe


class _ProbeProtocol(asyncio.Protocol):
    """MQTT 3.1.1, QoS 1: resolves one future per packet id when its PUBACK comes."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[None] = loop.create_future()
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"broker closed the probe's connection: {exc}")
        for future in [self.connack, *self.acks.values()]:
            if not future.done():
                future.set_exception(error)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data
        packet_ids, connack, used = read_acks(buf)
        self._buffer = buf[used:]
        if connack is not None and not self.connack.done():
            if connack:
                self.connack.set_exception(ConnectionError(f"CONNACK return code {connack}"))
            else:
                self.connack.set_result(None)
        for packet_id in packet_ids:
            future = self.acks.pop(packet_id, None)
            if future is not None and not future.done():
                future.set_result(None)


class Probe:
    """The bench's own device: publishes a trial's readings (QoS 1) on one connection."""

    def __init__(self) -> None:
        self._proto: _ProbeProtocol | None = None
        self._next_id = 0

    async def connect(self, url: str) -> None:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            _ProbeProtocol, parts.hostname or "127.0.0.1", parts.port or 1883
        )
        assert proto.transport is not None
        proto.transport.write(connect_packet(f"bench-probe-{uuid.uuid4().hex[:10]}"))
        await asyncio.wait_for(proto.connack, 10)
        self._proto = proto

    def publish(self, site: str, meter: str, ts_ms: int, energy_kwh: float) -> asyncio.Future[None]:
        """Write the PUBLISH now; the future resolves at its PUBACK."""
        proto = self._proto
        assert proto is not None
        assert proto.transport is not None
        self._next_id = self._next_id % 65535 + 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        proto.acks[self._next_id] = future
        payload = json.dumps({"ts": ts_ms, "energy_kwh": round(energy_kwh, 4)}).encode()
        proto.transport.write(publish_packet(f"telemetry/{site}/{meter}".encode(), payload, self._next_id))
        return future

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.write(b"\xe0\x00")  # DISCONNECT
            self._proto.transport.close()


# ---------------------------------------------------------------------------------------- trials


@dataclass
class Trial:
    k: int
    site: str
    window_start_ms: int
    t0: float = 0.0
    """``time.monotonic()`` when the closing readings were written to the broker connection."""
    t0_wall: float = 0.0
    t1: float | None = None
    """When the receiver had the POST (``None``: lost, nothing within ``LOST_AFTER_S``)."""
    committed_wall: float | None = None
    """When the pipeline committed the write holding the site's firing alert (``time.time()``)."""
    error: str = ""

    @property
    def latency_s(self) -> float | None:
        return None if self.t1 is None else self.t1 - self.t0


def probe_site_ids(trials: int) -> list[str]:
    return [f"probe-{k:03d}" for k in range(1, trials + 1)]


async def run_trial(trial: Trial, probe: Probe, receiver: Receiver, lateness_ms: int) -> None:
    """Breaching readings (acknowledged), then at ``t0`` the readings that close their window."""
    w = trial.window_start_ms
    arrival = receiver.arrival(trial.site)
    steps = WINDOW_MS // READING_EVERY_MS  # readings at w+0 s .. w+50 s: the first is the registers' base
    acks: list[asyncio.Future[None]] = []
    for i in range(steps):
        ts = w + i * READING_EVERY_MS
        acks.append(probe.publish(trial.site, "facility", ts, 1000.0 + FACILITY_KWH_PER_STEP * i))
        acks.append(probe.publish(trial.site, "it", ts, 500.0 + IT_KWH_PER_STEP * i))
    try:
        await asyncio.wait_for(asyncio.gather(*acks), 10)
    except (TimeoutError, ConnectionError) as exc:
        trial.error = f"breaching readings not acknowledged: {exc!r}"
        return
    # The closing readings keep the slope, so the window's share of their interval keeps PUE at 2.0.
    close_ts = w + WINDOW_MS + lateness_ms + 1000
    last_ts = w + (steps - 1) * READING_EVERY_MS
    slope = (close_ts - last_ts) / READING_EVERY_MS
    trial.t0 = time.monotonic()
    trial.t0_wall = time.time()
    probe.publish(trial.site, "facility", close_ts, 1000.0 + FACILITY_KWH_PER_STEP * (steps - 1 + slope))
    probe.publish(trial.site, "it", close_ts, 500.0 + IT_KWH_PER_STEP * (steps - 1 + slope))
    with contextlib.suppress(TimeoutError):
        trial.t1 = await asyncio.wait_for(asyncio.shield(arrival), LOST_AFTER_S)
