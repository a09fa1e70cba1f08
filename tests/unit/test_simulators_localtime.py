"""A site's civil time from event time: exact to the millisecond (``peakwatch.domain.instants``)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from simulators.localtime import LocalTime, local_time

NEW_YEAR_2026 = 1_767_225_600_000
# 2026-01-01T00:00:00Z: 56 years after 1970 with 14 leap days, 20,454 days × 86,400,000 ms; a Thursday
# (2024-01-01 was a Monday; 2024 has 366 days, 2025 365: +2, +1).


@pytest.mark.parametrize(
    ("ts_ms", "zone", "expected"),
    [
        # 00:00Z is 08:00 in Shanghai (UTC+8), still Thursday 1 January
        (NEW_YEAR_2026, "Asia/Shanghai", LocalTime(hour=8.0, weekday=3, day_of_year=1)),
        # 1 ms earlier: 07:59:59.999 local, hour 8 - 0.001 s / 3600 s, the millisecond kept
        (NEW_YEAR_2026 - 1, "Asia/Shanghai", LocalTime(hour=8.0 - 0.001 / 3600, weekday=3, day_of_year=1)),
        # the same instant in UTC is the last millisecond of Wednesday 31 December 2025 (day 365)
        (NEW_YEAR_2026 - 1, "UTC", LocalTime(hour=24.0 - 0.001 / 3600, weekday=2, day_of_year=365)),
        # 2026-03-07T16:30Z: day 31 + 28 + 7 = 66, 65 days after a Thursday (65 = 9 × 7 + 2): Saturday
        (NEW_YEAR_2026 + 65 * 86_400_000 + 16 * 3_600_000 + 30 * 60_000, "UTC", LocalTime(16.5, 5, 66)),
    ],
)
def test_local_time(ts_ms: int, zone: str, expected: LocalTime) -> None:
    got = local_time(ts_ms, ZoneInfo(zone))
    assert (got.weekday, got.day_of_year) == (expected.weekday, expected.day_of_year)
    assert got.hour == pytest.approx(expected.hour, abs=1e-12)


def test_the_weekend_is_saturday_and_sunday() -> None:
    saturday = NEW_YEAR_2026 + 65 * 86_400_000
    assert local_time(saturday, ZoneInfo("UTC")).is_weekend
    assert local_time(saturday + 86_400_000, ZoneInfo("UTC")).is_weekend
    assert not local_time(saturday + 2 * 86_400_000, ZoneInfo("UTC")).is_weekend
