"""`peakwatch up` whose output nobody reads any more (`scripts/up | tee up.log` stopped with Ctrl-C, which
ends tee first; a closed terminal, SIGHUP) still stops in order: the embedded PostgreSQL is stopped and
the stack's card removed. Before, the first shutdown message raised BrokenPipeError, which skipped the
whole stop and left the postmaster running on its port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.running import card_path
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_up_stops_in_order_when_its_output_is_closed(data_dir: Path, sig: signal.Signals) -> None:
    cmd = [
        sys.executable, "-m", "cli.main", "up", "--no-demo",
        "--data-dir", str(data_dir),
        "--api-port", str(free_port()), "--mqtt-port", str(free_port()), "--db-port", str(free_port()),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"}
    )
    assert proc.stdout is not None
    seen = b""
    try:
        while b"Press Ctrl-C to stop." not in seen:
            line = proc.stdout.readline()
            assert line, f"up ended before its banner:\n{seen.decode(errors='replace')}"
            seen += line
        pidfile = data_dir / "postgres" / "postmaster.pid"
        assert pidfile.exists()
        assert card_path(data_dir).exists()
        postmaster = int(pidfile.read_text().split()[0])
        proc.stdout.close()  # the reader (tee, a terminal) is gone
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 30
    while _alive(postmaster):
        assert time.monotonic() < deadline, f"the embedded PostgreSQL ({postmaster}) outlived up"
        time.sleep(0.2)  # another process's exit: nothing to await
    assert not card_path(data_dir).exists(), "the stack's card outlived up"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
