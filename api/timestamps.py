"""Timestamps at the HTTP edge: query parameters in, RFC 3339 UTC out.

Inside peakwatch a timestamp is integer epoch milliseconds. Callers may send either that or an
RFC 3339 date-time with an explicit offset; a naive date-time is refused because the sites run on
Asia/Shanghai time while the servers may not, and guessing the zone silently shifts KPIs by hours.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

MIN_EPOCH_MS: Final = 100_000_000_000
"""1973-03-03 in ms. Smaller integers are almost surely epoch *seconds*, a common slip in scripts."""
MAX_EPOCH_MS: Final = 4_102_444_800_000
"""2100-01-01T00:00:00Z: later instants are typos (or microseconds), and overflow date arithmetic."""

_DIGITS = re.compile(r"^-?\d+\Z")
_SPACE_FOR_PLUS = re.compile(r"\d \d{2}(:?\d{2})?$")


class TimestampError(ValueError):
    """The value is not a usable timestamp; the message tells the caller how to fix it."""


def datetime_from_ms(ms: int) -> datetime:
    """Exact conversion (no float rounding) to a tz-aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=ms)


def ms_from_datetime(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimestampError("naive datetime")
    return (value - EPOCH) // timedelta(milliseconds=1)


def parse_timestamp_ms(text: str) -> int:
    """Epoch milliseconds (``1717200000000``) or RFC 3339 with an offset (``2024-06-01T00:00:00Z``,
    ``2024-06-01T08:00:00+08:00``) to epoch milliseconds. Sub-millisecond digits are truncated."""
    value = text.strip()
    if not value:
        raise TimestampError("empty timestamp: use RFC 3339 with an offset or epoch milliseconds")
    if _DIGITS.match(value):
        ms = int(value)
        if ms < MIN_EPOCH_MS:
            raise TimestampError(
                f"{value} is not a plausible epoch-milliseconds value (before 1973); "
                "if it is epoch seconds, multiply by 1000"
            )
        if ms >= MAX_EPOCH_MS:
            raise TimestampError(
                f"{value} is after 2100 in epoch milliseconds; if it is microseconds, divide by 1000"
            )
        return ms
    try:
        parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
    except ValueError:
        hint = ""
        if _SPACE_FOR_PLUS.search(value):
            hint = " (a '+' in a URL query means a space: encode the offset as %2B or use Z)"
        raise TimestampError(
            f"{value!r} is neither RFC 3339 (e.g. 2024-06-01T08:00:00+08:00) nor epoch milliseconds{hint}"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise TimestampError(f"{value!r} has no UTC offset; add one (Z or +08:00) so the time is not guessed")
    ms = ms_from_datetime(parsed)
    if not MIN_EPOCH_MS <= ms < MAX_EPOCH_MS:
        raise TimestampError(f"{value!r} is outside 1973..2099, the range peakwatch stores")
    return ms
