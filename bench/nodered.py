"""The other system of ``bench.peer``: a Node-RED flow (``bench/peer/flow.json``) that subscribes to
``telemetry/#``, turns each reading into raw rows (site, meter, ts, quantity, value) and inserts them
into PostgreSQL in batches, computing nothing.

Node-RED and pg are a bench dependency only, never part of the Python package: ``install`` runs
``npm ci`` on ``bench/peer/package.json`` and its lock (pinned versions) into a cache folder named by
their hash, once, and later runs reuse it. The flow and ``bench/peer/settings.js`` come from the
repository; the run's settings (broker port, QoS, database URL, batch size, flush interval) reach
them through the environment.

The flow writes a JSON line per committed INSERT (``{"ev": "w", "t": ..., "r": readings so far}``),
as ``bench/pipeline.py`` does per committed store transaction, so both systems are timed the same
way: to the commit holding the last published reading. ``count(*)`` then checks what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.broker import free_port
from bench.children import ROOT, Child

PEER_DIR = ROOT / "bench" / "peer"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "peakwatch-bench"

RAW_TABLE = """
CREATE TABLE raw_readings (
    site     text NOT NULL,
    meter    text NOT NULL,
    ts       timestamptz NOT NULL,
    quantity text NOT NULL,
    value    double precision NOT NULL
)
"""
"""One row per quantity of a reading (energy_kwh, power_kw), no key, no index: the cheapest table a
user could insert into, so the peer's figures are its best case."""


@dataclass(frozen=True)
class FlowConfig:
    """How the flow batches: a flush every ``batch_rows`` rows or ``flush_ms``, ``pool`` connections."""

    batch_rows: int = 1000
    flush_ms: int = 200
    pool: int = 4


def install(npm: str = "npm") -> Path:
    """The ``node_modules`` folder holding the pinned node-red and pg (installed on first use)."""
    manifest = PEER_DIR / "package.json"
    lock = PEER_DIR / "package-lock.json"
    digest = hashlib.sha256(manifest.read_bytes() + lock.read_bytes()).hexdigest()[:12]
    target = CACHE / f"peer-{digest}"
    modules = target / "node_modules"
    if (modules / "node-red" / "red.js").exists() and (modules / "pg").is_dir():
        return modules
    if shutil.which("node") is None or shutil.which(npm) is None:
        raise SystemExit("bench.peer needs node (>= 18.5) and npm on the PATH")
    staging = CACHE / f"peer-{digest}.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy(manifest, staging)
    shutil.copy(lock, staging)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--omit=dev"], cwd=staging, check=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # whole or not at all: an interrupted install is never reused
    return modules


async def create_table(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(RAW_TABLE)
    finally:
        await conn.close()


async def count_stored(database_url: str) -> tuple[int, int]:
    """Readings stored (rows of their energy register: every reading has one) and rows."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE quantity = 'energy_kwh') AS readings, count(*) AS rows"
            " FROM raw_readings"
        )
        assert row is not None
        return int(row["readings"]), int(row["rows"])
    finally:
        await conn.close()


async def start(
    spawned: list[Child],
    modules: Path,
    directory: Path,
    *,
    mqtt_port: int,
    qos: int,
    database_url: str,
    flow: FlowConfig,
) -> Child:
    """Node-RED on a copy of the flow (its user directory: ``directory``)."""
    flow_file = _copy_flow(directory)
    env = {
        **os.environ,
        "NODE_ENV": "production",
        "PEER_NODE_MODULES": str(modules),
        "PEER_MQTT_PORT": str(mqtt_port),
        "PEER_QOS": str(qos),
        "PEER_DATABASE_URL": database_url,
        "PEER_BATCH_ROWS": str(flow.batch_rows),
        "PEER_FLUSH_MS": str(flow.flush_ms),
        "PEER_POOL": str(flow.pool),
        "PEER_UI_PORT": str(free_port()),
    }
    red = await Child.exec(
        "node-red",
        shutil.which("node") or "node",
        str(modules / "node-red" / "red.js"),
        "--settings",
        str(PEER_DIR / "settings.js"),
        "--userDir",
        str(directory),
        str(flow_file),
        env=env,
    )
    spawned.append(red)
    return red


def _copy_flow(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    flow_file = directory / "flow.json"
    shutil.copy(PEER_DIR / "flow.json", flow_file)
    return flow_file


async def wait_connected(red: Child, timeout_s: float) -> None:
    """Until the MQTT node is connected (status green); its SUBSCRIBE follows the CONNACK at once."""
    async with asyncio.timeout(timeout_s):
        while not any(e.get("ev") == "status" and e.get("fill") == "green" for e in red.events):
            if red.proc.returncode is not None:
                raise RuntimeError(f"node-red exited (code {red.proc.returncode}) before connecting")
            red.changed.clear()
            await red.changed.wait()


async def wait_stored(red: Child, published: int, *, idle_s: float, timeout_s: float) -> float | None:
    """When the INSERT holding the last published reading committed; ``None`` if the flow stopped
    committing for ``idle_s`` (or ``timeout_s`` passed) short of it. Reads the new lines only, a few
    times a second: the parent shares the cores with both systems."""
    deadline = time.monotonic() + timeout_s
    quiet_since, seen = time.monotonic(), 0
    while time.monotonic() < deadline:
        fresh = red.events[seen:]
        seen += len(fresh)
        for event in fresh:
            if event.get("ev") == "w" and int(event["r"]) >= published:
                return float(event["t"])
        if fresh:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > idle_s or red.proc.returncode is not None:
            return None
        await asyncio.sleep(0.2)
    return None


def last_commit_s(red: Child) -> float | None:
    commits = [e for e in red.events if e.get("ev") == "w"]
    return float(commits[-1]["t"]) if commits else None


async def stop(red: Child) -> None:
    """SIGTERM (Node-RED closes its flow: the last batch is flushed), then wait for the exit."""
    if red.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            red.proc.terminate()
    await red.finish(30)
