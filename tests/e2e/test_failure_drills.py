"""Failure drills with real processes (issue #7): the test stops and restarts them mid-stream and
checks that readings published equal readings stored, and that the KPIs equal those of an undisturbed
run over the same input (``reference``).

* Broker restart: mosquitto (persistence on, as shipped in deploy/) is stopped while it still holds
  messages it acknowledged to the publisher but has not yet delivered to the collector, and started
  again on the same port. The collector reconnects to its persistent session and gets them.
* Database down (``PEAKWATCH_TEST_DB_OUTAGE_S``, default 30 s): PostgreSQL is stopped while readings
  keep arriving. They go to the on-disk spool; when the spool is full the collector stops
  acknowledging and the broker keeps the rest; /healthz says degraded, and why. PostgreSQL is started
  again and everything is stored.
* SIGKILL: ``peakwatch up`` (collector, spool, processor in one process) is killed mid-stream and
  started again; what it had acknowledged is in the spool, what it had not is on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from cli.stack import running_stack
from peakwatch.config import Registry, Settings
from peakwatch.embedded.postgres import EmbeddedPostgres
from peakwatch.net import free_port
from peakwatch.store import Store
from tests.fixtures.mqtt import acknowledged, mosquitto_path, publisher, running_mosquitto
from tests.support import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (a broker with persistence)"),
]

REGISTRY_TEXT = """
sites:
  - id: drill
    name: Drill site
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
      - {id: pv, carrier: electricity, role: pv_generation, unit: kWh}
"""
REGISTRY = Registry.from_text(REGISTRY_TEXT)
T0 = 1_767_225_600_000
MIN = 60_000
MESSAGES = 600
"""Messages of the KPI drills: 6,000 readings, 50 minutes of event time for two meters."""
COMPARED = {"1m": (T0, T0 + 50 * MIN), "15m": (T0, T0 + 45 * MIN)}
"""Windows wholly inside the drill's data (later ones depend on how long each run idles)."""
OUTAGE_S = float(os.environ.get("PEAKWATCH_TEST_DB_OUTAGE_S", "30"))
"""Longer than the connect timeout (10 s) and several of the processor's write retries (backoff up to 5 s);
200 messages of 10 readings (248 KB in the spool) fill its 64 KiB whatever the length."""
MAX_AGE_MS = 10 * 365 * 86_400_000
"""The drill's readings are stamped 2026-01."""


