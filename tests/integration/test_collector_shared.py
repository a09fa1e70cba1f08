"""Shared subscriptions (issue #6): collectors in one ``$share`` group split the telemetry between them.

Each collector is set up as its own process would be (its own client id, ``Collector`` and bus), all
behind one real mosquitto (MQTT 5 through the protocol probe). What the group delivered is the union
of the buses; every reading is identified by ``(site, meter, ts)``, as the processor identifies it.
The checks of the share name and the filter need no broker and carry no ``integration`` mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path

import gmqtt
import msgspec
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from cli.stack import running_stack
from collector import Collector, CollectorMetrics, DecodeContext, MqttError, MqttSource
from collector.mqtt import shared_topic_filter
from peakwatch.bus import MemoryBus, Polled
from peakwatch.config import Registry, Settings, check_mqtt_shared_group
from peakwatch.domain.devices import Device, DeviceKind, acl_file, mosquitto_hash, password_file
from peakwatch.domain.models import DeadLetter, Reading, ReadingBatch
from peakwatch.errors import ConfigError
from tests.fixtures.mqtt import acknowledged, mosquitto_path, publisher, running_mosquitto, unique_prefix
from tests.support import eventually, free_port

needs_mosquitto = pytest.mark.skipif(
    mosquitto_path() is None, reason="needs mosquitto: the embedded broker has no shared subscriptions"
)

REGISTRY = Registry.from_mapping(
    {
        "sites": [
            {
                "id": "park-1",
                "name": "Park",
                "kind": "park",
                "meters": [
                    {"id": "grid-in", "carrier": "electricity", "role": "grid_import"},
                    {"id": "pv", "carrier": "electricity", "role": "pv_generation"},
                ],
            },
        ]
    }
)
METERS = ("grid-in", "pv")

Key = tuple[str, str, int]


def key(reading: Reading) -> Key:
    return (reading.site_id, reading.meter_id, reading.ts_ms)


class _CrashingBus(MemoryBus):
    """Kills its collector as soon as it has accepted the first batch: the worst moment, the readings
    are on the bus and their acknowledgements have not left."""

    def __init__(self, crash: Callable[[], None]) -> None:
        super().__init__()
        self._crash: Callable[[], None] | None = crash

    async def publish(self, batch: ReadingBatch) -> None:
        await super().publish(batch)
        self._crashes()

    async def publish_many(self, batches: Sequence[ReadingBatch], letters: Sequence[DeadLetter]) -> None:
        await super().publish_many(batches, letters)
        self._crashes()

    def _crashes(self) -> None:
        crash, self._crash = self._crash, None
        if crash is not None:
            crash()


class Member:
    """One collector process of a group: its own client id (kept across restarts: a restart is a new
    ``Member`` with the same ``client_id``), ``Collector``, bus, and a task reading the bus.
    ``crash_on_first_batch``: the process dies right after its bus took the first batch."""

    def __init__(
        self,
        url: str,
        prefix: str,
        group: str | None,
        client_id: str | None = None,
        *,
        crash_on_first_batch: bool = False,
    ) -> None:
        self.url = url
        self.group = group
        self.client_id = client_id or f"collector-{uuid.uuid4().hex[:10]}"
        self.ctx = DecodeContext(registry=REGISTRY, topic_prefix=prefix)
        self.bus = _CrashingBus(self.crash) if crash_on_first_batch else MemoryBus()
        self.collector = Collector(self.bus, self.ctx, CollectorMetrics(CollectorRegistry()))
        self.source = MqttSource(
            url,
            self.client_id,
            self.ctx.topic_filter,
            1,
            self.collector.handle,
            shared_group=group,
            connect_timeout_s=15,
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
        )
        self.readings: list[Reading] = []
        self.dead_letters: list[DeadLetter] = []
        self._reader: asyncio.Task[None] | None = None
        self.crashed = False

    async def start(self) -> None:
        await self.source.start()
        self._reader = asyncio.create_task(self._read_bus())

    async def _read_bus(self) -> None:
        while True:
            self._take(await self.bus.poll(timeout_s=0.5))

    def _take(self, polled: Polled) -> None:
        for batch in polled.batches:
            self.readings.extend(batch.readings)
        self.dead_letters.extend(polled.dead_letters)

    def crash(self) -> None:
        """What a killed process leaves behind: the socket closes without a DISCONNECT, nothing more
        is acknowledged, nothing reconnects. No public call does this (a process does not choose to
        crash), hence gmqtt's internals."""
        client = self.source._client
        assert client is not None
        client._is_active = False  # gmqtt reconnects only an active client
        client.current_connection._transport.abort()
        self.crashed = True

    async def close(self) -> None:
        """Stop (unless crashed), then take everything the collector still hands to the bus."""
        if not self.crashed:
            await self.source.stop()
        await self.collector.drain()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        while self.bus.lag:
            self._take(await self.bus.poll(timeout_s=0))


