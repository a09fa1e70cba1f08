"""Publishing a simulation over MQTT (gmqtt), paced, with bounded in-flight messages.

Back-pressure: gmqtt's ``publish`` never blocks; it writes to the socket buffer and, for QoS 1/2, keeps
the packet until the broker acknowledges it. Packet ids are limited by the broker's Receive Maximum
(CONNACK; mosquitto defaults to 20) and gmqtt raises ``OverflowError`` once they run out, while an
MQTT 3.1.1 broker may simply be slower than we are. So the publisher counts unacknowledged messages
(through its own ``PersistentStorage``) and waits before exceeding ``min(max_inflight, receive
maximum - 1)``; at QoS 0 it waits while the socket's write buffer is above a high-water mark. Memory
use therefore stays bounded however fast the models run. A broker that stops acknowledging for
``stall_timeout_s`` ends the run with ``SimulationError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

from gmqtt import Client
from gmqtt.storage import PersistentStorage

from peakwatch.clock import now_ms
from peakwatch.errors import ConfigError, SimulationError
from peakwatch.mqtt_probe import probe_protocol
from peakwatch.mqtt_url import BrokerAddress
from peakwatch.retry import pause
from simulators.encoding import Batcher, Message
from simulators.faults import FaultCounts, MessageFaults, ReadingFaults
from simulators.fleet import build_fleet
from simulators.meters import SiteModel
from simulators.options import SimStats, SimulationOptions
from simulators.pacing import Schedule, due_offset_s, plan

_QOS0_HIGH_WATER_BYTES = 4 * 1024 * 1024
_QOS0_LOW_WATER_BYTES = 1024 * 1024
_YIELD_EVERY = 256


class StepSource:
    """The synchronous part of a run: models -> reading faults -> batches -> message faults.

    Separate from the network so that tests and benchmarks can produce exactly the stream a run
    publishes. ``produced`` counts messages leaving the batcher.
    """

    def __init__(self, options: SimulationOptions, fleet: list[SiteModel] | None = None) -> None:
        self.options = options
        if fleet is None:
            fleet = build_fleet(options.fleet_spec)
            if options.site_ids is not None:
                wanted = set(options.site_ids)
                fleet = [model for model in fleet if model.info.id in wanted]
        self.fleet = fleet
        by_site = {model.info.id: model for model in fleet}
        for site_id, meter_id, value in options.resume_registers:
            if site_id in by_site:
                by_site[site_id].bank.resume(meter_id, value)
        self.counts = FaultCounts()
        self._reading_faults = ReadingFaults(options.faults, seed=options.seed, counts=self.counts)
        self._message_faults = MessageFaults(options.faults, seed=options.seed, counts=self.counts)
        self._batcher = Batcher(options.topic_prefix, options.batch_size)
        self.readings = 0
        self.produced = 0

    def step(self, ts_ms: int) -> list[Message]:
        out: list[Message] = []
        for model in self.fleet:
            samples = model.step(ts_ms)
            self.readings += len(samples)
            out.extend(self._emit(self._batcher.add(self._reading_faults.apply(samples))))
        return out

    def finish(self) -> list[Message]:
        """Partial batches and held-back messages, at the end of the run."""
        out = self._emit(self._batcher.flush())
        out.extend(self._message_faults.flush())
        return out

    def _emit(self, messages: list[Message]) -> list[Message]:
        if not self.options.faults.touches_messages:
            self.produced += len(messages)
            return messages
        out: list[Message] = []
        for msg in messages:
            self.produced += 1
            out.extend(self._message_faults.feed(msg))
        return out


class _InflightStorage(PersistentStorage):  # type: ignore[misc]  # gmqtt is untyped
    """gmqtt's in-flight store, counting unacknowledged messages and waking publishers as acks arrive."""

    def __init__(self) -> None:
        super().__init__()
        self._mids: set[int] = set()
        self._space = asyncio.Event()
        self._limit = 1
        self.lost: set[int] = set()
        """Packet ids of messages dropped with a lost session, still to be released in gmqtt."""
        self.lost_total = 0

    @property
    def inflight(self) -> int:
        return len(self._mids)

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self._mids.add(mid)

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        self._mids.discard(mid)
        if len(self._mids) < self._limit:
            self._space.set()

    def clear(self) -> None:
        # gmqtt calls this when it reconnected and the broker kept no session: whatever was in flight
        # is gone, but gmqtt keeps those packet ids allocated (see ``_Publisher._release_lost_ids``).
        super().clear()
        self.lost.update(self._mids)
        self.lost_total += len(self._mids)
        self._mids.clear()
        self._space.set()

    async def wait_below(self, limit: int, timeout_s: float) -> None:
        self._limit = limit
        while len(self._mids) >= limit:
            self._space.clear()
            before = len(self._mids)
            try:
                await asyncio.wait_for(self._space.wait(), timeout_s)
            except TimeoutError:
                raise SimulationError(
                    f"the broker acknowledged nothing for {timeout_s:g} s ({before} messages in flight)"
                ) from None


