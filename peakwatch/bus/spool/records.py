"""The spool's record format: encoding one record, checking a segment's records, reading them back.

A record is an 8-byte header (little-endian body length, CRC32 of the body) and a body of one tag byte
(batch or dead letters) and the msgpack of the ``ReadingBatch`` or ``list[DeadLetter]``. Changing
anything here changes the files on disk: a spool written before must still open (recovery) and read.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Final

import msgspec

from peakwatch.domain.models import DeadLetter, ReadingBatch
from peakwatch.errors import BusError

log = logging.getLogger(__name__)

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB

HEADER: Final = struct.Struct("<II")  # body length, CRC32 of the body
TAG_BATCH: Final = 1
TAG_LETTERS: Final = 2
SUFFIX: Final = ".seg"
SEGMENT_NAME: Final = re.compile(r"^(\d{20})\.seg\Z")
READ_CHUNK: Final = 1 * MIB
"""Bytes read from a segment at once (more when one record is larger)."""
MAX_POLL_BYTES: Final = 16 * MIB
"""A poll reading from disk stops after this many bytes even below ``max_readings`` (a flood of dead
letters carries no readings but may carry large payloads)."""
MAX_RECORD: Final = 2**32 - 1 - HEADER.size

Item = ReadingBatch | list[DeadLetter]


def segment_name(base: int) -> str:
    """A segment's file name: the log position of its first record, zero-padded so names sort."""
    return f"{base:020d}{SUFFIX}"


def encode_record(encoder: msgspec.msgpack.Encoder, tag: int, item: Item) -> bytearray:
    """Header and body of one record, ready for one ``os.write``."""
    record = bytearray(HEADER.size + 1)
    record[HEADER.size] = tag
    encoder.encode_into(item, record, HEADER.size + 1)
    body_len = len(record) - HEADER.size
    if body_len > MAX_RECORD:
        raise BusError(f"a record of {body_len} bytes is too large for the spool format")
    HEADER.pack_into(record, 0, body_len, zlib.crc32(memoryview(record)[HEADER.size :]))
    return record


def scan(path: Path, limit: int) -> tuple[int, list[int], str | None]:
    """Check the records of a segment file up to ``limit`` bytes: the length of its valid prefix, the
    offsets of the records in it, and what is wrong after it (``None``: nothing)."""
    starts: list[int] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        data = b""
        data_at = 0  # file offset of data[0]
        while pos < limit:
            need = HEADER.size
            if pos + need > limit:
                return pos, starts, f"incomplete record header at offset {pos}"
            if pos + need > data_at + len(data):
                data, data_at = os.pread(fd, min(4 * MIB, limit - pos), pos), pos
            length, crc = HEADER.unpack_from(data, pos - data_at)
            if length < 1:
                return pos, starts, f"record of length 0 at offset {pos}"
            end = pos + HEADER.size + length
            if end > limit:
                return pos, starts, f"record at offset {pos} of {length} bytes runs past the end"
            if end > data_at + len(data):
                data, data_at = os.pread(fd, max(min(4 * MIB, limit - pos), end - pos), pos), pos
                if len(data) < end - pos:
                    return pos, starts, f"short read at offset {pos}"
            body = memoryview(data)[pos - data_at + HEADER.size : end - data_at]
            if zlib.crc32(body) != crc:
                return pos, starts, f"CRC mismatch in the record at offset {pos}"
            if body[0] not in (TAG_BATCH, TAG_LETTERS):
                return pos, starts, f"unknown record type {body[0]} at offset {pos}"
            starts.append(pos)
            pos = end
        return pos, starts, None
    finally:
        os.close(fd)


def is_torn(problem: str) -> bool:
    """Whether ``scan``'s problem is a write cut short (the record ends past what was written), rather
    than damage inside written bytes."""
    return problem.startswith(("incomplete record header", "short read")) or "runs past the end" in problem


class _Decoders:
    """One per read (a cancelled poll's worker may still be decoding; they cost ~1 µs to make)."""

    __slots__ = ("batch", "letters")

    def __init__(self) -> None:
        self.batch = msgspec.msgpack.Decoder(ReadingBatch)
        self.letters = msgspec.msgpack.Decoder(list[DeadLetter])

    def decode(self, path: str, position: int, body: memoryview) -> tuple[Item, int]:
        """The item of a checked record body and its reading count."""
        tag = body[0]
        try:
            if tag == TAG_BATCH:
                batch = self.batch.decode(body[1:])
                return batch, len(batch.readings)
            if tag == TAG_LETTERS:
                return self.letters.decode(body[1:]), 0
        except msgspec.DecodeError as exc:
            raise BusError(
                f"spool segment {path}: undecodable record at log position {position}: {exc}"
            ) from exc
        raise BusError(f"spool segment {path}: unknown record type {tag} at log position {position}")


def read_range(
    segments: list[tuple[int, int, str]],
    position: int,
    limit: int,
    max_readings: int,
) -> tuple[list[tuple[Item, int]], int]:
    """Runs in a worker thread: decode records from ``position`` on (skipping gaps left by damaged
    segments) until ``max_readings`` readings, ``MAX_POLL_BYTES`` or ``limit``. Returns the items with
    their reading counts and the position after the last one."""
    decoders = _Decoders()
    items: list[tuple[Item, int]] = []
    readings = 0
    taken = 0
    for base, seg_end, path in segments:
        if readings >= max_readings or taken >= MAX_POLL_BYTES or position >= limit:
            break
        if seg_end <= position:
            continue
        position = max(position, base)
        end_here = min(seg_end, limit)
        fd = os.open(path, os.O_RDONLY)
        try:
            data = b""
            data_at = base  # log position of data[0]
            while position < end_here and readings < max_readings and taken < MAX_POLL_BYTES:
                if position + HEADER.size > data_at + len(data):
                    data_at = position
                    data = os.pread(fd, min(READ_CHUNK, end_here - position), position - base)
                if len(data) < HEADER.size + position - data_at:
                    raise BusError(f"spool segment {path}: short read at log position {position}")
                length, crc = HEADER.unpack_from(data, position - data_at)
                end = position + HEADER.size + length
                if end > end_here or length < 1:
                    raise BusError(
                        f"spool segment {path}: bad record length {length} at log position {position}"
                    )
                if end > data_at + len(data):
                    data_at = position
                    data = os.pread(
                        fd, max(min(READ_CHUNK, end_here - position), end - position), position - base
                    )
                    if len(data) < end - position:
                        raise BusError(f"spool segment {path}: short read at log position {position}")
                body = memoryview(data)[position - data_at + HEADER.size : end - data_at]
                if zlib.crc32(body) != crc:
                    log.error("spool segment %s: CRC mismatch at log position %d", path, position)
                    raise BusError(f"spool segment {path}: CRC mismatch at log position {position}")
                item, count = decoders.decode(path, position, body)
                items.append((item, count))
                readings += count
                taken += end - position
                position = end
        finally:
            os.close(fd)
    return items, position
