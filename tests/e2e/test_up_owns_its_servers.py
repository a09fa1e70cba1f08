"""``peakwatch up`` owns what it runs: killed with SIGKILL, its embedded PostgreSQL stops too (its
watchdog, peakwatch/embedded/ownership.py), and the next ``up`` starts on the same ports without
anyone killing anything; the embedded broker is in the process and dies with it. A server left
running with no owner (its watchdog killed too) is recovered by whichever comes first: a command,
which stops it when it ends, or ``up``, which owns it from then on. Real processes throughout.

Before the watchdog, the postmaster (``pg_ctl`` runs it in a session of its own) outlived a
SIGKILLed ``up``, and a command run meanwhile adopted it and left it running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from peakwatch.net import free_port
from tests.support import eventually, processes_of, watchdog_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REGISTRY = """
sites:
  - id: owned
    name: Owned
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
"""
ADOPTED = re.compile(r"left by a process that is gone \(pid \d+\): adopting it; it now stops with this")


class Up:
    """``peakwatch up`` as a process on fixed ports and one data directory, started again at will."""

    def __init__(self, data_dir: Path, tmp_path: Path) -> None:
        config = tmp_path / "owned.yaml"
        config.write_text(REGISTRY, encoding="utf-8")
        self.data_dir, self.config = data_dir, config
        self.where = ["--config", str(config), "--data-dir", str(data_dir)]
        self.api_port, self.mqtt_port, self.db_port = free_port(), free_port(), free_port()
        self.log = tmp_path / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def env(self) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")}, "COLUMNS": "200"}

    def launch(self) -> int:
        """Start the process; returns where its output begins in the log."""
        cmd = [
            sys.executable, "-m", "cli.main", "up", "--no-demo", "--config", str(self.config),
            "--data-dir", str(self.data_dir), "--api-port", str(self.api_port),
            "--mqtt-port", str(self.mqtt_port), "--db-port", str(self.db_port),
        ]  # fmt: skip
        offset = len(self.log.read_text()) if self.log.exists() else 0  # characters, not bytes
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env())
        self.runs += 1
        return offset

    async def start(self) -> str:
        """Start and wait until it runs; returns what this run printed so far."""
        offset = self.launch()

        def started() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"peakwatch up exited:\n{self.log.read_text()[offset:]}"
            return "peakwatch is running" in self.log.read_text()[offset:]

        await eventually(started, f"peakwatch up (run {self.runs}) started", timeout_s=120)
        text = self.log.read_text()[offset:]
        # The same ports as before: nothing of an earlier run holds them.
        assert "is in use" not in text, text
        assert re.search(rf"Broker\s+mqtt://127\.0\.0\.1:{self.mqtt_port}\b", text), text
        assert f"127.0.0.1:{self.db_port}/" in text, text
        return text

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=90)

    def command(self, *args: str) -> str:
        """A CLI command beside (or instead of) ``up``, found through ``--data-dir`` only."""
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", *args, *self.where],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=180,
            check=False,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"peakwatch {' '.join(args)} exited {proc.returncode}:\n{out}"
        assert "Traceback" not in out, out
        return out

    def postmaster(self) -> int:
        return int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])

    def kill_with_watchdog(self) -> None:
        """SIGKILL the watchdog, then ``up``: its server is left running with no one to stop it."""
        assert self.proc is not None
        watchdog_of(self.proc.pid).kill()
        assert self.signal(signal.SIGKILL) == -signal.SIGKILL
        assert processes_of(self.data_dir), "the server should be left running"


def nothing_runs(data_dir: Path) -> bool:
    running = processes_of(data_dir)
    assert not running, running
    return not (data_dir / "postgres" / "postmaster.pid").exists()


async def test_a_killed_up_takes_its_database_with_it(data_dir: Path, tmp_path: Path) -> None:
    up = Up(data_dir, tmp_path)
    try:
        await up.start()
        postmaster = up.postmaster()
        assert up.signal(signal.SIGKILL) == -signal.SIGKILL
        await eventually(lambda: nothing_runs(data_dir), "the killed stack's database stopped", timeout_s=30)
        assert (
            f"(pid {up.proc.pid if up.proc else 0}) is gone: stopping the server"
            in (data_dir / "postgres" / "watchdog.log").read_text()
        )

        await up.start()  # same ports: the database's and the broker's were freed
        assert up.postmaster() != postmaster
        assert up.signal(signal.SIGTERM) == 0
        assert "stopped cleanly" in up.log.read_text()
        assert nothing_runs(data_dir)

        # With no stack running, a command starts its own server and stops it when it ends.
        assert "admin" in up.command("users", "list")
        assert nothing_runs(data_dir)
    finally:
        if up.proc is not None and up.proc.poll() is None:
            up.signal(signal.SIGINT)


async def test_a_server_left_without_owner_is_recovered_by_a_command_or_by_up(
    data_dir: Path, tmp_path: Path
) -> None:
    up = Up(data_dir, tmp_path)
    try:
        await up.start()
        up.kill_with_watchdog()
        # A command comes first: it adopts the server, says so, and stops it when it ends.
        out = up.command("users", "list")
        assert ADOPTED.search(out), out
        assert nothing_runs(data_dir)

        await up.start()
        postmaster = up.postmaster()
        up.kill_with_watchdog()
        # `up` comes back first: it adopts the server on the same port and owns it from then on.
        text = await up.start()
        assert ADOPTED.search(text), text
        assert up.postmaster() == postmaster
        assert up.signal(signal.SIGINT) == 0
        assert "stopped cleanly" in up.log.read_text()
        assert nothing_runs(data_dir)
    finally:
        if up.proc is not None and up.proc.poll() is None:
            up.signal(signal.SIGINT)
