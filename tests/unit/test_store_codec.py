"""The store's pure parts: the timestamp codec and the Struct/COPY column layouts."""

from __future__ import annotations

import pytest

from peakwatch.store.codec import PG_EPOCH_MS, decode_timestamptz, encode_timestamptz
from peakwatch.store.writes import layout_mismatches


@pytest.mark.parametrize(
    ("ms", "wire_us"),
    [
        (946_684_800_000, 0),  # 2000-01-01T00:00:00Z, PostgreSQL's epoch
        (0, -946_684_800_000_000),  # 1970-01-01T00:00:00Z
        (1_767_225_600_123, 820_540_800_123_000),  # 2026-01-01T00:00:00.123Z
    ],
)
def test_timestamptz_round_trip(ms: int, wire_us: int) -> None:
    assert encode_timestamptz(ms) == (wire_us,)
    assert decode_timestamptz((wire_us,)) == ms


@pytest.mark.parametrize(("wire_us", "ms"), [(999, PG_EPOCH_MS), (-1, PG_EPOCH_MS - 1)])
def test_sub_millisecond_values_are_floored(wire_us: int, ms: int) -> None:
    assert decode_timestamptz((wire_us,)) == ms


def test_struct_fields_match_copy_columns() -> None:
    assert layout_mismatches() == []
