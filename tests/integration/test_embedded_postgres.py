"""The embedded server's life cycle: data kept across restarts, recovery from a killed run, port change;
who owns the server, and that it stops when its owner is killed."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest

from peakwatch.embedded import EmbeddedPostgres
from peakwatch.net import free_port
from tests.support import processes_of, watchdog_of

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
        EmbeddedPostgres(root / "pgdata", 1).stop()  # a test that failed may leave a server behind
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


# ---------------------------------------------------------------------------------------- ownership
# Before peakwatch/embedded/ownership.py, ``pg_ctl`` daemonized the postmaster and nothing stopped it
# when the process that started it was killed: it kept its port until someone killed it by hand.

OWNER = """
import sys
from pathlib import Path
from peakwatch.embedded import EmbeddedPostgres
pg = EmbeddedPostgres(Path(sys.argv[1]), int(sys.argv[2]), durable=False, timescale=False)
pg.start()
print(pg.port, flush=True)
sys.stdin.read()
pg.stop()
"""


@contextlib.contextmanager
def owner_process(data_dir: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """Another process that starts (so owns) the cluster's server; killed at the end if still alive."""
    with subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_dir), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == str(port), "the owner process did not start the server"
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def wait_until_ended(proc: psutil.Process, deadline_s: float = 10.0) -> None:
    """Until ``proc`` exits (a zombie its parent has not reaped yet counts: it runs no more)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {proc.pid} still running after {deadline_s}s")


def test_a_killed_owner_takes_its_server_with_it(data_dir: Path) -> None:
    port = free_port()
    with owner_process(data_dir, port) as proc:
        postmaster = postmaster_pid(data_dir)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    wait_until_gone(postmaster, deadline_s=30)
    assert not (data_dir / "postmaster.pid").exists()
    assert "is gone: stopping the server" in (data_dir / "watchdog.log").read_text()
    deadline = time.monotonic() + 10
    while processes_of(data_dir) and time.monotonic() < deadline:  # the watchdog exits after the stop
        time.sleep(0.05)
    assert processes_of(data_dir) == []
    # Its port is free again: a new owner starts there, without anyone killing anything.
    server = EmbeddedPostgres(data_dir, port, durable=False, timescale=False)
    try:
        assert server.start() == f"postgresql://postgres@127.0.0.1:{port}/peakwatch"
    finally:
        server.stop()


async def test_a_live_owners_server_is_shared_or_taken_over(data_dir: Path) -> None:
    port = free_port()
    with owner_process(data_dir, port) as proc:
        postmaster = postmaster_pid(data_dir)
        # A command beside it uses it on its port and leaves it running.
        guest = EmbeddedPostgres(data_dir, free_port())
        assert guest.join() is False
        assert guest.port == port
        guest.release()
        assert await fetch_value(guest.url, "SELECT 1") == 1

        # `peakwatch up` takes it over: the first owner's watchdog retires, its death stops nothing.
        watchdog = watchdog_of(proc.pid)
        taker = EmbeddedPostgres(data_dir, free_port())
        try:
            taker.start()
            assert taker.port == port
            wait_until_ended(watchdog)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            assert postmaster_pid(data_dir) == postmaster
            assert await fetch_value(taker.url, "SELECT 1") == 1
        finally:
            taker.stop()
    wait_until_gone(postmaster)


async def test_a_server_whose_owner_and_watchdog_were_killed_is_adopted(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    with owner_process(data_dir, port) as proc:
        postmaster = postmaster_pid(data_dir)
        watchdog_of(proc.pid).kill()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        owner_pid = proc.pid
    assert postmaster_pid(data_dir) == postmaster  # nobody left to stop it
    server = EmbeddedPostgres(data_dir, port)  # on its port, as cli.common.database_url does
    with caplog.at_level(logging.WARNING):
        assert server.join() is True  # its owner is gone: this process owns it now
    assert postmaster_pid(data_dir) == postmaster  # adopted, not restarted
    assert f"left by a process that is gone (pid {owner_pid}): adopting it" in caplog.text
    assert await fetch_value(server.url, "SELECT 1") == 1
    server.release()
    wait_until_gone(postmaster)
    assert not (data_dir / "postmaster.pid").exists()
