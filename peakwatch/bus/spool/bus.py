"""``SpoolBus``: the durable, bounded bus over one directory (the rules are in the package docstring).

Publishing appends records to the active segment (``records`` is the format, ``files`` the directory's
other files); polling hands out the in-memory queue of recent records or reads the log back in a
worker thread; committing records the position and deletes what is wholly committed; opening runs
``recovery``.
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
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec
from prometheus_client import CollectorRegistry

from peakwatch.bus.base import Bus, Polled
from peakwatch.bus.spool.files import LOCK, Files, Segment, fsync_and_close, fsync_dir, persist_commit
from peakwatch.bus.spool.metrics import register_spool_metrics
from peakwatch.bus.spool.records import (
    GIB,
    MIB,
    TAG_BATCH,
    TAG_LETTERS,
    Item,
    encode_record,
    read_range,
    segment_name,
)
from peakwatch.bus.spool.recovery import recover
from peakwatch.domain.models import DeadLetter, ReadingBatch
from peakwatch.errors import BusError
from peakwatch.health import ComponentStatus

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: Final = 1 * GIB
DEFAULT_SEGMENT_BYTES: Final = 64 * MIB
DEFAULT_MEMORY_ITEMS: Final = 10_000
DEFAULT_MEMORY_BYTES: Final = 16 * MIB

_instances = itertools.count(1)


@dataclass(frozen=True, slots=True)
class _Token:
    """What ``commit`` needs: the position after the last record polled and that record's number.
    ``spool`` identifies the opened spool, so a token from before a reopen is refused."""

    spool: int
    position: int
    seq: int


@dataclass(slots=True)
class _Entry:
    """A record kept in memory for the reader; it starts where the previous entry (or the read
    position) ends."""

    item: Item
    end: int
    readings: int
    size: int


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

        self._files = Files()
        self._finalizer = weakref.finalize(self, self._files.close)
        self._segments: list[Segment] = []
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

    def health(self) -> ComponentStatus:
        """Depth against the bound, and whether the collector's acknowledgements wait on the spool
        (full, or refusing writes): then the broker holds the readings."""
        refusing = self.failing
        return ComponentStatus(
            name="spool",
            ok=not self.full and refusing is None,
            detail=f"{self.depth_items} item(s), {self.depth_bytes} of {self.capacity_bytes} bytes"
            + ("; full: readings wait on the broker (not acknowledged)" if self.full else "")
            + (f"; {refusing}: readings wait on the broker (not acknowledged)" if refusing else ""),
        )

    def register_metrics(self, registry: CollectorRegistry) -> None:
        register_spool_metrics(self, registry)

    def kept_at_stop(self) -> int:
        return self.depth_items  # on disk: the next start delivers what was not committed

    # ------------------------------------------------------------------ publish

    async def publish(self, batch: ReadingBatch) -> None:
        await self._append(TAG_BATCH, batch, len(batch.readings))

    async def publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        if letters:
            await self._append(TAG_LETTERS, list(letters), 0)

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

    async def _append(self, tag: int, item: Item, readings: int) -> None:
        self._check_open()
        record = encode_record(self._encoder, tag, item)
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
                    await asyncio.to_thread(fsync_and_close, os.dup(self._files.write))
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

    def _roll(self) -> Segment:
        base = self._write_end
        path = self.directory / segment_name(base)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise BusError(f"spool {self.directory}: cannot start segment {path.name}: {exc}") from exc
        if self._fsync:
            # The previous segment's records were fsynced one by one; make the new name durable. Rare
            # (once per segment_bytes), so done inline.
            try:
                fsync_dir(self.directory)
            except OSError as exc:
                os.close(fd)
                with contextlib.suppress(OSError):
                    path.unlink()
                raise BusError(f"spool {self.directory}: cannot start segment {path.name}: {exc}") from exc
        old, self._files.write = self._files.write, fd
        os.close(old)
        segment = Segment(base, base, path)
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
                    read_range,
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
    def _add(polled: Polled, item: Item) -> None:
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
                    persist_commit,
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
            lock = self._files.lock = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
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

    def _recover(self) -> None:
        state = recover(self.directory, self._files, fsync=self._fsync)
        self._segments = state.segments
        self._committed = self._read_pos = state.committed
        self._write_end = state.write_end
        self._appended = state.uncommitted
        self._depth_bytes = self._uncommitted_bytes()
        if state.uncommitted:
            log.info(
                "spool %s: %d uncommitted record(s), %d bytes, to deliver",
                self.directory,
                state.uncommitted,
                self._depth_bytes,
            )
