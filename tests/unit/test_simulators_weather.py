"""Weather: solar geometry, the climatological temperature curve, and seeded random walks."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime

import pytest

from simulators.randomness import OrnsteinUhlenbeck, derive_seed
from simulators.weather import Weather, WeatherParams, baseline_temperature_c, solar_elevation_deg

CHANGSHA = (28.23, 112.94)


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("ts_ms", "expected_deg", "tolerance_deg"),
    [
        # solar noon in Changsha is ~12:28 local (04:28 UTC) +- the equation of time
        (utc_ms(2024, 6, 21, 4, 30), 90 - 28.23 + 23.44, 0.5),  # summer solstice: 85.2
        (utc_ms(2024, 12, 21, 4, 26), 90 - 28.23 - 23.44, 0.5),  # winter solstice: 38.3
        (utc_ms(2024, 3, 20, 4, 35), 90 - 28.23, 0.7),  # equinox: 61.8
        (utc_ms(2024, 6, 21, 16, 30), -(90 - 28.23 - 23.44), 0.6),  # local midnight: sun below
    ],
)
def test_solar_elevation_at_known_moments(ts_ms: int, expected_deg: float, tolerance_deg: float) -> None:
    assert solar_elevation_deg(ts_ms, *CHANGSHA) == pytest.approx(expected_deg, abs=tolerance_deg)


def test_sunrise_and_sunset_are_within_plausible_local_hours() -> None:
    # 2024-06-21 local day (UTC+8): the sun is up from about 05:40 to 19:30 local
    start = utc_ms(2024, 6, 20, 16, 0)  # 00:00 local
    up = [h / 6 for h in range(24 * 6) if solar_elevation_deg(start + h * 600_000, *CHANGSHA) > 0]
    assert 5.0 <= up[0] <= 6.2
    assert 19.0 <= up[-1] <= 20.0


@pytest.mark.parametrize(
    ("day_of_year", "hour", "cloudiness", "expected_c"),
    [
        (15, 15.0, 0.0, 17.5 - 12.5 + 4.5),  # coldest day, warmest hour, clear
        (15, 3.0, 0.0, 17.5 - 12.5 - 4.5),  # coldest day, coldest hour, clear
        (15, 15.0, 1.0, 17.5 - 12.5 + 2.25),  # overcast halves the swing
        (15, 9.0, 0.0, 17.5 - 12.5),  # diurnal cosine crosses zero 6 h before the peak
    ],
)
def test_baseline_temperature(day_of_year: int, hour: float, cloudiness: float, expected_c: float) -> None:
    assert baseline_temperature_c(day_of_year, hour, cloudiness, WeatherParams()) == pytest.approx(expected_c)


def test_summer_is_warmer_than_winter() -> None:
    p = WeatherParams()
    july = baseline_temperature_c(197, 15.0, 0.3, p)
    # day 197 is 182 days after the coldest: cos(2π·182/365.25) = -0.99994; swing 4.5·(1 - 0.15)
    assert july == pytest.approx(17.5 + 12.5 * 0.999942 + 4.5 * 0.85, abs=0.001)
    assert july > baseline_temperature_c(15, 15.0, 0.3, p) + 20


def test_derive_seed_is_stable_and_label_sensitive() -> None:
    assert derive_seed(1, "a", "b") == derive_seed(1, "a", "b")
    seeds = {
        derive_seed(1, "a", "b"),
        derive_seed(1, "ab"),
        derive_seed(2, "a", "b"),
        derive_seed(1, "b", "a"),
    }
    assert len(seeds) == 4


def test_ornstein_uhlenbeck_same_time_returns_same_value() -> None:
    walk = OrnsteinUhlenbeck(random.Random(3), sigma=1.0, tau_s=60.0)
    first = walk.at(0)
    assert walk.at(0) == first
    moved = walk.at(10_000)
    assert walk.at(10_000) == moved
    assert walk.at(5_000) == moved  # stepping back leaves the state alone


@pytest.mark.parametrize("step_s", [1, 60])
def test_ornstein_uhlenbeck_statistics_do_not_depend_on_the_step(step_s: int) -> None:
    walk = OrnsteinUhlenbeck(random.Random(7), sigma=2.0, tau_s=600.0)
    values = [walk.at(k * step_s * 1000) for k in range(int(400 * 600 / step_s))]
    assert statistics.pstdev(values) == pytest.approx(2.0, rel=0.25)
    assert abs(statistics.fmean(values)) < 0.6


def test_weather_is_deterministic_and_within_bounds() -> None:
    def run(seed: int) -> list[tuple[float, float, float]]:
        w = Weather(random.Random(seed))
        return [
            (s.temperature_c, s.cloudiness, s.wind_speed_m_s)
            for s in (w.at(utc_ms(2024, 4, 1) + k * 300_000) for k in range(2000))
        ]

    a, b, c = run(1), run(1), run(2)
    assert a == b
    assert a != c
    assert all(0.0 < cloud < 1.0 and wind > 0.0 and -20 < t < 45 for t, cloud, wind in a)
    # the walks actually wander: both clear and cloudy spells within a week
    clouds = [cloud for _, cloud, _ in a]
    assert min(clouds) < 0.25
    assert max(clouds) > 0.65
