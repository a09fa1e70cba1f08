"""The spool's record format (``peakwatch/bus/spool/records.py``) on hand-built bytes: a change here is
a change of the files on disk, so the vectors are spelled out byte by byte."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from peakwatch.bus.spool.records import TAG_LETTERS, encode_record, is_torn, read_range, scan, segment_name

# An empty list of dead letters: tag 2, msgpack [] = 0x90. Body b"\x02\x90": length 2, CRC32 0x83e0e339;
# the header is both little-endian: 02 00 00 00 | 39 e3 e0 83.
EMPTY_LETTERS = b"\x02\x00\x00\x00\x39\xe3\xe0\x83\x02\x90"


def test_a_record_is_length_crc_tag_and_msgpack() -> None:
    assert bytes(encode_record(msgspec.msgpack.Encoder(), TAG_LETTERS, [])) == EMPTY_LETTERS


def test_segment_names_sort_as_their_positions() -> None:
    assert segment_name(67_108_912) == "00000000000067108912.seg"


def test_scan_finds_the_valid_prefix_and_names_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / segment_name(0)
    path.write_bytes(EMPTY_LETTERS * 2 + b"\x05\x00\x00")  # two records (10 bytes each), 3 bytes of a header
    valid, starts, problem = scan(path, path.stat().st_size)
    assert (valid, starts, problem) == (20, [0, 10], "incomplete record header at offset 20")
    assert problem is not None
    assert is_torn(problem)


def test_scan_names_a_bad_crc_as_damage_not_a_torn_write(tmp_path: Path) -> None:
    path = tmp_path / segment_name(0)
    path.write_bytes(EMPTY_LETTERS + EMPTY_LETTERS[:-1] + b"\x91")  # the second body's msgpack altered
    valid, starts, problem = scan(path, path.stat().st_size)
    assert (valid, starts, problem) == (10, [0], "CRC mismatch in the record at offset 10")
    assert not is_torn(problem)


@pytest.mark.parametrize(
    ("problem", "torn"),
    [
        ("incomplete record header at offset 8", True),
        ("short read at offset 8", True),
        ("record at offset 8 of 99 bytes runs past the end", True),
        ("record of length 0 at offset 8", False),
        ("unknown record type 7 at offset 8", False),
    ],
)
def test_only_a_write_cut_short_is_torn(problem: str, torn: bool) -> None:
    assert is_torn(problem) is torn


def test_read_range_skips_to_the_position_and_stops_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / segment_name(100)  # a segment starting at log position 100
    path.write_bytes(EMPTY_LETTERS * 3)
    items, end = read_range([(100, 130, str(path))], 110, 120, max_readings=1000)
    assert (items, end) == ([([], 0)], 120)  # the middle record only: 110..120
