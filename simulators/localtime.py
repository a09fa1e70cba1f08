"""Local civil time of a site, from event time in epoch ms.

Diurnal shapes (shifts, evening peaks, office lighting) follow the site's clock, not UTC; solar
geometry does not need this (it works from UTC and longitude, see ``weather.solar_elevation_deg``).
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from peakwatch.domain.instants import to_datetime


@dataclass(frozen=True, slots=True)
class LocalTime:
    hour: float
    """Hour of the day with fraction, 0 <= hour < 24 (13.5 is 13:30)."""
    weekday: int
    """Monday 0 ... Sunday 6."""
    day_of_year: int
    """1 ... 366."""

    @property
    def is_weekend(self) -> bool:
        return self.weekday >= 5


def local_time(ts_ms: int, tz: ZoneInfo) -> LocalTime:
    dt = to_datetime(ts_ms, tz)
    hour = dt.hour + dt.minute / 60.0 + (dt.second + dt.microsecond / 1e6) / 3600.0
    return LocalTime(hour=hour, weekday=dt.weekday(), day_of_year=dt.timetuple().tm_yday)
