"""Reporting periods in a site's local time (peakwatch.domain.periods)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peakwatch.domain.periods import (
    ROLLUP_PERIODS,
    Period,
    child_period,
    window_end,
    window_start,
    windows_ending_between,
    windows_in_progress,
    windows_overlapping,
)

SH = "Asia/Shanghai"


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_shanghai_day_starts_at_local_midnight() -> None:
    # 2026-03-01 02:00 UTC is 10:00 in Shanghai; the local day began at 2026-02-28 16:00 UTC
    ts = ms(2026, 3, 1, 2)
    assert window_start(Period.DAY, ts, SH) == ms(2026, 2, 28, 16)
    assert window_end(Period.DAY, ms(2026, 2, 28, 16), SH) == ms(2026, 3, 1, 16)


def test_month_and_rolling_twelve_months() -> None:
    ts = ms(2026, 3, 15)
    assert window_start(Period.MONTH, ts, SH) == ms(2026, 2, 28, 16)  # 2026-03-01 00:00 +08
    assert window_end(Period.MONTH, ms(2026, 2, 28, 16), SH) == ms(2026, 3, 31, 16)
    # 12 months to date: 2025-04-01 .. 2026-04-01 local
    start = window_start(Period.YEAR, ts, SH)
    assert start == ms(2025, 3, 31, 16)
    assert window_end(Period.YEAR, start, SH) == ms(2026, 3, 31, 16)


def test_quarter_hours_follow_a_half_hour_offset_zone() -> None:
    # Asia/Kolkata is +05:30: a local quarter hour starts at :00/:15/:30/:45 local, i.e. :30/:45/:00/:15 UTC
    ts = ms(2026, 1, 1, 0, 40)  # 06:10 local
    assert window_start(Period.QUARTER_HOUR, ts, "Asia/Kolkata") == ms(2026, 1, 1, 0, 30)
    assert window_start(Period.HOUR, ts, "Asia/Kolkata") == ms(2026, 1, 1, 0, 30)


def test_dst_day_is_23_hours() -> None:
    start = window_start(Period.DAY, ms(2026, 3, 29, 12), "Europe/Berlin")
    assert window_end(Period.DAY, start, "Europe/Berlin") - start == 23 * 3_600_000


def test_windows_ending_between_lists_completed_windows() -> None:
    day = ms(2026, 2, 28, 16)
    hours = windows_ending_between(Period.HOUR, day, day + 3 * 3_600_000, SH)
    assert [e - s for s, e in hours] == [3_600_000] * 3
    assert windows_ending_between(Period.HOUR, day, day + 3_599_999, SH) == []
    months = windows_ending_between(Period.YEAR, ms(2026, 2, 28, 16), ms(2026, 3, 31, 16), SH)
    assert months == [(ms(2025, 3, 31, 16), ms(2026, 3, 31, 16))]


def test_windows_in_progress_are_the_open_one_after_those_not_stored_yet() -> None:
    day = ms(2026, 2, 28, 16)  # 2026-03-01 00:00 +08
    h = 3_600_000
    # hours stored up to 02:00, minutes closed up to 03:20: 02:00-03:00 is complete but not stored
    # yet (the accountant's next pass), 03:00-04:00 is in progress
    assert windows_in_progress(Period.HOUR, day + 2 * h, day + 3 * h + 20 * 60_000, SH) == [
        (day + 2 * h, day + 3 * h),
        (day + 3 * h, day + 4 * h),
    ]
    # a frontier on a boundary: the hour it starts has no closed minute, so nothing is in progress
    assert windows_in_progress(Period.HOUR, day + 3 * h, day + 3 * h, SH) == []
    # a window already stored (its end not after the stored frontier) is not in progress
    assert windows_in_progress(Period.DAY, day + 24 * h, day + 10 * h, SH) == []
    # 12 months: only the 12 months to date, 2025-04-01 .. 2026-04-01 local, for a frontier in March
    assert windows_in_progress(Period.YEAR, day, ms(2026, 3, 15), SH) == [
        (ms(2025, 3, 31, 16), ms(2026, 3, 31, 16))
    ]


@given(
    st.integers(min_value=ms(2020, 1, 1), max_value=ms(2030, 1, 1)),
    st.sampled_from(ROLLUP_PERIODS),
    st.sampled_from([SH, "UTC", "Asia/Kolkata", "Europe/Berlin", "America/New_York"]),
)
def test_each_window_is_an_exact_union_of_child_windows(ts: int, period: Period, tz: str) -> None:
    start = window_start(period, ts, tz)
    end = window_end(period, start, tz)
    assert start <= ts < end or period is Period.YEAR
    children = windows_overlapping(child_period(period), start, end, tz)
    assert children[0][0] == start
    assert children[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(children))


@pytest.mark.parametrize("period", [Period.MINUTE, Period.QUARTER_HOUR, Period.HOUR])
def test_fixed_windows_in_shanghai_align_with_utc(period: Period) -> None:
    ts = ms(2026, 5, 5, 5, 5, 5)
    size = window_end(period, 0, SH)
    assert window_start(period, ts, SH) == ts - ts % size
