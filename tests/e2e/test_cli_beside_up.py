"""Every database command typed beside a running ``peakwatch up`` (each a process of its own, as an
operator types them) uses the stack's database and leaves it running: afterwards the stack still
stores what devices publish and still serves the API, and it stops cleanly with its database.

Before the running stack's card (cli/running.py), ``users list`` started or adopted the stack's
embedded PostgreSQL on port 5433 (restarting it there) and stopped it on exit: the stack looped on
``ConnectionRefusedError`` and the API answered 503."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest

from peakwatch.net import free_port
from peakwatch.store import Store
from tests.fixtures.mqtt import acknowledged, publisher
from tests.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MIN = 60_000
REGISTRY = """
sites:
  - id: beside
    name: Beside the CLI
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
"""


def _env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")}, "COLUMNS": "200"}


def start_up(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env())


def peakwatch(data_dir: Path, *args: str) -> tuple[str, str]:
    """One CLI command as its own process, found only through ``--data-dir`` (no URL, no port).
    Returns its standard output (what it prints once: a password, a secret) and all it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=180,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"peakwatch {' '.join(args)} exited {proc.returncode}:\n{out}"
    assert "Traceback" not in out, out
    return proc.stdout, out


async def publish(mqtt_url: str, start_ms: int, values: list[float]) -> None:
    """One reading a minute from ``start_ms`` on, QoS 1, until the broker acknowledged them."""
    async with publisher(mqtt_url) as client:
        for i, value in enumerate(values):
            body = msgspec.json.encode({"ts": start_ms + i * MIN, "energy_kwh": value})
            client.publish("telemetry/beside/grid-in", body, qos=1)
        await acknowledged(client, timeout_s=30)


async def stored(store: Store, n: int) -> bool:
    return await store.count_readings("beside") >= n


async def test_database_commands_beside_up_leave_the_stack_running(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "beside.yaml"
    config.write_text(REGISTRY, encoding="utf-8")
    api_port, mqtt_port, db_port = free_port(), free_port(), free_port()
    mqtt_url = f"mqtt://127.0.0.1:{mqtt_port}"
    cmd = [
        sys.executable, "-m", "cli.main", "up", "--no-demo", "--config", str(config),
        "--data-dir", str(data_dir), "--api-port", str(api_port), "--mqtt-port", str(mqtt_port),
        "--db-port", str(db_port),
    ]  # fmt: skip
    log = tmp_path / "up.log"
    proc = start_up(cmd, log)
    api = f"http://127.0.0.1:{api_port}"
    w0 = (int(time.time() * 1000) // MIN - 20) * MIN  # 20 minutes ago: windows close at once
    store: Store | None = None
    try:
        await eventually(
            lambda: "peakwatch is running" in log.read_text(), "peakwatch up started", timeout_s=90
        )
        store = await Store.connect(f"postgresql://postgres@127.0.0.1:{db_port}/peakwatch")
        await publish(mqtt_url, w0, [100.0 + i for i in range(6)])
        await eventually(lambda: stored(store, 6), "the first readings stored")

        _, listed = peakwatch(data_dir, "users", "list", "--config", str(config))
        assert "admin" in listed
        reset, _ = peakwatch(data_dir, "users", "reset-password", "admin", "--config", str(config))
        password = reset.strip()
        _, added = peakwatch(data_dir, "devices", "add", "gw-1", "--site", "beside", "--config", str(config))
        assert "secret" in added
        assert "accepts every" in added  # the embedded broker ignores credentials, and says so
        _, migrated = peakwatch(data_dir, "db", "migrate", "--config", str(config))
        assert "registry: 1 sites" in migrated
        start = datetime.fromtimestamp(w0 / 1000, UTC).isoformat()
        end = datetime.fromtimestamp((w0 + 4 * MIN) / 1000, UTC).isoformat()
        _, restated = peakwatch(
            data_dir, "db", "restate", "--site", "beside", "--from", start, "--to", end, "--wait"
        )
        assert "done" in restated

        assert proc.poll() is None, log.read_text()
        await publish(mqtt_url, w0 + 6 * MIN, [106.0 + i for i in range(4)])
        await eventually(lambda: stored(store, 10), "readings stored after the commands", timeout_s=30)
        async with httpx.AsyncClient(base_url=api) as client:
            health = (await client.get("/healthz")).json()
            assert health["status"] == "ok", health
            login = await client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
            assert login.status_code == 200, login.text
    finally:
        if store is not None:
            await store.close()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)
    text = log.read_text()
    assert code == 0, text
    assert "stopped cleanly" in text
    assert "ConnectionRefusedError" not in text, text
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "embedded PostgreSQL still running"
    assert not (data_dir / "run" / "stack.json").exists(), "the stack's card outlived it"
    assert re.search(r"Broker\s+mqtt://127\.0\.0\.1:" + str(mqtt_port), text), text
