"""Reporting periods and their windows in a site's local time.

Operators report by the local clock: a day is 00:00–24:00 in the site's time zone (Asia/Shanghai by
default), a month starts on the 1st, and 15-minute demand intervals start at :00, :15, :30 and :45
local time. Windows are half-open ``[start_ms, end_ms)`` in epoch milliseconds. Minute, quarter-hour
and hour windows are aligned on the local clock using the UTC offset in force at the instant (so a
half-hour-offset zone gets local quarter hours too, and a DST change never makes an hour longer than
an hour); days and months follow the calendar, so a DST day is 23 or 25 hours long.

The 12-month window is rolling: ``12mo`` starting in month M covers M .. M+11 and is identified by its
start; the rolling 12 months *to date* at an instant is the one that ends with the instant's month.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from peakwatch.domain.instants import MINUTE_MS as MINUTE_MS  # re-exported: the periods' unit
from peakwatch.domain.instants import ONE_MS, from_datetime, to_datetime


class Period(enum.StrEnum):
    MINUTE = "1m"
    QUARTER_HOUR = "15m"
    HOUR = "1h"
    DAY = "1d"
    MONTH = "1mo"
    YEAR = "12mo"


ROLLUP_PERIODS: tuple[Period, ...] = (
    Period.QUARTER_HOUR,
    Period.HOUR,
    Period.DAY,
    Period.MONTH,
    Period.YEAR,
)
"""Periods materialised from the 1-minute windows, shortest first (each may use the shorter ones)."""

_FIXED_MS = {Period.MINUTE: MINUTE_MS, Period.QUARTER_HOUR: 15 * MINUTE_MS, Period.HOUR: 60 * MINUTE_MS}


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local(ts_ms: int, tz: str) -> datetime:
    return to_datetime(ts_ms, zone(tz))


def _offset_ms(ts_ms: int, tz: str) -> int:
    offset = _local(ts_ms, tz).utcoffset()
    return 0 if offset is None else offset // ONE_MS


def _month_start(year: int, month: int, tz: str) -> int:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return from_datetime(datetime(year, month, 1, tzinfo=zone(tz)))


def window_start(period: Period, ts_ms: int, tz: str) -> int:
    """Start of the window of ``period`` containing ``ts_ms`` (for ``12mo``: the 12 months to date)."""
    size = _FIXED_MS.get(period)
    if size is not None:
        return ts_ms - (ts_ms + _offset_ms(ts_ms, tz)) % size
    local = _local(ts_ms, tz)
    if period is Period.DAY:
        return from_datetime(datetime(local.year, local.month, local.day, tzinfo=zone(tz)))
    if period is Period.MONTH:
        return _month_start(local.year, local.month, tz)
    return _month_start(local.year, local.month - 11, tz)


def window_end(period: Period, start_ms: int, tz: str) -> int:
    """End of the window of ``period`` that starts at ``start_ms`` (a window start of that period)."""
    size = _FIXED_MS.get(period)
    if size is not None:
        return start_ms + size
    local = _local(start_ms, tz)
    if period is Period.DAY:
        nxt = (datetime(local.year, local.month, local.day) + timedelta(days=1)).replace(tzinfo=zone(tz))
        return from_datetime(nxt)
    months = 1 if period is Period.MONTH else 12
    return _month_start(local.year, local.month + months, tz)


def windows_ending_between(period: Period, after_ms: int, until_ms: int, tz: str) -> list[tuple[int, int]]:
    """Windows of ``period`` whose end lies in ``(after_ms, until_ms]``, oldest first: the windows that a
    site's closed frontier completed when it moved from ``after_ms`` to ``until_ms``."""
    if until_ms <= after_ms:
        return []
    out: list[tuple[int, int]] = []
    if period is Period.YEAR:
        # a 12-month window ends where a month ends
        for _, month_end in windows_ending_between(Period.MONTH, after_ms, until_ms, tz):
            start = window_start(Period.YEAR, month_end - 1, tz)
            out.append((start, month_end))
        return out
    start = window_start(period, after_ms, tz)
    while True:
        end = window_end(period, start, tz)
        if end > until_ms:
            return out
        if end > after_ms:
            out.append((start, end))
        start = end


def windows_in_progress(period: Period, done_ms: int, frontier_ms: int, tz: str) -> list[tuple[int, int]]:
    """Windows of ``period`` that hold closed minutes but are not stored yet, oldest first: the window
    the site's closed frontier is inside (begun, not ended), after any that the frontier completed since
    ``done_ms`` (the end of the newest stored window of ``period``; the accountant stores them a moment
    later). For ``12mo``: the rolling 12 months to date (ending with the frontier's month); the rolling
    windows that begin later are not listed until they are the 12 months to date."""
    out = windows_ending_between(period, done_ms, frontier_ms, tz)
    start = window_start(period, frontier_ms, tz)
    end = window_end(period, start, tz)
    if start < frontier_ms < end and end > done_ms:
        out.append((start, end))
    return out


def windows_overlapping(period: Period, from_ms: int, to_ms: int, tz: str) -> list[tuple[int, int]]:
    """Windows of ``period`` that overlap ``[from_ms, to_ms)``, oldest first (for ``12mo``: every
    rolling window that contains part of the range)."""
    if to_ms <= from_ms:
        return []
    if period is Period.YEAR:
        months = windows_overlapping(Period.MONTH, from_ms, to_ms, tz)
        first_local = _local(months[0][0], tz)
        last_local = _local(months[-1][0], tz)
        out = []
        m = first_local.year * 12 + first_local.month - 1 - 11
        last = last_local.year * 12 + last_local.month - 1
        while m <= last:
            start = _month_start(m // 12, m % 12 + 1, tz)
            out.append((start, window_end(Period.YEAR, start, tz)))
            m += 1
        return out
    out = []
    start = window_start(period, from_ms, tz)
    while start < to_ms:
        end = window_end(period, start, tz)
        out.append((start, end))
        start = end
    return out


def child_period(period: Period) -> Period:
    """The period whose windows a ``period`` window is summed from (the minute for the short ones)."""
    return {
        Period.QUARTER_HOUR: Period.MINUTE,
        Period.HOUR: Period.QUARTER_HOUR,
        Period.DAY: Period.HOUR,
        Period.MONTH: Period.DAY,
        Period.YEAR: Period.MONTH,
    }.get(period, Period.MINUTE)