@contextlib.asynccontextmanager
async def running(*members: Member) -> AsyncIterator[None]:
    try:
        for member in members:
            await member.start()
        yield
    finally:
        for member in members:
            await member.close()


def messages(prefix: str, numbers: Iterable[int], base_ms: int) -> list[tuple[str, bytes]]:
    """One reading per message, alternating between two meters: ``ts`` = ``base_ms`` + its number."""
    return [
        (
            f"{prefix}/park-1/{METERS[n % 2]}",
            msgspec.json.encode({"ts": base_ms + n, "energy_kwh": float(n)}),
        )
        for n in numbers
    ]


def expected_keys(numbers: Iterable[int], base_ms: int) -> set[Key]:
    return {("park-1", METERS[n % 2], base_ms + n) for n in numbers}


def distinct(*members: Member) -> set[Key]:
    return {key(r) for m in members for r in m.readings}


def numbers_of(member: Member, base_ms: int, numbers: range) -> set[int]:
    return {r.ts_ms - base_ms for r in member.readings if r.ts_ms - base_ms in numbers}


async def _noop(topic: str, payload: bytes, received_ms: int) -> None:
    return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_group() -> str:
    return f"ingest-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------ no broker


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (None, "telemetry/+/+"),
        ("ingest", "$share/ingest/telemetry/+/+"),
        ("grp.1-a_b", "$share/grp.1-a_b/telemetry/+/+"),
        ("采集", "$share/采集/telemetry/+/+"),
    ],
)
def test_the_subscription_is_the_filter_under_share_and_group(group: str | None, expected: str) -> None:
    assert shared_topic_filter("telemetry/+/+", group) == expected
    source = MqttSource("mqtt://localhost", "c", "telemetry/+/+", 1, _noop, shared_group=group)
    assert source.subscription == expected


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ("", "must not be empty"),
        ("a/b", "must not contain '/'"),
        ("a+", r"must not contain '\+'"),
        ("#", "must not contain '#'"),
        ("x/+#", r"must not contain '#', '\+', '/'"),
        ("a\x00b", r"must not contain '\\x00'"),
    ],
)
def test_a_group_that_cannot_be_a_share_name_is_refused_everywhere(
    group: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_mqtt_shared_group(group)
    with pytest.raises(MqttError, match=message) as info:
        shared_topic_filter("telemetry/+/+", group)
    assert not info.value.retryable
    with pytest.raises(ValidationError, match=message):
        Settings(mqtt_shared_group=group)
    if "\x00" not in group:  # an environment variable cannot hold a NUL
        monkeypatch.setenv("PEAKWATCH_MQTT_SHARED_GROUP", group)
        with pytest.raises(ValidationError, match=message):
            Settings()


def test_the_group_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().mqtt_shared_group is None
    monkeypatch.setenv("PEAKWATCH_MQTT_SHARED_GROUP", "ingest")
    assert Settings().mqtt_shared_group == "ingest"


def test_a_source_pinned_to_mqtt_3_1_1_refuses_a_group() -> None:
    with pytest.raises(MqttError, match="needs MQTT 5") as info:
        MqttSource("mqtt://localhost", "c", "t/+/+", 1, _noop, protocol="3.1.1", shared_group="g")
    assert not info.value.retryable


# ------------------------------------------------------------------------------ real brokers


@pytest.mark.integration
@needs_mosquitto
async def test_a_group_gives_every_reading_to_exactly_one_collector(mqtt_url: str) -> None:
    prefix, group, base, n = unique_prefix(), new_group(), now_ms(), 2_000
    a, b = Member(mqtt_url, prefix, group), Member(mqtt_url, prefix, group)
    async with running(a, b):
        assert a.source.protocol_version == "5"
        async with publisher(mqtt_url) as pub:
            for topic, payload in messages(prefix, range(n), base):
                pub.publish(topic, payload, qos=1)
            await acknowledged(pub)
        await eventually(lambda: len(distinct(a, b)) == n, f"{n} distinct readings from the group")
    counts = Counter(key(r) for r in [*a.readings, *b.readings])
    assert set(counts) == expected_keys(range(n), base)
    assert set(counts.values()) == {1}, "a reading reached more than one collector, or one twice"
    assert len(a.readings) > 0
    assert len(b.readings) > 0
    assert not a.dead_letters
    assert not b.dead_letters


@pytest.mark.integration
@needs_mosquitto
async def test_a_crashed_member_restarted_under_its_client_id_loses_nothing(mqtt_url: str) -> None:
    prefix, group, base = unique_prefix(), new_group(), now_ms()
    before, meanwhile, after = range(0, 1_000), range(1_000, 2_000), range(2_000, 3_000)
    a = Member(mqtt_url, prefix, group)
    b1 = Member(mqtt_url, prefix, group, crash_on_first_batch=True)
    b2 = Member(mqtt_url, prefix, group, client_id=b1.client_id)  # the restarted process
    try:
        await a.start()
        await b1.start()
        async with publisher(mqtt_url) as pub:
            for topic, payload in messages(prefix, before, base):
                pub.publish(topic, payload, qos=1)
            await eventually(lambda: b1.crashed, "b's crash after its first batch")
            await acknowledged(pub)
            for topic, payload in messages(prefix, meanwhile, base):
                pub.publish(topic, payload, qos=1)
            await acknowledged(pub)  # the broker holds b's share of these in its offline session
            await b2.start()
            for topic, payload in messages(prefix, after, base):
                pub.publish(topic, payload, qos=1)
            await acknowledged(pub)
        await eventually(lambda: len(distinct(a, b1, b2)) == 3_000, "3000 distinct readings from the group")
    finally:
        for member in (a, b1, b2):
            await member.close()
    assert distinct(a, b1, b2) == expected_keys(range(3_000), base)
    # each message went to one member's session; what b1 put on its bus unacknowledged came again to
    # b2 (QoS 1 re-delivery), identical
    assert not distinct(a) & distinct(b1, b2)
    assert b1.readings
    assert distinct(b1) <= distinct(b2)
    seen: dict[Key, Reading] = {}
    for reading in [*a.readings, *b1.readings, *b2.readings]:
        assert seen.setdefault(key(reading), reading) == reading
    # mosquitto (2.0) kept dealing b's share to its offline session, and b got it on its return
    assert numbers_of(b2, base, meanwhile), "nothing of what was published while b was down reached b"
    assert numbers_of(a, base, meanwhile)
    assert numbers_of(b2, base, after)
    assert not [*a.dead_letters, *b1.dead_letters, *b2.dead_letters]


@pytest.mark.integration
@needs_mosquitto
async def test_joining_a_group_drops_the_plain_subscription_the_session_kept(mqtt_url: str) -> None:
    """A collector that ran without a group left ``<prefix>/+/+`` in its persistent session; with the
    group it must not receive every message through the old subscription as well as its share."""
    prefix, group, base, n = unique_prefix(), new_group(), now_ms(), 200
    plain = Member(mqtt_url, prefix, None)
    async with running(plain):
        assert plain.source.subscription == f"{prefix}/+/+"
    a = Member(mqtt_url, prefix, group, client_id=plain.client_id)
    b = Member(mqtt_url, prefix, group)
    async with running(a, b):
        async with publisher(mqtt_url) as pub:
            for topic, payload in messages(prefix, range(n), base):
                pub.publish(topic, payload, qos=1)
            await acknowledged(pub)
        await eventually(lambda: len(distinct(a, b)) == n, f"{n} distinct readings from the group")
    assert len(a.readings) + len(b.readings) == n
    assert a.readings
    assert b.readings


@pytest.mark.integration
async def test_a_broker_speaking_only_mqtt_3_1_1_is_refused_for_a_group(embedded_mqtt_url: str) -> None:
    """amqtt grants ``$share/...`` as an ordinary filter and then delivers nothing: refused up front."""
    member = Member(embedded_mqtt_url, unique_prefix(), new_group())
    with pytest.raises(MqttError, match=r"speaks only MQTT 3\.1\.1") as info:
        await member.source.start()
    assert not info.value.retryable
    assert not member.source.connected


@pytest.mark.integration
@needs_mosquitto
async def test_the_stack_subscribes_with_the_group_and_refuses_it_with_the_embedded_broker(
    mqtt_url: str, database_url: str, tmp_path: Path
) -> None:
    group = new_group()
    settings = Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        mqtt_client_id=f"pw-shared-{uuid.uuid4().hex[:8]}",
        mqtt_shared_group=group,
        bus_url="memory://",
        data_dir=tmp_path,
        demo=False,
    )
    async with running_stack(
        settings, REGISTRY, processor=False, api=False, broker=False, notifier=False
    ) as stack:
        assert stack.source is not None
        assert stack.source.connected
        assert stack.source.subscription == f"$share/{group}/telemetry/+/+"
    embedded = settings.model_copy(update={"mqtt_url": None, "mqtt_port": free_port()})
    with pytest.raises(ConfigError, match="embedded broker"):
        async with running_stack(embedded, REGISTRY, processor=False, api=False, notifier=False):
            pass


