"""The cluster of issue #6 as separate processes on a real Kafka-protocol broker (tansu) and a real
mosquitto: two collectors share the devices' messages (MQTT 5 shared subscription, QoS 1 persistent
sessions), two processors share the sites (one consumer group). The test SIGKILLs a collector and a
processor mid-stream, restarts both, and checks that every reading published is stored once and that
the KPIs equal those of an undisturbed single-process run over the same input (``reference``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from cli.stack import running_stack
from peakwatch.bus.kafka import partition_of
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.store import Store
from tests.fixtures.mqtt import acknowledged, mosquitto_path, publisher, running_mosquitto
from tests.support import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (MQTT 5 shared subscriptions)"),
]

PARTITIONS = 4
T0 = 1_767_225_600_000
MIN = 60_000
PER_SITE = 240
"""Messages per site: 10 readings each, two meters alternately, 1 s apart: 20 minutes of event time."""
COMPARED = {"1m": (T0, T0 + 20 * MIN), "15m": (T0, T0 + 15 * MIN)}
MAX_AGE_MS = 10 * 365 * 86_400_000


def _sites() -> list[str]:
    """Two sites per partition, so that both processors own some whatever the assignment."""
    chosen: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while any(len(v) < 2 for v in chosen.values()):
        site = f"plant-{i}"
        part = chosen[partition_of(site.encode(), PARTITIONS)]
        if len(part) < 2:
            part.append(site)
        i += 1
    return sorted(s for v in chosen.values() for s in v)


SITES = _sites()
REGISTRY_TEXT = "sites:\n" + "".join(
    f"""  - id: {site}
    name: Plant {site}
    kind: park
    meters:
      - {{id: grid-in, carrier: electricity, role: grid_import, unit: kWh}}
      - {{id: pv, carrier: electricity, role: pv_generation, unit: kWh}}
"""
    for site in SITES
)
REGISTRY = Registry.from_text(REGISTRY_TEXT)


def _readings(site: str, i: int) -> tuple[str, list[dict[str, float]]]:
    meter = ("grid-in", "pv")[i % 2]
    base = T0 + (i // 2) * 10_000
    scale = 1 + SITES.index(site) / 10  # each site its own numbers
    return meter, [
        {"ts": base + k * 1000, "energy_kwh": scale * (base + k * 1000 - T0) / 1000} for k in range(10)
    ]


def messages(first: int, count: int) -> list[tuple[str, bytes]]:
    """Messages ``first`` .. ``first + count`` of every site, interleaved as devices would send them."""
    out = []
    for i in range(first, first + count):
        for site in SITES:
            meter, body = _readings(site, i)
            out.append((f"telemetry/{site}/{meter}", msgspec.json.encode(body)))
    return out


async def publish_all(url: str, batch: list[tuple[str, bytes]]) -> None:
    async with publisher(url) as pub:
        for topic, payload in batch:
            pub.publish(topic, payload, qos=1)
        await acknowledged(pub, timeout_s=60)


async def kpi_snapshot(store: Store) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """Every site's compared windows once the run has settled (all stored, no restatement pending)."""

    async def settled() -> dict[tuple[str, str, int], tuple[Any, ...]] | None:
        if await store.inputs.list_restatements(pending=True):
            return None
        out: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        for site in SITES:
            for period, (start, end) in COMPARED.items():
                windows = await store.kpi_series(site, start, end, period=period)
                if len(windows) != (end - start) // (MIN if period == "1m" else 15 * MIN):
                    return None
                for w in windows:
                    out[(site, period, w.start_ms)] = (
                        round(w.electricity_kwh, 6),
                        round(w.grid_import_kwh, 6),
                        round(w.renewable_generation_kwh, 6),
                        round(w.emissions_kg, 6),
                        w.completeness,
                    )
        return out

    snapshot: dict[tuple[str, str, int], tuple[Any, ...]] = await eventually(
        settled, "every compared KPI window stored and no restatement pending", timeout_s=180
    )
    return snapshot


