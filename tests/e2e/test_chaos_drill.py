"""Outage drills of issue 15 with ``peakwatch up`` as a process, on the helpers and the input of
``test_failure_drills`` (KPIs compared with its undisturbed ``reference`` run):

* Ten database outages of random length in one run: PostgreSQL is stopped and started again while a
  QoS 1 publisher keeps sending; the process never exits and every reading is stored once.
* ``up`` started while its database is down waits for it, then runs.
* The chaos drill: while the publisher runs, the database is stopped and started 5 times at random
  moments, the broker (mosquitto, persistence on) restarted twice and ``peakwatch up`` SIGKILLed once
  and started again. Afterwards: published = stored, nothing twice, the KPI windows equal the clean
  run's, the process alive and every component healthy (the processor writing, the notifier leading).

Each run draws its moments from a seed printed in every failure message; ``PEAKWATCH_TEST_CHAOS_SEED``
replays one. Both stay within a few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from peakwatch.embedded.postgres import EmbeddedPostgres
from peakwatch.net import free_port
from peakwatch.store import Store
from tests.e2e import test_failure_drills
from tests.e2e.test_failure_drills import (
    MESSAGES,
    REGISTRY_TEXT,
    _count,
    _start_up,
    batches,
    kpi_snapshot,
    own_postgres,
    publish_all,
)
from tests.fixtures.mqtt import mosquitto_path, running_mosquitto
from tests.support import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (a broker with persistence)"),
]

NOTIFYING_REGISTRY_TEXT = (
    REGISTRY_TEXT
    + """
notifications:
  receivers:
    - name: oncall
      channels: [{type: webhook, url: "http://127.0.0.1:9/hook"}]
  route: {receiver: oncall}
