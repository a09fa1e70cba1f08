"""Failure drills with real processes (issue #7): the test stops and restarts them mid-stream and
checks that readings published equal readings stored.

Broker restart: mosquitto (persistence on, as shipped in deploy/) is stopped while it still holds
messages it acknowledged to the publisher but has not yet delivered to the collector, and started
again on the same port. The collector reconnects to its persistent session and gets them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import msgspec
import pytest

from cli.stack import running_stack
from peakwatch.config import Registry, Settings
from peakwatch.net import free_port
from tests.fixtures.mqtt import acknowledged, mosquitto_path, publisher, running_mosquitto
from tests.support import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (a broker with persistence)"),
]

REGISTRY = Registry.from_text(
    """
sites:
  - id: drill
    name: Drill site
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
      - {id: pv, carrier: electricity, role: pv_generation, unit: kWh}
"""
)
T0 = 1_767_225_600_000


def batches(first: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` messages of 10 readings each, per meter alternately, 1 s apart in event time."""
    out = []
    for i in range(first, first + count):
        meter = ("grid-in", "pv")[i % 2]
        base = T0 + (i // 2) * 10_000
        body = [{"ts": base + k * 1000, "energy_kwh": float(base + k * 1000 - T0) / 1000} for k in range(10)]
        out.append((f"telemetry/drill/{meter}", msgspec.json.encode(body)))
    return out


async def test_broker_restart_mid_stream_loses_nothing(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    # persistence as in deploy/mosquitto: a stopped broker saves what it holds for persistent sessions
    broker_config = f"persistence true\npersistence_location {tmp_path}/\n"
    if os.geteuid() == 0:
        broker_config += "user root\n"  # as root, mosquitto drops to a user that cannot write tmp_path
    settings = Settings(
        database_url=database_url,
        mqtt_url=f"mqtt://127.0.0.1:{port}",
        data_dir=tmp_path,
        mqtt_client_id=f"pw-drill-{uuid.uuid4().hex[:8]}",
        demo=False,
        max_age_ms=10 * 365 * 86_400_000,  # the drill's readings are stamped 2026-01
    )
    first, second = batches(0, 400), batches(400, 400)
    expected = 10 * (len(first) + len(second))
    broker = contextlib.ExitStack()
    url = broker.enter_context(running_mosquitto(port, tmp_path, extra_config=broker_config))
    try:
        async with running_stack(settings, REGISTRY, broker=False, api=False) as stack:
            assert stack.store is not None
            store = stack.store
            async with publisher(url) as pub:
                for topic, payload in first:
                    pub.publish(topic, payload, qos=1)
                await acknowledged(pub)
            broker.close()  # SIGTERM mid-stream: what the collector has not taken yet is saved
            broker = contextlib.ExitStack()
            url = broker.enter_context(running_mosquitto(port, tmp_path, extra_config=broker_config))
            async with publisher(url) as pub:
                for topic, payload in second:
                    pub.publish(topic, payload, qos=1)
                await acknowledged(pub)

            async def all_stored() -> bool:
                return await store.count_readings("drill") == expected

            await eventually(all_stored, "every published reading stored", timeout_s=60)
            # and none twice: the readings table is keyed (ts, meter), the count would exceed otherwise
            assert await store.count_readings("drill") == expected
    finally:
        broker.close()
