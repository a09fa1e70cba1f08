"""Query timestamps: epoch ms or RFC 3339 with an offset; hand-computed epoch values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.timestamps import TimestampError, datetime_from_ms, ms_from_datetime, parse_timestamp_ms

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
    assert parse_timestamp_ms(text) == expected_ms


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
    with pytest.raises(TimestampError, match=message_part.replace("+", r"\+")):
        parse_timestamp_ms(text)


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
    assert datetime_from_ms(ms) == expected
    assert datetime_from_ms(ms).utcoffset() == timedelta(0)
    assert ms_from_datetime(expected) == ms
    assert ms_from_datetime(expected.astimezone(timezone(timedelta(hours=8)))) == ms


def test_ms_from_naive_datetime_refused() -> None:
    with pytest.raises(TimestampError):
        ms_from_datetime(datetime(2024, 6, 1))
