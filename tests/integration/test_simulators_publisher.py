"""The simulator publishing through a real broker: what a subscriber receives is what SimStats says.

Every test subscribes (gmqtt, MQTT 3.1.1, QoS 1) to its own topic prefix on the session broker, runs
``run_simulation`` and compares the delivered messages with the returned statistics.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import gmqtt
import msgspec
import pytest

from peakwatch.errors import SimulationError
from simulators.faults import FaultConfig
from simulators.options import SimStats, SimulationOptions
from simulators.pacing import MAX, REALTIME, Speed
from simulators.publisher import run_simulation
from tests.fixtures.mqtt import mosquitto_path, running_mosquitto, unique_prefix
from tests.support import eventually, free_port

pytestmark = pytest.mark.integration

START_MS = 1_713_000_000_000  # a fixed past start: the run is reproducible


@dataclass
class Received:
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def well_formed(self) -> list[tuple[str, Any]]:
        out = []
        for topic, payload in self.messages:
            try:
                doc = msgspec.json.decode(payload)
            except msgspec.DecodeError:
                continue
            items = doc if isinstance(doc, list) else [doc]
            if all(
                isinstance(i, dict)
                and isinstance(i.get("ts"), int)
                and all(isinstance(v, int | float) for v in i.values())
                for i in items
            ):
                out.append((topic, doc))
        return out


@asynccontextmanager
async def subscribed(url: str, prefix: str) -> AsyncIterator[Received]:
    received = Received()
    acked = asyncio.Event()
    parts = urlsplit(url)
    client = gmqtt.Client(f"sub-{uuid.uuid4().hex[:10]}")

    def on_message(_client: Any, topic: str, payload: bytes, _qos: int, _properties: Any) -> int:
        received.messages.append((topic, payload))
        return 0

    client.on_message = on_message
    client.on_subscribe = lambda *_args: acked.set()
    await client.connect(parts.hostname, parts.port, version=4)
    client.subscribe(f"{prefix}/#", qos=1)
    await asyncio.wait_for(acked.wait(), 10)
    try:
        yield received
    finally:
        await client.disconnect()


async def test_accelerated_run_with_faults_delivers_exactly_what_stats_report(mqtt_url: str) -> None:
    prefix = unique_prefix()
    faults = FaultConfig(drop=0.05, duplicate=0.05, reorder=0.05, malformed=0.05, reset=0.002)
    options = SimulationOptions(
        sites=2,
        seed=1,
        speed=Speed(600.0),
        step_ms=10_000,
        start_ms=START_MS,
        count=30,
        topic_prefix=prefix,
        faults=faults,
    )
    async with subscribed(mqtt_url, prefix) as received:
        stats = await run_simulation(options, mqtt_url=mqtt_url)
        expected = stats.messages - stats.faults["dropped"]
        await eventually(lambda: len(received.messages) >= expected, f"{expected} messages delivered")
    assert len(received.messages) == expected == stats.published
    assert stats.readings == 30 * 14
    assert stats.unacknowledged == 0
    assert min(stats.faults[k] for k in ("dropped", "duplicated", "reordered", "malformed")) > 0
    assert len(received.well_formed()) == stats.published - stats.malformed_published
    assert 0 < stats.malformed_published <= stats.faults["malformed"] + stats.faults["duplicated"]
    # 29 steps of 10 s at 600x take at least 0.48 s of wall time
    assert stats.elapsed_s >= 0.45
    topics = {t for t, _ in received.messages}
    assert f"{prefix}/park-changsha/boiler-gas" in topics
    assert f"{prefix}/dc-xiangjiang/facility" in topics


async def test_qos1_window_bounds_inflight_at_full_speed(mqtt_url: str) -> None:
    prefix = unique_prefix()
    options = SimulationOptions(
        sites=2,
        synthetic_meters=50,
        speed=MAX,
        start_ms=START_MS,
        count=40,
        qos=1,
        max_inflight=4,
        topic_prefix=prefix,
    )
    async with subscribed(mqtt_url, prefix) as received:
        stats = await run_simulation(options, mqtt_url=mqtt_url)
        await eventually(lambda: len(received.messages) >= 4000, "4000 messages delivered")
    assert stats.published == stats.messages == stats.readings == len(received.messages) == 4000
    assert stats.unacknowledged == 0
    per_meter: dict[str, list[int]] = {}
    for topic, doc in received.well_formed():
        per_meter.setdefault(topic, []).append(doc["ts"])
    assert len(per_meter) == 100
    assert all(ts == [START_MS + k * 10_000 for k in range(40)] for ts in per_meter.values())


async def test_qos0_batches(mqtt_url: str) -> None:
    prefix = unique_prefix()
    options = SimulationOptions(
        sites=1, speed=MAX, start_ms=START_MS, count=10, qos=0, batch_size=4, topic_prefix=prefix
    )
    async with subscribed(mqtt_url, prefix) as received:
        stats = await run_simulation(options, mqtt_url=mqtt_url)
        await eventually(lambda: len(received.messages) >= 27, "27 batches delivered")
    # 9 park meters x 10 readings: two full batches of 4 and a final batch of 2 each
    assert stats.published == len(received.messages) == 27
    assert stats.readings_published == stats.readings == 90
    sizes = sorted(len(doc) for _, doc in received.well_formed())
    assert sizes == [2] * 9 + [4] * 18


async def test_backfill_goes_out_at_once_then_realtime_until_stopped(mqtt_url: str) -> None:
    prefix = unique_prefix()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    snapshots: list[SimStats] = []

    def progress(stats: SimStats) -> None:
        snapshots.append(stats)
        if stats.steps == 13 and not stop.is_set():  # the 2 min of backfill plus "now": stop while it waits
            loop.call_later(0.2, stop.set)

    options = SimulationOptions(
        sites=2, speed=REALTIME, backfill_ms=120_000, topic_prefix=prefix, progress_interval_s=0.0
    )
    before_ms = int(time.time() * 1000)
    async with subscribed(mqtt_url, prefix) as received:
        stats = await asyncio.wait_for(
            run_simulation(options, mqtt_url=mqtt_url, stop=stop, progress=progress), timeout=10
        )
        await eventually(lambda: len(received.messages) >= stats.published, "backfill delivered")
    assert 13 <= stats.steps <= 14
    assert stats.first_ts_ms == before_ms - 120_000 - (before_ms - 120_000) % 10_000
    assert stats.last_ts_ms is not None
    assert stats.last_ts_ms <= int(time.time() * 1000)  # realtime never runs ahead of the clock
    assert stats.elapsed_s < 5.0
    assert len(received.messages) == stats.published == stats.steps * 14
    assert snapshots[-1] == stats


async def test_embedded_broker_gets_mqtt_311_after_the_fallback(embedded_mqtt_url: str) -> None:
    prefix = unique_prefix()
    options = SimulationOptions(sites=2, speed=MAX, start_ms=START_MS, count=5, topic_prefix=prefix)
    async with subscribed(embedded_mqtt_url, prefix) as received:
        stats = await run_simulation(options, mqtt_url=embedded_mqtt_url)
        await eventually(lambda: len(received.messages) >= 70, "70 messages delivered")
    assert stats.published == len(received.messages) == 70


async def test_unreachable_broker_is_a_simulation_error() -> None:
    options = SimulationOptions(count=1, connect_timeout_s=3.0)
    with pytest.raises(SimulationError, match="cannot connect"):
        await run_simulation(options, mqtt_url=f"mqtt://127.0.0.1:{free_port()}")


@pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto to restart a broker on the same port")
async def test_run_survives_a_broker_restart() -> None:
    port = free_port()
    prefix = unique_prefix()
    steps: list[int] = []
    stop = asyncio.Event()
    options = SimulationOptions(
        sites=2,
        synthetic_meters=50,
        speed=MAX,
        start_ms=START_MS,
        qos=1,
        max_inflight=200,
        topic_prefix=prefix,
        stall_timeout_s=20.0,
        progress_interval_s=0.0,
    )
    first = running_mosquitto(port)
    url = await asyncio.to_thread(first.__enter__)
    task = asyncio.create_task(
        run_simulation(options, mqtt_url=url, stop=stop, progress=lambda s: steps.append(s.steps))
    )
    try:
        await eventually(lambda: bool(steps) and steps[-1] >= 20, "20 steps published")
        await asyncio.to_thread(first.__exit__, None, None, None)
        second = running_mosquitto(port)
        await asyncio.to_thread(second.__enter__)
        try:
            async with subscribed(url, prefix) as received:
                await eventually(
                    lambda: len(received.messages) >= 500, "publishing resumed after the restart"
                )
            stop.set()
            stats = await asyncio.wait_for(task, 20)
        finally:
            await asyncio.to_thread(second.__exit__, None, None, None)
    finally:
        stop.set()
        if not task.done():
            task.cancel()
    assert stats.steps > 20
    assert stats.published == stats.messages == stats.readings
    assert stats.inflight_lost <= 200
