"""The embedded server's life cycle: data kept across restarts, recovery from a killed run, port change."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from peakwatch.embedded import EmbeddedPostgres
from peakwatch.net import free_port

pytestmark = pytest.mark.integration


def wait_until_gone(pid: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still alive after {deadline_s}s")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's basetemp, whose permissions other pytest sessions reset
    # (see tests/fixtures/postgres.py).
    root = Path(tempfile.mkdtemp(prefix="peakwatch-test-embedded-"))
    try:
        yield root / "pgdata"
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def fetch_value(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_life_cycle(data_dir: Path) -> None:
    # Durable, as in production: a committed row must survive the postmaster being killed.
    server = EmbeddedPostgres(data_dir, free_port())
    url = server.start()
    try:
        assert url == f"postgresql://postgres@127.0.0.1:{server.port}/peakwatch"
        await fetch_value(url, "CREATE TABLE kept AS SELECT 42 AS answer")
        assert await fetch_value(url, "SHOW listen_addresses") == "127.0.0.1"
        assert server.start() == url  # already running: adopted, not restarted

        # A killed run leaves postmaster.pid behind; its pid may since belong to another process.
        pidfile = data_dir / "postmaster.pid"
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        wait_until_gone(pid)
        lines = pidfile.read_text().splitlines()
        pidfile.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")
        assert server.start() == url
        assert await fetch_value(url, "SELECT answer FROM kept") == 42

        server.stop()
        assert not pidfile.exists()
        server.stop()  # not running: nothing to do

        moved = EmbeddedPostgres(data_dir, free_port())
        moved_url = moved.start()
        assert await fetch_value(moved_url, "SELECT answer FROM kept") == 42
        # Started on another port while running: restarted there.
        again = EmbeddedPostgres(data_dir, free_port())
        assert await fetch_value(again.start(), "SELECT answer FROM kept") == 42
        # Any instance for the cluster can stop it (e.g. another process than the one that started it).
        EmbeddedPostgres(data_dir, 1).stop()
        assert not pidfile.exists()
    finally:
        server.stop()