@pytest.mark.integration
@needs_mosquitto
async def test_the_collector_credential_may_read_through_a_shared_subscription(tmp_path: Path) -> None:
    """The exported ACL grants a collector ``read <prefix>/#``; mosquitto checks a ``$share`` filter
    against it without the ``$share/<group>/`` part, so no new ACL line is needed."""
    prefix, group, base, n = unique_prefix(), new_group(), now_ms(), 100
    secret = {name: secrets.token_urlsafe(12) for name in ("coll-a", "coll-b", "gw")}

    def credential(name: str, kind: DeviceKind) -> Device:
        return Device(
            id=name,
            kind=kind,
            site_id="park-1" if kind is DeviceKind.DEVICE else None,
            password_hash=mosquitto_hash(secret[name], secrets.token_bytes(12)),
            created_ms=0,
        )

    devices = [
        credential("coll-a", DeviceKind.COLLECTOR),
        credential("coll-b", DeviceKind.COLLECTOR),
        credential("gw", DeviceKind.DEVICE),
    ]
    (tmp_path / "passwd").write_text(password_file(devices))
    (tmp_path / "acl").write_text(acl_file(devices, prefix))
    extra = f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
    if os.geteuid() == 0:  # mosquitto started as root drops to its own user, which cannot read tmp_path
        extra += "user root\n"
    with running_mosquitto(workdir=tmp_path, allow_anonymous=False, extra_config=extra) as url:
        host_port = url.removeprefix("mqtt://")
        a = Member(f"mqtt://coll-a:{secret['coll-a']}@{host_port}", prefix, group)
        b = Member(f"mqtt://coll-b:{secret['coll-b']}@{host_port}", prefix, group)
        async with running(a, b):
            gateway = gmqtt.Client(f"gw-{uuid.uuid4().hex[:8]}")
            gateway.set_auth_credentials("gw", secret["gw"])
            host, port = host_port.split(":")
            await gateway.connect(host, int(port))
            try:
                for topic, payload in messages(prefix, range(n), base):
                    gateway.publish(topic, payload, qos=1)
                await acknowledged(gateway)
            finally:
                await gateway.disconnect()
            await eventually(lambda: len(distinct(a, b)) == n, f"{n} distinct readings from the group")
    assert len(a.readings) + len(b.readings) == n
    assert a.readings
    assert b.readings