"""
)
"""The drill's sites with a notifier, so its leadership connection goes through the outages too (no
alert fires: nothing is sent)."""
RUNNING = "peakwatch is running"
reference = test_failure_drills.reference
"""The undisturbed run's KPIs over the same input (that module's fixture, shared)."""


def _seed() -> int:
    return int(os.environ.get("PEAKWATCH_TEST_CHAOS_SEED") or random.randrange(1_000_000))


class Up:
    """The ``peakwatch up`` process of a drill, restarted in place after a SIGKILL."""

    def __init__(self, tmp_path: Path, database_url: str, mqtt_url: str, seed: int) -> None:
        self.tmp_path, self.database_url, self.mqtt_url = tmp_path, database_url, mqtt_url
        self.client_id = f"pw-chaos-{uuid.uuid4().hex[:8]}"
        self.api_port = free_port()
        self.log = tmp_path / "up.log"
        self.seed = seed
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.launch()
        await eventually(
            lambda: self.log.read_text().count(RUNNING) == self.starts,
            f"peakwatch up started ({self.starts}); {self.why()}",
            timeout_s=60,
        )

    def launch(self) -> None:
        self.starts += 1
        self.proc = _start_up(
            self.tmp_path,
            self.database_url,
            self.mqtt_url,
            self.client_id,
            self.log,
            api_port=self.api_port,
            registry_text=NOTIFYING_REGISTRY_TEXT,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def assert_alive(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"peakwatch up exited with {self.proc.returncode}; {self.why()}"

    def why(self) -> str:
        tail = self.log.read_text()[-3000:] if self.log.exists() else ""
        return f"seed {self.seed} (PEAKWATCH_TEST_CHAOS_SEED); log tail:\n{tail}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


async def _database_outages(
    pg: EmbeddedPostgres,
    count: int,
    rng: random.Random,
    check: Callable[[], None],
    *,
    up_between_s: tuple[float, float],
    down_s: tuple[float, float],
    db_lock: asyncio.Lock,
) -> list[float]:
    """``count`` times: the database up for a random while, then stopped for a random while.
    ``db_lock`` is held while it is down (a restart of ``up`` waits for it); ``check`` after each."""
    lengths = []
    for _ in range(count):
        await asyncio.sleep(rng.uniform(*up_between_s))  # the drill's own pace, not an assertion
        async with db_lock:
            await asyncio.to_thread(pg.stop)
            length = rng.uniform(*down_s)
            await asyncio.sleep(length)
            await asyncio.to_thread(pg.start)
        lengths.append(length)
        check()
    return lengths


async def _healthy(api: httpx.AsyncClient) -> dict[str, Any] | None:
    """Everything ok, and the notifier leading again (it retries every 5 s after losing its lock)."""
    body: dict[str, Any] = (await api.get("/healthz")).json()
    notifier = [c for c in body["components"] if c["name"] == "notifier"]
    leading = all(c["detail"] == "sending" for c in notifier)
    return body if body["status"] == "ok" and all(c["ok"] for c in body["components"]) and leading else None


async def _settled_and_healthy(up: Up, expected: int) -> tuple[dict[Any, Any], dict[str, Any], str]:
    """Every reading stored, the KPIs settled, /healthz ok: the snapshot, the health and /metrics."""
    store = await Store.connect(up.database_url)
    try:
        await eventually(lambda: _count(store, expected), f"every reading stored; {up.why()}", timeout_s=120)
        assert await store.count_readings("drill") == expected  # and none twice
        snapshot = await kpi_snapshot(store)
    finally:
        await store.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{up.api_port}", timeout=10) as api:
        health = await eventually(lambda: _healthy(api), f"/healthz ok; {up.why()}", timeout_s=60)
        metrics = (await api.get("/metrics")).text
    up.assert_alive()
    return snapshot, health, metrics


def _assert_recovered(health: dict[str, Any], metrics: str, log: str) -> None:
    names = {c["name"]: c for c in health["components"]}
    assert health["database"]["ok"] is True
    assert names["processor"]["detail"] == "writing"
    assert names["notifier"]["detail"] == "sending"  # leading again after its connection was lost
    # the outages were seen, and no failure was taken for a permanent one
    assert 'peakwatch_processor_store_errors_total{retryable="false"}' not in metrics
    assert "Traceback" not in log


async def test_ten_database_outages_the_process_never_exits(
    tmp_path: Path, reference: dict[Any, Any]
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    messages = batches(0, MESSAGES)
    async with own_postgres() as pg:
        with running_mosquitto(workdir=tmp_path) as url:
            up = Up(tmp_path, pg.url, url, seed)
            try:
                await up.start()
                outages = asyncio.create_task(
                    _database_outages(
                        pg,
                        10,
                        rng,
                        up.assert_alive,
                        up_between_s=(0.5, 2.5),
                        down_s=(0.2, 3.0),
                        db_lock=asyncio.Lock(),
                    )
                )
                await publish_all(url, messages, over_s=30)
                await outages
                snapshot, health, metrics = await _settled_and_healthy(up, 10 * MESSAGES)
            finally:
                up.stop()
    assert snapshot == reference
    _assert_recovered(health, metrics, up.log.read_text())
    assert up.log.read_text().count("store write failed") >= 1  # the outages did hit the writes


async def test_up_started_before_its_database_waits_for_it(tmp_path: Path) -> None:
    """A database not there yet when ``up`` starts (a host still booting, a container restarting) is
    waited for, then used: the process does not exit, and what was published meanwhile is stored."""
    seed = _seed()
    async with own_postgres() as pg:
        await asyncio.to_thread(pg.stop)
        with running_mosquitto(workdir=tmp_path) as url:
            up = Up(tmp_path, pg.url, url, seed)
            try:
                up.launch()
                await eventually(
                    lambda: "waiting for the database" in up.log.read_text(),
                    f"up says it waits; {up.why()}",
                    timeout_s=60,
                )
                up.assert_alive()
                await asyncio.to_thread(pg.start)
                running = f"up running; {up.why()}"
                await eventually(lambda: RUNNING in up.log.read_text(), running, timeout_s=60)
                await publish_all(url, batches(0, 20))  # 20 messages of 10 readings
                store = await Store.connect(pg.url)
                try:
                    await eventually(lambda: _count(store, 200), f"readings stored; {up.why()}", timeout_s=60)
                finally:
                    await store.close()
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{up.api_port}", timeout=10) as api:
                    await eventually(lambda: _healthy(api), f"/healthz ok; {up.why()}", timeout_s=60)
                up.assert_alive()
            finally:
                up.stop()
    assert "Traceback" not in up.log.read_text()


async def test_chaos_drill(tmp_path: Path, reference: dict[Any, Any]) -> None:
    seed = _seed()
    rng = random.Random(seed)
    chunks = [batches(i * MESSAGES // 4, MESSAGES // 4) for i in range(4)]
    broker_port = free_port()
    broker_config = f"persistence true\npersistence_location {tmp_path}/\n"
    if os.geteuid() == 0:
        broker_config += "user root\n"  # as root, mosquitto drops to a user that cannot write tmp_path
    db_lock = asyncio.Lock()
    broker = contextlib.ExitStack()

    def restart_broker() -> str:
        nonlocal broker
        broker.close()  # SIGTERM: what the collector has not taken yet is saved
        broker = contextlib.ExitStack()
        return broker.enter_context(running_mosquitto(broker_port, tmp_path, extra_config=broker_config))

    async with own_postgres() as pg:
        url = broker.enter_context(running_mosquitto(broker_port, tmp_path, extra_config=broker_config))
        up = Up(tmp_path, pg.url, url, seed)
        try:
            await up.start()
            outages = asyncio.create_task(
                _database_outages(
                    pg, 5, rng, lambda: None, up_between_s=(1.0, 6.0), down_s=(0.5, 4.0), db_lock=db_lock
                )
            )
            await publish_all(url, chunks[0], over_s=8)
            url = restart_broker()
            publishing = asyncio.create_task(publish_all(url, chunks[1], over_s=8))
            await asyncio.sleep(rng.uniform(1.0, 6.0))  # a random moment of the publisher's run
            async with db_lock:  # ``up`` needs the database to start
                up.kill()
                await up.start()
            await publishing
            url = restart_broker()
            await publish_all(url, chunks[2], over_s=8)
            await publish_all(url, chunks[3], over_s=4)
            lengths = await outages
            up.assert_alive()
            snapshot, health, metrics = await _settled_and_healthy(up, 10 * MESSAGES)
        finally:
            up.stop()
            broker.close()
    assert len(lengths) == 5
    assert snapshot == reference, up.why()
    _assert_recovered(health, metrics, up.log.read_text())
