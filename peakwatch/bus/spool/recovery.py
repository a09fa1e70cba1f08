"""Opening a spool directory after whatever ended the last process: a clean stop, a SIGKILL or a
power cut (the rules are in the package docstring, "Recovery").

``recover`` reads as its stages: forget a half-written commit file, list the segments, read the
committed position, check every segment (deleting committed ones, truncating a torn tail, setting a
damaged segment aside), open the segment to append to, and delete what is committed. It changes
files only in ways a crash at any point leaves recoverable again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from peakwatch.bus.spool.files import COMMITTED, Files, Segment, corrupt_name, fsync_dir, read_committed
from peakwatch.bus.spool.records import SEGMENT_NAME, is_torn, scan, segment_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recovered:
    """Where the opened spool stands; record numbers count from 0 at ``committed``."""

    segments: list[Segment]
    """Segments holding uncommitted records, then the one to append to (last)."""
    committed: int
    write_end: int
    uncommitted: int
    """Records after ``committed``: delivered again before anything new."""


def recover(directory: Path, files: Files, *, fsync: bool) -> Recovered:
    """Check and repair ``directory`` (locked by the caller) and open its active segment into
    ``files.write`` (there, the caller's finalizer closes it whatever fails after)."""
    with contextlib.suppress(FileNotFoundError):
        (directory / f"{COMMITTED}.tmp").unlink()  # a commit the crash cut short: the old one holds
    found = _segment_files(directory)
    committed = read_committed(directory)
    if committed is None:
        committed = found[0][0] if found else 0
    check = _Check(directory, committed, fsync=fsync)
    for i, (base, path) in enumerate(found):
        check.segment(base, path, next_base=found[i + 1][0] if i + 1 < len(found) else None)
    active = check.open_active(files)
    return check.result(active)


def _segment_files(directory: Path) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        match = SEGMENT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    return found


class _Check:
    """The segments seen so far, oldest first, and the committed position, which moves back to a
    record's start when the recorded one falls inside it."""

    def __init__(self, directory: Path, committed: int, *, fsync: bool) -> None:
        self.directory = directory
        self.committed = committed
        self.fsync = fsync
        self.uncommitted = 0
        self.live: list[Segment] = []

    def segment(self, base: int, path: Path, *, next_base: int | None) -> None:
        """Check one segment file; ``next_base`` is where the next one starts (``None``: the last)."""
        last = next_base is None
        size = path.stat().st_size
        if next_base is not None and base + size <= self.committed:
            path.unlink()  # committed; the crash came between recording the commit and deleting
            return
        limit = size if next_base is None else max(0, min(size, next_base - base))
        valid, starts, problem = scan(path, limit)
        if problem is None and valid < size:
            problem = f"{size - valid} byte(s) overlap the next segment"
        if problem is not None:
            if last:
                self._cut_tail(path, base, valid, size, problem)
            else:
                path = self._set_aside(path, base, valid, size, problem)
        self._count(base, starts, valid)
        self.live.append(Segment(base, base + valid, path, corrupt=problem is not None and not last))

    def _cut_tail(self, path: Path, base: int, valid: int, size: int, problem: str) -> None:
        """The last segment ends in bytes that are no record: truncate them. A write the crash cut short
        was never acknowledged; damage inside written bytes was, so that file is first copied aside."""
        if not is_torn(problem):
            copy = corrupt_name(path)
            shutil.copy2(path, copy)
            log.error(
                "spool %s: %s: damaged record (%s); log positions %d..%d cannot be delivered; a copy "
                "of the segment is kept as %s",
                self.directory,
                path.name,
                problem,
                base + valid,
                base + size,
                copy.name,
            )
        log.warning(
            "spool %s: %s: torn or corrupt tail at bytes %d..%d (%s), truncated: a write the "
            "crash interrupted, never acknowledged",
            self.directory,
            path.name,
            base + valid,
            base + size,
            problem,
        )
        with open(path, "r+b") as f:
            f.truncate(valid)
            if self.fsync:
                os.fsync(f.fileno())

    def _set_aside(self, path: Path, base: int, valid: int, size: int, problem: str) -> Path:
        """A damaged earlier segment: rename it ``*.corrupt`` (its valid prefix is still delivered)."""
        target = corrupt_name(path)
        path.rename(target)
        log.error(
            "spool %s: %s: damaged record (%s); log positions %d..%d cannot be delivered; "
            "segment kept as %s, continuing with the next segment",
            self.directory,
            path.name,
            problem,
            max(base + valid, self.committed),
            base + size,
            target.name,
        )
        return target

    def _count(self, base: int, starts: list[int], valid: int) -> None:
        """Count the segment's uncommitted records; a committed position inside a record moves back
        to its start (delivered again rather than cut in half)."""
        ends = [*starts[1:], valid] if starts else []
        for start, end in zip(starts, ends, strict=True):
            if base + start >= self.committed:
                self.uncommitted += 1
            elif base + end > self.committed:
                log.warning(
                    "spool %s: committed position %d falls inside a record (%d..%d): delivering it again",
                    self.directory,
                    self.committed,
                    base + start,
                    base + end,
                )
                self.committed = base + start
                self.uncommitted += 1

    def open_active(self, files: Files) -> Segment:
        """Append to the last segment when it ends the log and is sound, else start a new one at the
        log's end (or at the committed position, if a crash lost the log's tail)."""
        live, committed = self.live, self.committed
        write_end = max(committed, live[-1].end if live else 0)
        if live and not live[-1].corrupt and live[-1].end == write_end:
            files.write = os.open(live[-1].path, os.O_WRONLY | os.O_APPEND)
            return live[-1]
        if live and live[-1].end < committed:
            log.warning(
                "spool %s: committed position %d lies beyond the log's end %d (a machine crash "
                "without fsync?): continuing from it",
                self.directory,
                committed,
                live[-1].end,
            )
        active = Segment(write_end, write_end, self.directory / segment_name(write_end))
        files.write = os.open(active.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        live.append(active)
        if self.fsync:
            fsync_dir(self.directory)
        return active

    def result(self, active: Segment) -> Recovered:
        """Delete the segments wholly committed (corrupt ones are kept for inspection)."""
        committed = self.committed
        for segment in self.live[:-1]:
            if segment.end <= committed and not segment.corrupt:
                segment.path.unlink()
        return Recovered(
            segments=[s for s in self.live[:-1] if s.end > committed] + [active],
            committed=committed,
            write_end=active.end,
            uncommitted=self.uncommitted,
        )
