"""The spool directory's files other than the records: segments as the bus tracks them, the
descriptors it holds, the ``committed`` position file and the fsyncs that make names and commits
durable. Kept apart so that the bus and its recovery share one spelling of each file operation.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

COMMITTED: Final = "committed"
LOCK: Final = "lock"


@dataclass(slots=True)
class Segment:
    base: int
    end: int
    path: Path
    corrupt: bool = False
    """Renamed ``*.corrupt`` by recovery: ``end`` is the end of its valid prefix; never deleted."""


class Files:
    """The descriptors a spool holds, closed by ``close`` or, if the spool is dropped without it (as a
    crash would), by a finalizer: either way the lock is released."""

    __slots__ = ("lock", "write")

    def __init__(self) -> None:
        self.lock = -1
        self.write = -1

    def close(self) -> None:
        for fd in (self.write, self.lock):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.write = self.lock = -1


def fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_committed(directory: Path) -> int | None:
    """The committed position recorded in ``directory``; ``None`` when there is none or it cannot be
    read (then everything is delivered again: at-least-once, never a silent skip)."""
    path = directory / COMMITTED
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.error("spool %s: cannot read %s (%s): delivering everything again", directory, path, exc)
        return None
    try:
        position = int(text.strip())
    except ValueError:
        position = -1
    if position < 0:
        log.error(
            "spool %s: %s holds %r, not a position: delivering everything again",
            directory,
            path,
            text,
        )
        return None
    return position


def persist_commit(directory: Path, position: int, doomed: list[Path], fsync: bool) -> None:
    """Runs in a worker thread (and so takes no spool: a worker still holding one would keep a dropped
    spool, and its lock, alive). The position is replaced atomically before any segment is deleted, so
    a crash in between leaves only committed segments behind (recovery deletes them)."""
    tmp = directory / f"{COMMITTED}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{position}\n".encode())
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / COMMITTED)
    if fsync:
        fsync_dir(directory)
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def corrupt_name(path: Path) -> Path:
    """A free ``*.corrupt`` name beside ``path`` (``x.seg.corrupt``, ``x.seg.1.corrupt``, ...)."""
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{n}.corrupt")
        n += 1
    return target
