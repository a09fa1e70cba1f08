"""Instants: the one place peakwatch parses, formats and converts points in time.

Inside peakwatch an instant is an integer count of epoch milliseconds (UTC). Every conversion to
and from ``datetime`` here is integer arithmetic on ``timedelta``, so no reader has to reason about
float seconds (``timestamp() * 1000``) rounding near a window edge, and sub-millisecond digits are
always floored the same way. A text without a UTC offset is refused everywhere: the sites run on
Asia/Shanghai time while the servers may not, and guessing the zone silently shifts KPIs by hours.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from peakwatch.errors import InstantError

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS: Final = timedelta(milliseconds=1)
MINUTE_MS: Final = 60_000

MIN_EPOCH_MS: Final = 100_000_000_000
"""1973-03-03 in ms. Smaller integers are almost surely epoch *seconds*, a common slip in scripts."""
MAX_EPOCH_MS: Final = 4_102_444_800_000
"""2100-01-01T00:00:00Z: later instants are typos (or microseconds), and overflow date arithmetic."""

_DIGITS: Final = re.compile(r"^-?\d+\Z")
_SPACE_FOR_PLUS: Final = re.compile(r"\d \d{2}(:?\d{2})?$")


def to_datetime(ms: int, tz: tzinfo = UTC) -> datetime:
    """Epoch milliseconds as an aware datetime in ``tz`` (UTC by default), exactly."""
    moment = EPOCH + timedelta(milliseconds=ms)
    return moment if tz is UTC else moment.astimezone(tz)


def from_datetime(value: datetime) -> int:
    """An aware datetime as epoch milliseconds, sub-millisecond digits truncated (floor)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InstantError(f"{value.isoformat()} has no UTC offset")
    return (value - EPOCH) // ONE_MS


def parse_iso(text: str) -> int:
    """An ISO 8601 / RFC 3339 date-time *with an offset* (``2024-06-01T08:00+08:00``, ``…Z``) in epoch
    ms. RFC 3339 allows lower-case ``t`` and ``z``; a date without a time is midnight at the offset
    it cannot have, so it is refused like any naive time."""
    value = text.strip()
    return _iso_ms(value, f"{value!r} is not an ISO 8601 date-time (e.g. 2024-06-01T08:00:00+08:00)")


def _iso_ms(value: str, unreadable: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        hint = ""
        if _SPACE_FOR_PLUS.search(value):
            hint = " (a '+' in a URL query means a space: encode the offset as %2B or use Z)"
        raise InstantError(unreadable + hint) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InstantError(f"{value!r} has no UTC offset; add one (Z or +08:00) so the time is not guessed")
    return from_datetime(parsed)


def parse_instant(text: str) -> int:
    """Epoch milliseconds (``1717200000000``) or an ISO 8601 date-time with an offset, checked to lie
    in 1973..2099 (the range peakwatch stores), with a hint for the usual slips (seconds, micros)."""
    value = text.strip()
    if not value:
        raise InstantError("empty time: use RFC 3339 with an offset or epoch milliseconds")
    if _DIGITS.match(value):
        ms = int(value)
        if ms < MIN_EPOCH_MS:
            raise InstantError(
                f"{value} is not a plausible epoch-milliseconds value (before 1973); "
                "if it is epoch seconds, multiply by 1000"
            )
        if ms >= MAX_EPOCH_MS:
            raise InstantError(
                f"{value} is after 2100 in epoch milliseconds; if it is microseconds, divide by 1000"
            )
        return ms
    ms = _iso_ms(
        value, f"{value!r} is neither RFC 3339 (e.g. 2024-06-01T08:00:00+08:00) nor epoch milliseconds"
    )
    if not MIN_EPOCH_MS <= ms < MAX_EPOCH_MS:
        raise InstantError(f"{value!r} is outside 1973..2099, the range peakwatch stores")
    return ms


def rfc3339(ms: int) -> str:
    """UTC with ``Z``, milliseconds only when there are any: ``2026-11-24T02:05:00Z``,
    ``2026-11-24T02:05:00.250Z`` (the form Alertmanager, Grafana and the API's ``ts`` use)."""
    moment = to_datetime(ms)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = ms % 1000
    return f"{stamp}.{millis:03d}Z" if millis else f"{stamp}Z"


def minute_text(ms: int) -> str:
    """``2026-01-01T00:00Z``: a whole-minute instant, short, for CLI messages."""
    return to_datetime(ms).strftime("%Y-%m-%dT%H:%MZ")