def batches(first: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` messages of 10 readings each, per meter alternately, 1 s apart in event time."""
    out = []
    for i in range(first, first + count):
        meter = ("grid-in", "pv")[i % 2]
        base = T0 + (i // 2) * 10_000
        body = [{"ts": base + k * 1000, "energy_kwh": float(base + k * 1000 - T0) / 1000} for k in range(10)]
        out.append((f"telemetry/drill/{meter}", msgspec.json.encode(body)))
    return out


async def test_broker_restart_mid_stream_loses_nothing(
    database_url: str, tmp_path: Path, reference: dict[Any, Any]
) -> None:
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
        max_age_ms=MAX_AGE_MS,
    )
    first, second = batches(0, MESSAGES // 2), batches(MESSAGES // 2, MESSAGES - MESSAGES // 2)
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
            assert await kpi_snapshot(store) == reference
    finally:
        broker.close()


# ------------------------------------------------------------------------------------------ KPIs


async def kpi_snapshot(store: Store) -> dict[tuple[str, int], tuple[Any, ...]]:
    """The compared windows' values, once the run has settled: every compared window stored and the
    restatement queue empty (late or replayed data recomputed)."""

    async def settled() -> dict[tuple[str, int], tuple[Any, ...]] | None:
        if await store.inputs.list_restatements(pending=True):
            return None
        out: dict[tuple[str, int], tuple[Any, ...]] = {}
        for period, (start, end) in COMPARED.items():
            windows = await store.kpi_series("drill", start, end, period=period)
            size = MIN if period == "1m" else 15 * MIN
            if len(windows) != (end - start) // size:
                return None
            for w in windows:
                out[(period, w.start_ms)] = (
                    round(w.electricity_kwh, 6),
                    round(w.grid_import_kwh, 6),
                    round(w.renewable_generation_kwh, 6),
                    round(w.total_kgce, 6),
                    round(w.emissions_kg, 6),
                    None if w.green_power_share is None else round(w.green_power_share, 9),
                    w.completeness,
                )
        return out

    snapshot: dict[tuple[str, int], tuple[Any, ...]] = await eventually(
        settled, "compared KPI windows stored and no restatement pending", timeout_s=120
    )
    return snapshot


def drill_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        mqtt_client_id=f"pw-drill-{uuid.uuid4().hex[:8]}",
        demo=False,
        max_age_ms=MAX_AGE_MS,
        **overrides,
    )


async def publish_all(url: str, messages: list[tuple[str, bytes]], *, over_s: float = 0.0) -> None:
    """Publish with QoS 1 until the broker acknowledged all, spread over ``over_s`` seconds."""
    async with publisher(url) as pub:
        pause = over_s / len(messages) if messages else 0.0
        for topic, payload in messages:
            pub.publish(topic, payload, qos=1)
            if pause:
                await asyncio.sleep(pause)  # the drill's own pace: readings keep coming during the outage
        await acknowledged(pub, timeout_s=60)


@pytest.fixture(scope="module")
async def reference(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    """KPIs of an undisturbed run over the drills' input (in-process stack, memory bus)."""
    tmp = tmp_path_factory.mktemp("reference")
    with running_mosquitto(workdir=tmp) as url:
        settings = drill_settings(tmp, database_url=module_database_url, mqtt_url=url, bus_url="memory://")
        async with running_stack(settings, REGISTRY, broker=False, api=False) as stack:
            assert stack.store is not None
            await publish_all(url, batches(0, MESSAGES))
            return await kpi_snapshot(stack.store)


@contextlib.asynccontextmanager
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own (the session's is shared, and this one gets stopped).
    Not under pytest's basetemp, for the reason given in tests/fixtures/postgres.py (permissions)."""
    root = Path(tempfile.mkdtemp(prefix="peakwatch-test-pg-drill-"))
    pg = EmbeddedPostgres(root / "data", port=free_port(), durable=False, timescale=False)
    await asyncio.to_thread(pg.start)
    try:
        yield pg
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(root, ignore_errors=True)


async def test_database_down_readings_wait_in_the_spool(tmp_path: Path, reference: dict[Any, Any]) -> None:
    messages = batches(0, MESSAGES)
    before, during, after = messages[:200], messages[200:400], messages[400:]
    async with own_postgres() as pg:
        with running_mosquitto(workdir=tmp_path) as url:
            settings = drill_settings(
                tmp_path,
                database_url=pg.url,
                mqtt_url=url,
                api_port=free_port(),
                # small enough that the outage fills it: the collector then stops acknowledging
                bus_url=f"spool://{tmp_path}/spool?max_bytes=64KiB&segment_bytes=16KiB",
            )
            async with running_stack(settings, REGISTRY, broker=False) as stack:
                store, bus = stack.store, stack.bus
                assert store is not None
                assert bus is not None
                await publish_all(url, before)
                await eventually(lambda: _count(store, 2000), "first third stored", timeout_s=60)

                await asyncio.to_thread(pg.stop)
                outage = asyncio.create_task(publish_all(url, during, over_s=OUTAGE_S))
                async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as api:
                    health = await eventually(
                        lambda: _degraded(api), "healthz degraded by the outage", timeout_s=OUTAGE_S
                    )
                    full = await eventually(
                        lambda: _spool_full(api), "spool full: back-pressure", timeout_s=OUTAGE_S + 30
                    )
                    metrics = (await api.get("/metrics")).text
                await outage
                await asyncio.to_thread(pg.start)
                await publish_all(url, after)
                await eventually(lambda: _count(store, 10 * MESSAGES), "every reading stored", timeout_s=120)
                assert await store.count_readings("drill") == 10 * MESSAGES
                assert await kpi_snapshot(store) == reference
    assert health["status"] == "degraded"
    assert health["database"]["ok"] is False
    processor = next(c for c in health["components"] if c["name"] == "processor")
    assert "database writes failing" in processor["detail"]
    spool = next(c for c in full["components"] if c["name"] == "spool")
    assert "not acknowledged" in spool["detail"]
    assert "peakwatch_spool_full 1.0" in metrics
    assert "peakwatch_spool_capacity_bytes 65536.0" in metrics
    assert 'peakwatch_processor_store_errors_total{retryable="true"}' in metrics


async def _count(store: Store, expected: int) -> bool:
    return await store.count_readings("drill") == expected


async def _degraded(api: httpx.AsyncClient) -> dict[str, Any] | None:
    body: dict[str, Any] = (await api.get("/healthz")).json()
    processor = [c for c in body["components"] if c["name"] == "processor" and not c["ok"]]
    return body if body["status"] == "degraded" and not body["database"]["ok"] and processor else None


async def _spool_full(api: httpx.AsyncClient) -> dict[str, Any] | None:
    body: dict[str, Any] = (await api.get("/healthz")).json()
    return body if any(c["name"] == "spool" and not c["ok"] for c in body["components"]) else None


def _start_up(
    tmp_path: Path,
    database_url: str,
    mqtt_url: str,
    client_id: str,
    log: Path,
    *,
    api_port: int | None = None,
    registry_text: str = REGISTRY_TEXT,
) -> subprocess.Popen[bytes]:
    """``peakwatch up`` as an operator runs it on their own broker and database."""
    config = tmp_path / "drill.yaml"
    config.write_text(registry_text, encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")},
        "PEAKWATCH_MAX_AGE_MS": str(MAX_AGE_MS),
        "PEAKWATCH_MQTT_CLIENT_ID": client_id,
    }
    cmd = [
        sys.executable, "-m", "cli.main", "up", "--no-demo", "--config", str(config),
        "--data-dir", str(tmp_path / "data"), "--database-url", database_url, "--mqtt-url", mqtt_url,
        "--api-port", str(api_port or free_port()),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


async def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    database_url: str, tmp_path: Path, reference: dict[Any, Any]
) -> None:
    """Two kills. The first is deterministic: the database holds a lock that stalls the processor's
    writes, so at the kill every reading of the first part is acknowledged to the broker, in the spool
    and not stored. The second comes while the restarted process is catching up (some steps stored,
    others not, maybe one stored but not committed in the spool)."""
    messages = batches(0, MESSAGES)
    first, second, third = messages[:200], messages[200:400], messages[400:]
    client_id = f"pw-kill-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "up.log"
    spool = tmp_path / "data" / "spool"
    store = await Store.connect(database_url)
    blocker = await asyncpg.connect(database_url)
    try:
        with running_mosquitto(workdir=tmp_path) as url:
            proc = _start_up(tmp_path, database_url, url, client_id, log)
            try:
                await eventually(lambda: "peakwatch is running" in log.read_text(), "peakwatch up started")
                stall = blocker.transaction()
                await stall.start()
                await blocker.execute("LOCK TABLE meter_state IN EXCLUSIVE MODE")  # writes wait on it
                await publish_all(url, first)
                await eventually(
                    lambda: _spooled_bytes(spool) >= 10 * len(first) * 100, "the first part in the spool"
                )
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=30) == -signal.SIGKILL
                await stall.rollback()
                assert await store.count_readings("drill") == 0  # acknowledged, spooled, not stored

                proc = _start_up(tmp_path, database_url, url, client_id, log)
                await publish_all(url, second)
                await eventually(lambda: _at_least(store, 10 * len(first) + 1), "catching up", timeout_s=60)
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=30) == -signal.SIGKILL
                await publish_all(url, third)  # the broker keeps them for the collector's session

                proc = _start_up(tmp_path, database_url, url, client_id, log)
                await eventually(lambda: _count(store, 10 * MESSAGES), "every reading stored", timeout_s=120)
                assert await store.count_readings("drill") == 10 * MESSAGES
                assert await kpi_snapshot(store) == reference
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
    finally:
        await blocker.close()
        await store.close()
    text = log.read_text()
    assert "uncommitted record(s)" in text  # the restarts did read the spool again
    assert "Traceback" not in text


def _spooled_bytes(spool: Path) -> int:
    return sum(p.stat().st_size for p in spool.glob("*.seg")) if spool.exists() else 0


async def _at_least(store: Store, n: int) -> bool:
    return await store.count_readings("drill") >= n