def parse_mqtt_url(url: str) -> BrokerAddress:
    """The broker address, with a bad URL reported as a ``SimulationError``."""
    try:
        return BrokerAddress.parse(url)
    except ConfigError as exc:
        raise SimulationError(str(exc)) from exc


class _Publisher:
    def __init__(
        self, client: Any, storage: _InflightStorage, options: SimulationOptions, window: int, stats: SimStats
    ) -> None:
        self._client = client
        self._storage = storage
        self._qos = options.qos
        self._stall_s = options.stall_timeout_s
        self._window = window
        self._stats = stats
        self._since_yield = 0

    async def send(self, msg: Message) -> None:
        if self._qos > 0:
            if self._storage.inflight >= self._window:
                await self._storage.wait_below(self._window, self._stall_s)
        else:
            await self._wait_socket_buffer()
        if not self._client.is_connected:
            await self._wait_reconnected()
        if self._storage.lost:
            self._release_lost_ids()
        self._client.publish(msg.topic, msg.payload, qos=self._qos)
        self._stats.published += 1
        self._stats.readings_published += msg.readings
        if msg.malformed:
            self._stats.malformed_published += 1
            self._stats.malformed_readings_published += msg.readings
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            # let acks, keep-alives and the stop signal in even when nothing ever has to wait
            self._since_yield = 0
            await asyncio.sleep(0)

    def _release_lost_ids(self) -> None:
        # Without this, every session lost with messages in flight would shrink gmqtt's pool of packet
        # ids for good, until ``publish`` raises OverflowError. gmqtt has no public call for it.
        generator = getattr(getattr(self._client, "_package_handler", None), "id_generator", None)
        free_id = getattr(generator, "free_id", None)
        if free_id is not None:
            for mid in self._storage.lost:
                free_id(mid)
        self._storage.lost.clear()
        self._stats.inflight_lost = self._storage.lost_total

    async def _wait_reconnected(self) -> None:
        # gmqtt reconnects by itself; a broker restart shorter than the stall timeout is survived
        # (QoS 1/2 messages in flight at that moment may be lost with the broker's session).
        deadline = time.monotonic() + self._stall_s
        while not self._client.is_connected:
            if time.monotonic() > deadline:
                raise SimulationError(f"lost the connection to the MQTT broker for {self._stall_s:g} s")
            await asyncio.sleep(0.05)

    async def _wait_socket_buffer(self) -> None:
        # gmqtt does not expose its transport; reach for it defensively and skip when absent.
        transport = getattr(getattr(self._client, "_connection", None), "_transport", None)
        size = getattr(transport, "get_write_buffer_size", None)
        if size is None or size() < _QOS0_HIGH_WATER_BYTES:
            return
        deadline = time.monotonic() + self._stall_s
        while size() > _QOS0_LOW_WATER_BYTES:
            if time.monotonic() > deadline:
                raise SimulationError(f"the broker read nothing for {self._stall_s:g} s")
            await asyncio.sleep(0.002)

    async def drain(self, timeout_s: float) -> int:
        """Wait for outstanding acknowledgements; returns how many are still missing."""
        if self._qos > 0 and self._storage.inflight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._storage.wait_empty(), timeout_s)
        return self._storage.inflight


