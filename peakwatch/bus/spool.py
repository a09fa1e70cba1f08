"""A durable, bounded bus in one directory: what ``peakwatch up`` needs to survive a SIGKILL and a
database outage without losing or dropping readings (issue #7).

Layout of the directory (created 0700)::

    00000000000000000000.seg   segments of one append-only log, each named by the logical byte
    00000000000067108912.seg   offset of its first record (Kafka style); a position is such an offset
    committed                  the position up to which the processor committed (text, replaced atomically)
    lock                       flock()ed while a process has the spool open
    *.seg.corrupt              a segment in which recovery found a damaged record (kept for inspection)

A record is an 8-byte header (little-endian body length, CRC32 of the body) and a body of one tag
byte (batch or dead letters) and the msgpack of the ``ReadingBatch`` or ``list[DeadLetter]``.

Durability. ``publish`` returns once ``os.write`` put the record into the page cache, so a process
crash (SIGKILL, OOM kill) loses nothing that was acknowledged. A machine crash or power cut can lose
the last seconds the kernel had not written back; ``fsync=True`` closes that too by fsyncing each
record (in a worker thread) before ``publish`` returns, at the cost of one disk flush per batch (see
``bench/spool.py`` for the figures). Commits are written to a small file that replaces the previous
one atomically (fsynced with ``fsync=True``).

Bounded. Bytes published but not committed may not exceed ``max_bytes``: a publisher waits until
commits free space. That wait is the back-pressure that makes the collector stop acknowledging MQTT
messages (the broker keeps them), so nothing is ever dropped silently. Disk use is at most about
``max_bytes + segment_bytes``: committed segments are deleted, except the one being written.

Reading. Records published while the reader is caught up are also kept, decoded, in a small bounded
in-memory queue (``memory_items``, ``memory_bytes``) and handed out from there without touching the
disk; anything else (a backlog during a database outage, everything after a restart) is read back
from the segments in a worker thread, ``max_readings`` at a time, so a spool of gigabytes never sits
in memory.

Recovery (opening). Reading starts at the committed position, so what was polled but not committed
is delivered again (at-least-once; the store's idempotent writes make results exact). Every record
after it is checked (length and CRC): a torn tail of the last segment, a write the crash interrupted
and never acknowledged, is truncated with a warning; a damaged record in an earlier segment renames
that segment to ``*.corrupt`` (logged as an error with the lost byte range; the records before the
damage are still delivered) and reading goes on with the next segment. Nothing is skipped silently.

One process at a time: the spool is for a collector and a processor in the same process (``peakwatch
up``); a second process opening the same directory gets a ``BusError``. ``close`` releases the lock
(so the directory can be opened again at once) but still records the processor's last commits, which
come after the bus closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import itertools
import logging
import os
import re
import shutil
import struct
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from peakwatch.bus.base import Bus, Polled
from peakwatch.domain.models import DeadLetter, ReadingBatch
from peakwatch.errors import BusError

__all__ = ["SpoolBus"]

log = logging.getLogger(__name__)

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB
DEFAULT_MAX_BYTES: Final = 1 * GIB
DEFAULT_SEGMENT_BYTES: Final = 64 * MIB
DEFAULT_MEMORY_ITEMS: Final = 10_000
DEFAULT_MEMORY_BYTES: Final = 16 * MIB

_HEADER: Final = struct.Struct("<II")  # body length, CRC32 of the body
_TAG_BATCH: Final = 1
_TAG_LETTERS: Final = 2
_SUFFIX: Final = ".seg"
_NAME: Final = re.compile(r"^(\d{20})\.seg\Z")
_COMMITTED: Final = "committed"
_LOCK: Final = "lock"
_READ_CHUNK: Final = 1 * MIB
"""Bytes read from a segment at once (more when one record is larger)."""
_MAX_POLL_BYTES: Final = 16 * MIB
"""A poll reading from disk stops after this many bytes even below ``max_readings`` (a flood of dead
letters carries no readings but may carry large payloads)."""
_MAX_RECORD: Final = 2**32 - 1 - _HEADER.size

_Item = ReadingBatch | list[DeadLetter]
_instances = itertools.count(1)


@dataclass(frozen=True, slots=True)
class _Token:
    """What ``commit`` needs: the position after the last record polled and that record's number.
    ``spool`` identifies the opened spool, so a token from before a reopen is refused."""

    spool: int
    position: int
    seq: int


@dataclass(slots=True)
class _Segment:
    base: int
    end: int
    path: Path
    corrupt: bool = False
    """Renamed ``*.corrupt`` by recovery: ``end`` is the end of its valid prefix; never deleted."""


@dataclass(slots=True)
class _Entry:
    """A record kept in memory for the reader; it starts where the previous entry (or the read
    position) ends."""

    item: _Item
    end: int
    readings: int
    size: int


class _Files:
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


def _segment_name(base: int) -> str:
    return f"{base:020d}{_SUFFIX}"


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolBus(Bus):
    """The on-disk bus (see the module docstring). Opening recovers the directory's state and may
    block on file I/O for a while (start-up only); afterwards every disk access that can wait on the
    device (reading back, fsync, commits) runs in a worker thread.

    ``max_bytes``: uncommitted bytes that may sit in the spool before publishers wait.
    ``segment_bytes``: size at which the log rolls to a new segment file.
    ``fsync``: flush each record and commit to the device before returning (machine-crash safe).
    ``memory_items`` / ``memory_bytes``: bounds of the in-memory queue of recently published records;
    both, because items are batches of up to thousands of readings, so a count alone bounds nothing.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = False,
        memory_items: int = DEFAULT_MEMORY_ITEMS,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        if memory_items < 0 or memory_bytes < 0:
            raise ValueError("memory_items and memory_bytes must be >= 0")
        self.directory = Path(directory).expanduser().absolute()
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._memory_items = memory_items
        self._memory_bytes_max = memory_bytes
        self._id = next(_instances)
        self._encoder = msgspec.msgpack.Encoder()

        self._files = _Files()
        self._finalizer = weakref.finalize(self, self._files.close)
        self._segments: list[_Segment] = []
        """Segments holding uncommitted records (or the one being written), oldest first."""
        self._write_end = 0
        self._read_pos = 0
        self._committed = 0
        self._appended = 0
        """Records published since opening plus those recovered uncommitted; record numbers count
        from 0 at the committed position found on opening."""
        self._read_seq = 0
        self._committed_seq = 0
        self._depth_bytes = 0
        self._memory: collections.deque[_Entry] = collections.deque()
        self._memory_bytes = 0

        self._closed = False
        self._broken: str | None = None
        self.append_error: str | None = None
        """Why the last append failed (a full disk), until one succeeds: health reports it."""
        self._publish_lock = asyncio.Lock()
        self._poll_lock = asyncio.Lock()
        self._commit_lock = asyncio.Lock()
        self._space = asyncio.Condition()
        self._readable = asyncio.Event()
        self._waiting = 0

        try:
            self._open()
        except BaseException:
            self._finalizer()
            raise

    # ------------------------------------------------------------------ metrics

    @property
    def lag(self) -> int:
        """Records published but not yet polled."""
        return self._appended - self._read_seq

    @property
    def depth_items(self) -> int:
        """Records published but not yet committed."""
        return self._appended - self._committed_seq

    @property
    def depth_bytes(self) -> int:
        """Bytes of uncommitted records on disk (what ``max_bytes`` bounds)."""
        return self._depth_bytes

    @property
    def capacity_bytes(self) -> int:
        return self._max_bytes

    @property
    def segment_bytes(self) -> int:
        return self._segment_bytes

    @property
    def fsync(self) -> bool:
        return self._fsync

    @property
    def failing(self) -> str | None:
        """Why the spool refuses writes now (broken, or the last append failed), else ``None``."""
        return self._broken or self.append_error

    @property
    def full(self) -> bool:
        """A publisher is waiting for commits to free space (back-pressure is on)."""
        return self._waiting > 0

    # ------------------------------------------------------------------ publish

    async def publish(self, batch: ReadingBatch) -> None:
        await self._append(_TAG_BATCH, batch, len(batch.readings))

    async def publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        if letters:
            await self._append(_TAG_LETTERS, list(letters), 0)

    def _encode(self, tag: int, item: _Item) -> bytearray:
        record = bytearray(_HEADER.size + 1)
        record[_HEADER.size] = tag
        self._encoder.encode_into(item, record, _HEADER.size + 1)
        body_len = len(record) - _HEADER.size
        if body_len > _MAX_RECORD:
            raise BusError(f"a record of {body_len} bytes is too large for the spool format")
        _HEADER.pack_into(record, 0, body_len, zlib.crc32(memoryview(record)[_HEADER.size :]))
        return record

    def _fits(self, size: int) -> bool:
        """Room for a record of ``size`` bytes. One larger than the whole spool goes into an empty one
        (the bound is then exceeded by that record only): refusing it would hold the collector's
        messages unacknowledged for ever."""
        return self._depth_bytes + size <= self._max_bytes or self._depth_bytes == 0

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"spool {self.directory} is closed")
        if self._broken is not None:
            raise BusError(f"spool {self.directory} refuses writes: {self._broken}")

    async def _append(self, tag: int, item: _Item, readings: int) -> None:
        self._check_open()
        record = self._encode(tag, item)
        size = len(record)
        if size > self._max_bytes:
            log.warning(
                "a record of %d bytes (%d readings) is larger than spool %s (max_bytes=%d): it waits until "
                "the spool is empty and then goes in alone; raise max_bytes",
                size,
                readings,
                self.directory,
                self._max_bytes,
            )
        async with self._publish_lock:
            self._check_open()
            if not self._fits(size):
                self._waiting += 1
                try:
                    async with self._space:
                        await self._space.wait_for(lambda: self._closed or self._fits(size))
                finally:
                    self._waiting -= 1
                self._check_open()
            start = self._write_end
            self._write_record(record)
            end = self._write_end
            self._appended += 1
            self._depth_bytes += size
            memory = self._memory
            if (
                len(memory) < self._memory_items
                and self._memory_bytes + size <= self._memory_bytes_max
                and (memory[-1].end == start if memory else self._read_pos == start)
            ):
                memory.append(_Entry(item, end, readings, size))
                self._memory_bytes += size
            self._readable.set()
            if self._fsync:
                # The worker gets its own descriptor: a publisher cancelled while it runs releases the
                # lock, and the next one may roll (close) the segment's descriptor meanwhile.
                try:
                    await asyncio.to_thread(_fsync_and_close, os.dup(self._files.write))
                except OSError as exc:
                    # The record is in the log (and will be delivered) but may not be durable: refuse
                    # this and every later publish rather than acknowledge what a power cut could lose.
                    self._broken = f"fsync failed: {exc}"
                    log.error("spool %s: fsync failed, refusing further publishes: %s", self.directory, exc)
                    raise BusError(f"spool {self.directory}: fsync failed: {exc}") from exc

    def _write_record(self, record: bytearray) -> None:
        """Append synchronously (the page cache takes it at memory speed); on a short or failed
        write the segment is truncated back, so the log never holds half a record."""
        active = self._segments[-1]
        if active.end > active.base and active.end - active.base + len(record) > self._segment_bytes:
            active = self._roll()
        fd = self._files.write
        view = memoryview(record)
        written = 0
        try:
            while written < len(view):
                written += os.write(fd, view[written:])
        except OSError as exc:
            self.append_error = f"cannot append a record: {exc}"
            if written:
                try:
                    os.ftruncate(fd, active.end - active.base)
                except OSError as trunc_exc:
                    self._broken = f"cannot remove a partly written record: {trunc_exc}"
                    log.error("spool %s: %s", self.directory, self._broken)
            raise BusError(f"spool {self.directory}: cannot append a record: {exc}") from exc
        active.end += len(record)
        self._write_end = active.end
        self.append_error = None

    def _roll(self) -> _Segment:
        base = self._write_end
        path = self.directory / _segment_name(base)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise BusError(f"spool {self.directory}: cannot start segment {path.name}: {exc}") from exc
        if self._fsync:
            # The previous segment's records were fsynced one by one; make the new name durable. Rare
            # (once per segment_bytes), so done inline.
            try:
                _fsync_dir(self.directory)
            except OSError as exc:
                os.close(fd)
                with contextlib.suppress(OSError):
                    path.unlink()
                raise BusError(f"spool {self.directory}: cannot start segment {path.name}: {exc}") from exc
        old, self._files.write = self._files.write, fd
        os.close(old)
        segment = _Segment(base, base, path)
        self._segments.append(segment)
        return segment

    # ------------------------------------------------------------------ poll

    async def poll(self, max_readings: int = 50_000, timeout_s: float = 0.5) -> Polled:
        async with self._poll_lock:
            if self._read_seq == self._appended:
                if self._closed:
                    return Polled()
                self._readable.clear()
                try:
                    await asyncio.wait_for(self._readable.wait(), timeout_s)
                except TimeoutError:
                    return Polled()
                if self._read_seq == self._appended:  # woken by close
                    return Polled()
            return await self._take(max_readings)

    async def _take(self, max_readings: int) -> Polled:
        polled = Polled()
        readings = 0
        first = self._read_seq
        memory = self._memory
        start_pos = self._read_pos
        while self._read_seq < self._appended and (readings < max_readings or self._read_seq == first):
            if memory:
                entry = memory.popleft()
                self._memory_bytes -= entry.size
                self._add(polled, entry.item)
                readings += entry.readings
                self._read_pos = entry.end
                self._read_seq += 1
                continue
            # Not in memory: read back from disk. While this runs, publishes only append to the log
            # (the memory queue takes records again once the reader has caught up).
            segments = [(s.base, s.end, str(s.path)) for s in self._segments if s.end > self._read_pos]
            try:
                items, end = await asyncio.to_thread(
                    _read_range,
                    segments,
                    self._read_pos,
                    self._write_end,
                    max(1, max_readings - readings),
                )
            except BaseException:
                # Cancelled (or failed) half-way: nothing of this poll was delivered. Rewind the reader
                # and let the next poll read it all back from the log (every record is on disk; the
                # memory queue, now possibly out of step with the reader, refills once it catches up).
                memory.clear()
                self._memory_bytes = 0
                self._read_pos = start_pos
                self._read_seq = first
                raise
            if not items:
                raise BusError(
                    f"spool {self.directory}: {self.lag} record(s) expected after position "
                    f"{self._read_pos}, none found"
                )
            for item, count in items:
                self._add(polled, item)
                readings += count
            self._read_pos = end
            self._read_seq += len(items)
        polled.token = _Token(self._id, self._read_pos, self._read_seq)
        return polled

    @staticmethod
    def _add(polled: Polled, item: _Item) -> None:
        if isinstance(item, ReadingBatch):
            polled.batches.append(item)
        else:
            polled.dead_letters.extend(item)

    # ------------------------------------------------------------------ commit

    async def commit(self, polled: Polled) -> None:
        token = polled.token
        if token is None:
            return
        if not isinstance(token, _Token) or token.spool != self._id:
            raise BusError(f"spool {self.directory}: commit of a poll this spool (as opened) did not return")
        async with self._commit_lock:
            if token.seq <= self._committed_seq:
                return
            doomed = [s for s in self._segments[:-1] if s.end <= token.position]
            try:
                await asyncio.to_thread(
                    _persist_commit,
                    self.directory,
                    token.position,
                    [s.path for s in doomed if not s.corrupt],
                    self._fsync,
                )
            except OSError as exc:
                raise BusError(f"spool {self.directory}: cannot record the commit: {exc}") from exc
            self._committed = token.position
            self._committed_seq = token.seq
            self._segments = [s for s in self._segments if not any(s is d for d in doomed)]
            self._depth_bytes = self._uncommitted_bytes()
        async with self._space:
            self._space.notify_all()

    def _uncommitted_bytes(self) -> int:
        committed = self._committed
        return sum(s.end - max(s.base, committed) for s in self._segments if s.end > committed)

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Refuse new publishes (a publisher waiting for space gets a ``BusError``); polls still
        return what is left and commits are still recorded. Closes the segment being written and
        releases the directory's lock."""
        if self._closed:
            return
        self._closed = True
        self._readable.set()
        async with self._space:
            self._space.notify_all()
        async with self._publish_lock:  # a publish in fsync keeps the descriptor until it returned
            self._finalizer()

    # ------------------------------------------------------------------ recovery

    def _open(self) -> None:
        directory = self.directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = self._files.lock = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise BusError(f"cannot open spool directory {directory}: {exc}") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BusError(
                    f"spool {directory} is in use by another process (or another open SpoolBus)"
                ) from exc
            raise BusError(f"cannot lock spool {directory}: {exc}") from exc
        try:
            self._recover()
        except OSError as exc:
            raise BusError(f"cannot recover spool {directory}: {exc}") from exc

    def _read_committed(self) -> int | None:
        path = self.directory / _COMMITTED
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.error("spool %s: cannot read %s (%s): delivering everything again", self.directory, path, exc)
            return None
        try:
            position = int(text.strip())
        except ValueError:
            position = -1
        if position < 0:
            log.error(
                "spool %s: %s holds %r, not a position: delivering everything again",
                self.directory,
                path,
                text,
            )
            return None
        return position

    def _recover(self) -> None:
        directory = self.directory
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{_COMMITTED}.tmp").unlink()
        found: list[tuple[int, Path]] = []
        for path in directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        found.sort()
        committed = self._read_committed()
        if committed is None:
            committed = found[0][0] if found else 0
        uncommitted = 0
        live: list[_Segment] = []
        for i, (base, path) in enumerate(found):
            last = i == len(found) - 1
            size = path.stat().st_size
            if not last and base + size <= committed:
                path.unlink()  # committed; the crash came between recording the commit and deleting
                continue
            limit = size if last else max(0, min(size, found[i + 1][0] - base))
            valid, starts, problem = _scan(path, limit)
            if problem is None and valid < size:
                problem = f"{size - valid} byte(s) overlap the next segment"
            torn = problem is not None and problem.startswith(("incomplete record header", "short read"))
            torn = torn or (problem is not None and "runs past the end" in problem)
            if problem is not None and last and not torn:
                # damage inside the last segment, not a write cut short: the records after it were
                # acknowledged, so keep the whole file for inspection before cutting it back
                copy = path.with_name(path.name + ".corrupt")
                n = 1
                while copy.exists():
                    copy = path.with_name(f"{path.name}.{n}.corrupt")
                    n += 1
                shutil.copy2(path, copy)
                log.error(
                    "spool %s: %s: damaged record (%s); log positions %d..%d cannot be delivered; a copy "
                    "of the segment is kept as %s",
                    directory,
                    path.name,
                    problem,
                    base + valid,
                    base + size,
                    copy.name,
                )
            if problem is not None:
                if last:
                    log.warning(
                        "spool %s: %s: torn or corrupt tail at bytes %d..%d (%s), truncated: a write the "
                        "crash interrupted, never acknowledged",
                        directory,
                        path.name,
                        base + valid,
                        base + size,
                        problem,
                    )
                    with open(path, "r+b") as f:
                        f.truncate(valid)
                        if self._fsync:
                            os.fsync(f.fileno())
                else:
                    target = path.with_name(path.name + ".corrupt")
                    n = 1
                    while target.exists():
                        target = path.with_name(f"{path.name}.{n}.corrupt")
                        n += 1
                    path.rename(target)
                    log.error(
                        "spool %s: %s: damaged record (%s); log positions %d..%d cannot be delivered; "
                        "segment kept as %s, continuing with the next segment",
                        directory,
                        path.name,
                        problem,
                        max(base + valid, committed),
                        base + size,
                        target.name,
                    )
                    path = target
            segment = _Segment(base, base + valid, path, corrupt=problem is not None and not last)
            ends = [*starts[1:], valid] if starts else []
            for start, end in zip(starts, ends, strict=True):
                if base + start >= committed:
                    uncommitted += 1
                elif base + end > committed:
                    log.warning(
                        "spool %s: committed position %d falls inside a record (%d..%d): delivering it again",
                        directory,
                        committed,
                        base + start,
                        base + end,
                    )
                    committed = base + start
                    uncommitted += 1
            live.append(segment)
        write_end = max(committed, live[-1].end if live else 0)
        if live and not live[-1].corrupt and live[-1].end == write_end:
            active = live[-1]
            self._files.write = os.open(active.path, os.O_WRONLY | os.O_APPEND)
        else:
            if live and live[-1].end < committed:
                log.warning(
                    "spool %s: committed position %d lies beyond the log's end %d (a machine crash "
                    "without fsync?): continuing from it",
                    directory,
                    committed,
                    live[-1].end,
                )
            active = _Segment(write_end, write_end, directory / _segment_name(write_end))
            self._files.write = os.open(active.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            live.append(active)
            if self._fsync:
                _fsync_dir(directory)
        for segment in live[:-1]:
            if segment.end <= committed and not segment.corrupt:
                segment.path.unlink()
        self._segments = [s for s in live[:-1] if s.end > committed] + [active]
        self._committed = self._read_pos = committed
        self._write_end = write_end
        self._appended = uncommitted
        self._depth_bytes = self._uncommitted_bytes()
        if uncommitted:
            log.info(
                "spool %s: %d uncommitted record(s), %d bytes, to deliver",
                directory,
                uncommitted,
                self._depth_bytes,
            )


def _persist_commit(directory: Path, position: int, doomed: list[Path], fsync: bool) -> None:
    """Runs in a worker thread (and so takes no spool: a worker still holding one would keep a dropped
    spool, and its lock, alive). The position is replaced atomically before any segment is deleted, so
    a crash in between leaves only committed segments behind (recovery deletes them)."""
    tmp = directory / f"{_COMMITTED}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{position}\n".encode())
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / _COMMITTED)
    if fsync:
        _fsync_dir(directory)
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _scan(path: Path, limit: int) -> tuple[int, list[int], str | None]:
    """Check the records of a segment file up to ``limit`` bytes: the length of its valid prefix, the
    offsets of the records in it, and what is wrong after it (``None``: nothing)."""
    starts: list[int] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        data = b""
        data_at = 0  # file offset of data[0]
        while pos < limit:
            need = _HEADER.size
            if pos + need > limit:
                return pos, starts, f"incomplete record header at offset {pos}"
            if pos + need > data_at + len(data):
                data, data_at = os.pread(fd, min(4 * MIB, limit - pos), pos), pos
            length, crc = _HEADER.unpack_from(data, pos - data_at)
            if length < 1:
                return pos, starts, f"record of length 0 at offset {pos}"
            end = pos + _HEADER.size + length
            if end > limit:
                return pos, starts, f"record at offset {pos} of {length} bytes runs past the end"
            if end > data_at + len(data):
                data, data_at = os.pread(fd, max(min(4 * MIB, limit - pos), end - pos), pos), pos
                if len(data) < end - pos:
                    return pos, starts, f"short read at offset {pos}"
            body = memoryview(data)[pos - data_at + _HEADER.size : end - data_at]
            if zlib.crc32(body) != crc:
                return pos, starts, f"CRC mismatch in the record at offset {pos}"
            if body[0] not in (_TAG_BATCH, _TAG_LETTERS):
                return pos, starts, f"unknown record type {body[0]} at offset {pos}"
            starts.append(pos)
            pos = end
        return pos, starts, None
    finally:
        os.close(fd)


