"""Instants: epoch ms or RFC 3339 with an offset, exact conversions, formats; hand-computed epoch values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from peakwatch.domain.instants import (
    InstantError,
    from_datetime,
    minute_text,
    parse_instant,
    parse_iso,
    rfc3339,
    to_datetime,
)

# 2024-06-01T00:00:00Z = 19875 days * 86400 s = 1717200000 s
JUNE_1_MS = 1_717_200_000_000


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("1717200000000", JUNE_1_MS),
        (" 1717200000123 ", JUNE_1_MS + 123),
        ("2024-06-01T00:00:00Z", JUNE_1_MS),
        ("2024-06-01T00:00:00+00:00", JUNE_1_MS),
        ("2024-06-01T08:00:00+08:00", JUNE_1_MS),
        ("2024-05-31T19:00:00-05:00", JUNE_1_MS),
        ("2024-06-01T00:00:00.250Z", JUNE_1_MS + 250),
        ("2024-06-01T00:00:00.999999Z", JUNE_1_MS + 999),  # sub-millisecond digits are truncated
        ("2024-06-01 08:00:00+08:00", JUNE_1_MS),  # RFC 3339 allows a space separator
        ("2024-06-01t00:00:00z", JUNE_1_MS),
    ],
)
def test_parse_accepts(text: str, expected_ms: int) -> None:
    assert parse_instant(text) == expected_ms


@pytest.mark.parametrize(
    ("text", "message_part"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("yesterday", "neither RFC 3339"),
        ("2024-13-01T00:00:00Z", "neither RFC 3339"),
        ("2024-06-01T00:00:00", "no UTC offset"),
        ("2024-06-01", "no UTC offset"),
        ("1717200000", "epoch seconds"),
        ("-5", "epoch seconds"),
        ("1.7e12", "neither RFC 3339"),
        # what a literal '+08:00' becomes in a URL query: the hint says to encode it
        ("2024-06-01T08:00:00 08:00", "%2B"),
    ],
)
def test_parse_refuses_with_reason(text: str, message_part: str) -> None:
    with pytest.raises(InstantError, match=message_part.replace("+", r"\+")):
        parse_instant(text)


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (JUNE_1_MS, datetime(2024, 6, 1, tzinfo=UTC)),
        (JUNE_1_MS + 1, datetime(2024, 6, 1, 0, 0, 0, 1000, tzinfo=UTC)),
        # 1.1 s is not exact in binary floating point; integer arithmetic keeps it exact
        (1_100, datetime(1970, 1, 1, 0, 0, 1, 100_000, tzinfo=UTC)),
    ],
)
def test_datetime_round_trip(ms: int, expected: datetime) -> None:
    assert to_datetime(ms) == expected
    assert to_datetime(ms).utcoffset() == timedelta(0)
    assert from_datetime(expected) == ms
    assert from_datetime(expected.astimezone(timezone(timedelta(hours=8)))) == ms


def test_ms_from_naive_datetime_refused() -> None:
    with pytest.raises(InstantError):
        from_datetime(datetime(2024, 6, 1))


def test_to_datetime_in_a_zone() -> None:
    # JUNE_1_MS is 2024-06-01T00:00Z = 08:00 at +08:00
    local = to_datetime(JUNE_1_MS, timezone(timedelta(hours=8)))
    assert (local.hour, local.utcoffset()) == (8, timedelta(hours=8))


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (JUNE_1_MS, "2024-06-01T00:00:00Z"),
        (JUNE_1_MS + 250, "2024-06-01T00:00:00.250Z"),
        (JUNE_1_MS + 7, "2024-06-01T00:00:00.007Z"),
        # 2024-06-01 minus 1 ms = 2024-05-31T23:59:59.999Z
        (JUNE_1_MS - 1, "2024-05-31T23:59:59.999Z"),
    ],
)
def test_rfc3339(ms: int, text: str) -> None:
    assert rfc3339(ms) == text
    assert parse_instant(text) == ms


def test_minute_text() -> None:
    # 2024-06-01T00:00Z + 90 s = 00:01:30, shown as its minute
    assert minute_text(JUNE_1_MS + 90_000) == "2024-06-01T00:01Z"


@pytest.mark.parametrize("text", ["2024-06-01", "2024-06-01T08:00"])
def test_parse_iso_refuses_naive(text: str) -> None:
    with pytest.raises(InstantError, match="no UTC offset"):
        parse_iso(text)


def test_parse_iso_has_no_range() -> None:
    # parse_iso is for operator-entered times (CLI), where only the offset is required
    assert parse_iso("1970-01-01T00:00:01Z") == 1_000