async def _connect(address: BrokerAddress, options: SimulationOptions) -> tuple[Any, _InflightStorage, int]:
    storage = _InflightStorage()
    client_id = options.client_id or f"peakwatch-sim-{uuid.uuid4().hex[:12]}"
    client = Client(client_id, persistent_storage=storage)
    connack: dict[str, Any] = {}

    def on_connect(_client: Any, _flags: int, _rc: int, properties: dict[str, Any]) -> None:
        connack.update(properties)

    client.on_connect = on_connect
    if address.username:
        client.set_auth_credentials(address.username, address.password)
    # gmqtt's own reconnect after a lost connection waits 6 s by default: too long for the demo
    client.reconnect_delay = 0.5
    try:
        async with asyncio.timeout(options.connect_timeout_s):
            # gmqtt's own fall-back from MQTT 5 to 3.1.1 (e.g. amqtt, the embedded broker) logs a CONNACK
            # warning and reconnects after that delay: ask the broker first (peakwatch/mqtt_probe.py)
            version = await probe_protocol(address)
            await client.connect(address.host, address.port, ssl=address.tls, keepalive=30, version=version)
    except Exception as exc:  # gmqtt raises OSError, MQTTConnectError and friends
        with contextlib.suppress(Exception):
            await client.disconnect()
        reason = str(exc) or type(exc).__name__
        raise SimulationError(
            f"cannot connect to MQTT broker {address.host}:{address.port}: {reason}"
        ) from exc
    receive_maximum = connack.get("receive_maximum", [65535])
    broker_max = int(receive_maximum[0] if isinstance(receive_maximum, list) else receive_maximum)
    window = max(1, min(options.max_inflight, broker_max - 1))
    return client, storage, window


async def run_simulation(
    options: SimulationOptions,
    *,
    mqtt_url: str,
    stop: asyncio.Event | None = None,
    progress: Callable[[SimStats], None] | None = None,
    fleet: list[SiteModel] | None = None,
) -> SimStats:
    """Run the simulation until its duration/count is reached or ``stop`` is set, publishing to
    ``mqtt_url``; returns what was produced, published and injected.

    ``progress`` is called with a snapshot at most every ``progress_interval_s`` and once at the end.
    ``fleet`` (e.g. the user's registry, ``simulators.registry_sites``) replaces the options' fleet.
    Raises ``SimulationError`` when the broker cannot be reached or stops acknowledging.
    """
    if stop is None:
        stop = asyncio.Event()
    address = parse_mqtt_url(mqtt_url)
    wall0_ms = now_ms()
    mono0 = time.monotonic()
    schedule: Schedule = plan(
        wall0_ms,
        step_ms=options.step_ms,
        start_ms=options.start_ms,
        backfill_ms=options.backfill_ms,
        duration_ms=options.duration_ms,
        count=options.count,
    )
    source = StepSource(options, fleet)
    stats = SimStats()

    def snapshot() -> SimStats:
        stats.messages = source.produced + source.counts.duplicated
        stats.readings = source.readings
        stats.faults = source.counts.as_dict()
        stats.elapsed_s = time.monotonic() - mono0
        return dataclasses.replace(stats, faults=dict(stats.faults))

    if not source.fleet:  # e.g. the demo feed with a registry that has none of the template sites
        return snapshot()
    client, storage, window = await _connect(address, options)
    publisher = _Publisher(client, storage, options, window, stats)
    next_progress = mono0
    try:
        for ts in schedule.times():
            if stop.is_set():
                break
            delay = due_offset_s(ts, schedule, options.speed) - (time.monotonic() - mono0)
            if delay > 0 and await pause(delay, stop):
                break
            for msg in source.step(ts):
                await publisher.send(msg)
            stats.steps += 1
            stats.first_ts_ms = ts if stats.first_ts_ms is None else stats.first_ts_ms
            stats.last_ts_ms = ts
            if progress is not None and time.monotonic() >= next_progress:
                next_progress = time.monotonic() + options.progress_interval_s
                progress(snapshot())
        for msg in source.finish():
            await publisher.send(msg)
        stats.unacknowledged = await publisher.drain(options.drain_timeout_s)
    finally:
        with contextlib.suppress(Exception):  # best effort: the broker may already be gone
            await client.disconnect()
    result = snapshot()
    if progress is not None:
        progress(result)
    return result
