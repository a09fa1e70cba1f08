"""Who owns an embedded server is told by the owner's pid and start, which a step of the wall clock
(NTP, VM resume, suspend) must not change: else the watchdog stops a live owner's server, and the
owner leaves its own server running at exit (peakwatch/embedded/ownership.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil  # type: ignore[import-untyped]
import pytest

from peakwatch.embedded import ownership


def step_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock steps 2 minutes forward (after the owner recorded itself): psutil's create_time is
    the boot time (/proc/stat btime, derived from the wall clock) plus the start ticks, so it moves by
    the same 120 s for every process."""
    real = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + 120.0)


@pytest.fixture
def claimed(tmp_path: Path) -> Iterator[ownership.Owner]:
    """This process claims a (serverless) cluster directory: the owner file as ``up`` writes it."""
    with ownership.locked(tmp_path):
        ownership.claim(tmp_path)
    owner = ownership.read_owner(tmp_path)
    assert owner is not None, "claim wrote no readable owner file"
    try:
        yield owner
    finally:
        ownership.clear_owner(tmp_path)  # first: the watchdog then has nothing to guard
        ownership.release_watchdog(tmp_path)


def test_the_owner_is_still_alive_and_current_after_a_clock_step(
    claimed: ownership.Owner, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_the_wall_clock(monkeypatch)
    assert ownership.alive(claimed), "the watchdog would stop the server of a live owner"
    assert ownership.is_current(claimed), "the owner would leave its own server running at exit"


def test_a_pid_reused_by_a_later_process_is_not_the_owner(
    claimed: ownership.Owner, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_the_wall_clock(monkeypatch)
    assert claimed.start_ticks is not None, "no start ticks recorded (is /proc mounted?)"
    # The same pid, started one tick later: another process.
    later = msgspec.structs.replace(claimed, start_ticks=claimed.start_ticks + 1)
    assert not ownership.alive(later)
    assert not ownership.is_current(later)


def test_a_dead_owner_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        owner = ownership.identify(child.pid, "t")
        step_the_wall_clock(monkeypatch)
        assert owner is not None
        assert ownership.alive(owner)
    finally:
        child.kill()
        child.wait()
    assert not ownership.alive(owner)
    assert not ownership.is_current(owner)


def test_an_owner_file_from_before_start_ticks_is_still_read(tmp_path: Path) -> None:
    """A server left running by an older peakwatch is adopted (its owner gone) or shared (alive)."""
    started = psutil.Process(os.getpid()).create_time()
    (tmp_path / ownership.OWNER_NAME).write_text(
        f'{{"pid": {os.getpid()}, "started": {started}, "token": "t"}}'
    )
    owner = ownership.read_owner(tmp_path)
    assert owner == ownership.Owner(pid=os.getpid(), started=started, start_ticks=None, token="t")
    assert ownership.alive(owner)
    assert ownership.is_current(owner)
    assert not ownership.alive(msgspec.structs.replace(owner, started=started - 1))  # a pid reused


def test_start_ticks_are_read_after_the_last_parenthesis(tmp_path: Path) -> None:
    """comm (field 2 of /proc/<pid>/stat) may hold spaces and ')': a program named so keeps its ticks."""
    odd = tmp_path / "a) b (c"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([odd, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert ") b (" in psutil.Process(child.pid).name()
        owner = ownership.identify(child.pid, "t")
        assert owner is not None
        assert owner.start_ticks is not None
        # create_time = boot time + start ticks / ticks per second (psutil), within one tick.
        since_boot = owner.started - psutil.boot_time()
        assert (
            abs(owner.start_ticks / os.sysconf("SC_CLK_TCK") - since_boot)
            <= 1 / os.sysconf("SC_CLK_TCK") + 0.01
        )
    finally:
        child.kill()
        child.wait()