def _read_range(
    segments: list[tuple[int, int, str]],
    position: int,
    limit: int,
    max_readings: int,
) -> tuple[list[tuple[_Item, int]], int]:
    """Runs in a worker thread: decode records from ``position`` on (skipping gaps left by damaged
    segments) until ``max_readings`` readings, ``_MAX_POLL_BYTES`` or ``limit``. Returns the items with
    their reading counts and the position after the last one."""
    batch_decoder = msgspec.msgpack.Decoder(ReadingBatch)  # per call: a cancelled poll's worker may
    letters_decoder = msgspec.msgpack.Decoder(list[DeadLetter])  # still be decoding (and cost ~1 µs)
    items: list[tuple[_Item, int]] = []
    readings = 0
    taken = 0
    for base, seg_end, path in segments:
        if readings >= max_readings or taken >= _MAX_POLL_BYTES or position >= limit:
            break
        if seg_end <= position:
            continue
        position = max(position, base)
        end_here = min(seg_end, limit)
        fd = os.open(path, os.O_RDONLY)
        try:
            data = b""
            data_at = base  # log position of data[0]
            while position < end_here and readings < max_readings and taken < _MAX_POLL_BYTES:
                if position + _HEADER.size > data_at + len(data):
                    data_at = position
                    data = os.pread(fd, min(_READ_CHUNK, end_here - position), position - base)
                if len(data) < _HEADER.size + position - data_at:
                    raise BusError(f"spool segment {path}: short read at log position {position}")
                length, crc = _HEADER.unpack_from(data, position - data_at)
                end = position + _HEADER.size + length
                if end > end_here or length < 1:
                    raise BusError(
                        f"spool segment {path}: bad record length {length} at log position {position}"
                    )
                if end > data_at + len(data):
                    data_at = position
                    data = os.pread(
                        fd, max(min(_READ_CHUNK, end_here - position), end - position), position - base
                    )
                    if len(data) < end - position:
                        raise BusError(f"spool segment {path}: short read at log position {position}")
                body = memoryview(data)[position - data_at + _HEADER.size : end - data_at]
                if zlib.crc32(body) != crc:
                    log.error("spool segment %s: CRC mismatch at log position %d", path, position)
                    raise BusError(f"spool segment {path}: CRC mismatch at log position {position}")
                tag = body[0]
                try:
                    if tag == _TAG_BATCH:
                        batch = batch_decoder.decode(body[1:])
                        items.append((batch, len(batch.readings)))
                        readings += len(batch.readings)
                    elif tag == _TAG_LETTERS:
                        items.append((letters_decoder.decode(body[1:]), 0))
                    else:
                        raise BusError(
                            f"spool segment {path}: unknown record type {tag} at log position {position}"
                        )
                except msgspec.DecodeError as exc:
                    raise BusError(
                        f"spool segment {path}: undecodable record at log position {position}: {exc}"
                    ) from exc
                taken += end - position
                position = end
        finally:
            os.close(fd)
    return items, position
