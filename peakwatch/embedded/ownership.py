"""Who owns an embedded PostgreSQL server, and the watchdog that stops it when its owner is gone.

``pg_ctl start`` daemonizes: the postmaster runs in a session of its own, re-parented to init, so
nothing ties it to the process that started it, and a SIGKILLed ``peakwatch up`` left it running.
Tying the postmaster itself to its starter was rejected: ``PR_SET_PDEATHSIG`` fires when the *thread*
that forked ends (the server is started from a worker thread), is cleared by the switch to the
server's system user under root, and needs the postmaster as a direct child (no ``pg_ctl``); a pipe
whose EOF the server notices ties it to one process for good, while ``peakwatch up`` must be able
to take over a server a command started.

So each server has an *owner*, the one process that stops it, recorded in ``peakwatch.owner`` in the
cluster's directory: its pid and start time (a pid since reused by another program is not mistaken
for it) and a token. Claiming a server writes that file and spawns a *watchdog* with the token: a
small process (``peakwatch/embedded/watchdog.py``) in a session of its own, so terminal signals and a
kill of the owner's process group do not reach it. It looks at the owner every ``POLL_S`` seconds
and once the owner is gone stops the server (fast shutdown, then immediate) and removes the file. A
watchdog whose token is no longer the file's (the owner stopped the server, or another process took
it over) exits. Every change of owner and every stop happens under an exclusive ``flock`` on
``peakwatch.lock``, so a watchdog never stops a server that another process has just adopted.

Should the watchdog die with its owner (both killed), the server is left with an owner that is gone:
the next start says so and adopts it, and it then stops with its new owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil  # type: ignore[import-untyped]

OWNER_NAME = "peakwatch.owner"
LOCK_NAME = "peakwatch.lock"
WATCHDOG_LOG = "watchdog.log"
POLL_S = 0.2
"""How often a watchdog looks at its owner: a killed owner's server starts stopping within this."""
_SAME_START_S = 0.01


class Owner(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    started: float
    """The process's start time (psutil ``create_time``): identifies it where ``start_ticks`` cannot."""
    start_ticks: int | None = None
    """Its start in clock ticks since boot (Linux); None in files written before it was recorded."""
    token: str
    """Names the watchdog that guards this ownership."""


def identify(pid: int, token: str) -> Owner | None:
    """What ``claim`` records for process ``pid``; None once it is gone."""
    started = _start_time(pid)
    if started is None:
        return None
    return Owner(pid=pid, started=started, start_ticks=_start_ticks(pid), token=token)


def _start_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``; None without procfs or once the process is gone. Unlike
    ``create_time`` (boot time, itself derived from the wall clock, plus these ticks), it does not
    move when the wall clock is stepped (NTP, VM resume, suspend)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        # comm (field 2) is in parentheses and may hold spaces and ')': field 3 follows the last ')'.
        return int(stat[stat.rindex(b")") + 1 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _same_start(owner: Owner) -> bool:
    """``owner.pid`` is still the process ``owner`` recorded, not a later one given the same pid. By
    start ticks when both sides have them; else (no procfs, or a file from before they were recorded)
    by ``create_time``, which on Linux shifts with a step of the wall clock."""
    ticks = _start_ticks(owner.pid)
    if ticks is not None and owner.start_ticks is not None:
        return ticks == owner.start_ticks
    started = _start_time(owner.pid)
    return started is not None and abs(started - owner.started) < _SAME_START_S


def alive(owner: Owner) -> bool:
    """The owner still runs (a zombie, killed and not yet reaped, does not)."""
    try:
        if psutil.Process(owner.pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    return _same_start(owner)


def is_current(owner: Owner) -> bool:
    """The owner is this process."""
    return owner.pid == os.getpid() and _same_start(owner)


@contextlib.contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    """Hold the cluster's ownership lock (blocking): claims, hand-overs and stops are serialised."""
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)  # not inheritable (PEP 446)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_owner(data_dir: Path) -> Owner | None:
    try:
        return msgspec.json.decode((data_dir / OWNER_NAME).read_bytes(), type=Owner)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def clear_owner(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / OWNER_NAME).unlink()


_watchdogs: dict[Path, tuple[str, subprocess.Popen[bytes]]] = {}
"""The watchdogs this process spawned, by cluster: reaped when they are no longer needed."""


def claim(data_dir: Path) -> None:
    """Make this process the server's owner and guard it with a watchdog (call under ``locked``).
    Claiming again what this process already owns, with its watchdog running, changes nothing."""
    owner = read_owner(data_dir)
    mine = _watchdogs.get(data_dir)
    if owner is not None and is_current(owner) and mine is not None:
        token, proc = mine
        if token == owner.token and proc.poll() is None:
            return
    owner = identify(os.getpid(), uuid.uuid4().hex)
    assert owner is not None  # this process runs
    path = data_dir / OWNER_NAME
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(msgspec.json.encode(owner))
    tmp.replace(path)
    release_watchdog(data_dir)
    with (data_dir / WATCHDOG_LOG).open("ab") as log:
        # S603: our own interpreter and module; cwd "/" so no working directory is held.
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "peakwatch.embedded.watchdog", str(data_dir), owner.token],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            start_new_session=True,
        )
    _watchdogs[data_dir] = (owner.token, proc)


def release_watchdog(data_dir: Path) -> None:
    """End and reap the watchdog this process spawned for ``data_dir``, if any (its ownership is over:
    the server was stopped, or handed to another process, whose own watchdog guards it)."""
    mine = _watchdogs.pop(data_dir, None)
    if mine is None:
        return
    proc = mine[1]
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