@pytest.fixture(scope="module")
async def reference(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    """KPIs of one undisturbed processor over the same readings (in-process, memory bus)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("reference"),
        database_url=module_database_url,
        bus_url="memory://",
        demo=False,
        max_age_ms=MAX_AGE_MS,
    )
    async with running_stack(settings, REGISTRY, collector=False, broker=False, api=False) as stack:
        assert stack.store is not None
        assert stack.bus is not None
        for i in range(PER_SITE):
            for site in SITES:
                meter, body = _readings(site, i)
                readings = [
                    Reading(site_id=site, meter_id=meter, ts_ms=int(r["ts"]), energy_kwh=r["energy_kwh"])
                    for r in body
                ]
                await stack.bus.publish(ReadingBatch(site, readings))
        return await kpi_snapshot(stack.store)


class Cluster:
    """The peakwatch processes of the test, each logging to its own file."""

    def __init__(self, tmp: Path, database_url: str, mqtt_url: str, bus_url: str) -> None:
        self.tmp = tmp
        self.config = tmp / "registry.yaml"
        self.config.write_text(REGISTRY_TEXT, encoding="utf-8")
        self.database_url, self.mqtt_url, self.bus_url = database_url, mqtt_url, bus_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start(self, name: str) -> None:
        kind = name.rstrip("-0123456789")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")},
            "PEAKWATCH_MAX_AGE_MS": str(MAX_AGE_MS),
            "PEAKWATCH_MQTT_CLIENT_ID": f"pw-{name}-{self.tmp.name}",
            "PEAKWATCH_MQTT_SHARED_GROUP": "collectors",
        }
        cmd = [sys.executable, "-m", "cli.main", kind, "--config", str(self.config),
               "--database-url", self.database_url, "--bus", self.bus_url]  # fmt: skip
        if kind == "collector":
            cmd += ["--mqtt-url", self.mqtt_url]
        else:
            cmd += ["--data-dir", str(self.tmp / name)]
        with self.log(name).open("ab") as out:
            self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

    def why(self) -> str:
        """The end of every process's log, for a failure message: what each was doing."""
        tails = []
        for name in sorted({*self.procs, *(p.stem for p in self.tmp.glob("*.log"))}):
            log = self.log(name)
            text = log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
            tails.append(f"--- {name} ---\n{text}")
        return "\n".join(tails)

    async def started(self, name: str) -> None:
        await eventually(lambda: "running:" in self.log(name).read_text(), f"{name} started", timeout_s=60)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@pytest.fixture
def cluster(tmp_path: Path, database_url: str, kafka_bootstrap: str, kafka_prefix: str) -> Iterator[Cluster]:
    with running_mosquitto(workdir=tmp_path) as mqtt_url:
        bus = (
            f"kafka://{kafka_bootstrap}?prefix={kafka_prefix}&partitions={PARTITIONS}&session_timeout_ms=6000"
        )
        c = Cluster(tmp_path, database_url, mqtt_url, bus)
        try:
            yield c
        finally:
            c.stop_all()


async def _owners(conn: asyncpg.Connection[Any]) -> dict[str, str]:
    return {r["site_id"]: r["owner"] for r in await conn.fetch("SELECT site_id, owner FROM site_owners")}


async def _stored(store: Store, at_least: int) -> bool:
    return sum([await store.count_readings(site) for site in SITES]) >= at_least


async def test_killing_a_processor_and_a_collector_loses_nothing_and_counts_nothing_twice(
    cluster: Cluster, database_url: str, reference: dict[Any, Any]
) -> None:
    first, second, third = messages(0, 80), messages(80, 80), messages(160, PER_SITE - 160)
    for name in ("processor-1", "processor-2", "collector-1", "collector-2"):
        cluster.start(name)
    for name in ("processor-1", "processor-2", "collector-1", "collector-2"):
        await cluster.started(name)
    store = await Store.connect(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await publish_all(cluster.mqtt_url, first)
        await eventually(
            lambda: _stored(store, 10 * len(first)),
            lambda: f"the first part stored\n{cluster.why()}",
            timeout_s=120,
        )
        owners = await _owners(conn)
        assert set(owners) == set(SITES)
        assert len(set(owners.values())) == 2, owners  # the sites are shared
        victim_pid = str(cluster.procs["processor-1"].pid)
        victim_sites = {s for s, o in owners.items() if f":{victim_pid}:" in o}

        # mid-stream: a processor and a collector die while the second part arrives
        publisher_done = publish_all(cluster.mqtt_url, second)
        cluster.kill("processor-1")
        cluster.kill("collector-1")
        await publisher_done
        cluster.start("collector-1")  # same client id: its persistent session holds what it missed
        await cluster.started("collector-1")
        await eventually(
            lambda: _stored(store, 10 * (len(first) + len(second))),
            lambda: f"the second part stored\n{cluster.why()}",
            timeout_s=120,
        )
        survivor = (await _owners(conn))[next(iter(victim_sites))]
        assert f":{victim_pid}:" not in survivor  # the dead processor's sites moved

        # a processor joins again: sites move back, this time in an orderly hand-over
        cluster.start("processor-1")
        await publish_all(cluster.mqtt_url, third)
        total = 10 * PER_SITE * len(SITES)
        await eventually(
            lambda: _stored(store, total), lambda: f"every reading stored\n{cluster.why()}", timeout_s=180
        )
        assert sum([await store.count_readings(site) for site in SITES]) == total
        assert await kpi_snapshot(store) == reference
        assert len(set((await _owners(conn)).values())) == 2  # shared again
    finally:
        await conn.close()
        await store.close()
    for name in ("processor-1", "processor-2"):
        text = cluster.log(name).read_text()
        assert "Traceback" not in text, text[-3000:]
