"""Outdoor conditions at a site: temperature, cloudiness, wind speed and the sun's elevation.

Deterministic curves (seasonal and diurnal temperature, solar geometry) plus seeded mean-reverting
random walks (temperature anomaly, cloudiness, wind), so that PV, wind, heat pumps and data-centre
cooling respond to the same plausible weather. Defaults describe Changsha (28.2° N, 112.9° E;
January mean ~5 °C, July mean ~30 °C).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from peakwatch.domain.instants import to_datetime
from simulators.localtime import local_time
from simulators.randomness import OrnsteinUhlenbeck

_MS_PER_DAY = 86_400_000
_DAYS_PER_YEAR = 365.25


@dataclass(frozen=True, slots=True)
class WeatherParams:
    latitude_deg: float = 28.23
    longitude_deg: float = 112.94
    annual_mean_c: float = 17.5
    seasonal_amplitude_c: float = 12.5
    """Half the difference between the warmest and the coldest month's mean."""
    coldest_day_of_year: int = 15
    diurnal_amplitude_c: float = 4.5
    """Half the day-night swing under a clear sky (clouds damp it by up to half)."""
    warmest_hour: float = 15.0
    """Local hour of the daily maximum."""
    anomaly_sigma_c: float = 2.5
    anomaly_tau_s: float = 2 * 86_400.0
    cloud_mean: float = 0.45
    """Long-run mean cloud cover, 0 (clear) .. 1 (overcast)."""
    cloud_sigma: float = 1.2
    cloud_tau_s: float = 3 * 3_600.0
    wind_median_m_s: float = 5.0
    """Median wind speed at hub height."""
    wind_sigma: float = 0.5
    """Standard deviation of ln(wind speed)."""
    wind_tau_s: float = 2 * 3_600.0


@dataclass(frozen=True, slots=True)
class WeatherSample:
    ts_ms: int
    temperature_c: float
    cloudiness: float
    """Cloud cover 0 (clear) .. 1 (overcast)."""
    wind_speed_m_s: float
    solar_elevation_deg: float


def solar_elevation_deg(ts_ms: int, latitude_deg: float, longitude_deg: float) -> float:
    """Elevation of the sun's centre above the horizon (NOAA general solar position formulas,
    accurate to a fraction of a degree; no refraction). Negative at night."""
    utc = to_datetime(ts_ms)
    hour_utc = (ts_ms % _MS_PER_DAY) / 3_600_000.0
    gamma = 2.0 * math.pi / 365.0 * (utc.timetuple().tm_yday - 1 + (hour_utc - 12.0) / 24.0)
    eqtime_min = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    declination = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_min = hour_utc * 60.0 + eqtime_min + 4.0 * longitude_deg
    hour_angle = math.radians(true_solar_min / 4.0 - 180.0)
    lat = math.radians(latitude_deg)
    cos_zenith = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(declination) * math.cos(
        hour_angle
    )
    return math.degrees(math.asin(max(-1.0, min(1.0, cos_zenith))))


def baseline_temperature_c(
    day_of_year: int, local_hour: float, cloudiness: float, params: WeatherParams
) -> float:
    """Climatological temperature: seasonal cosine (coldest on ``coldest_day_of_year``) plus a diurnal
    cosine peaking at ``warmest_hour``, whose swing clouds reduce (overcast nights stay warmer)."""
    seasonal = params.annual_mean_c - params.seasonal_amplitude_c * math.cos(
        2.0 * math.pi * (day_of_year - params.coldest_day_of_year) / _DAYS_PER_YEAR
    )
    swing = params.diurnal_amplitude_c * (1.0 - 0.5 * cloudiness)
    return seasonal + swing * math.cos(2.0 * math.pi * (local_hour - params.warmest_hour) / 24.0)


class Weather:
    """The weather at one site, advanced by event time. Same seed and times, same weather."""

    def __init__(
        self, rng: random.Random, params: WeatherParams | None = None, timezone: str = "Asia/Shanghai"
    ) -> None:
        self.params = p = params or WeatherParams()
        self._tz = ZoneInfo(timezone)
        self._anomaly = OrnsteinUhlenbeck(rng, sigma=p.anomaly_sigma_c, tau_s=p.anomaly_tau_s)
        self._cloud = OrnsteinUhlenbeck(rng, sigma=p.cloud_sigma, tau_s=p.cloud_tau_s)
        self._wind = OrnsteinUhlenbeck(rng, sigma=p.wind_sigma, tau_s=p.wind_tau_s)
        self._cloud_offset = math.log(p.cloud_mean / (1.0 - p.cloud_mean))
        self._last: WeatherSample | None = None

    def at(self, ts_ms: int) -> WeatherSample:
        if self._last is not None and self._last.ts_ms == ts_ms:
            return self._last
        p = self.params
        # cloudiness: a random walk in logit space, so it stays within (0, 1) and lingers near the ends
        cloudiness = 1.0 / (1.0 + math.exp(-(self._cloud_offset + self._cloud.at(ts_ms))))
        wind = p.wind_median_m_s * math.exp(self._wind.at(ts_ms))
        local = local_time(ts_ms, self._tz)
        temperature = baseline_temperature_c(local.day_of_year, local.hour, cloudiness, p) + self._anomaly.at(
            ts_ms
        )
        self._last = WeatherSample(
            ts_ms=ts_ms,
            temperature_c=temperature,
            cloudiness=cloudiness,
            wind_speed_m_s=wind,
            solar_elevation_deg=solar_elevation_deg(ts_ms, p.latitude_deg, p.longitude_deg),
        )
        return self._last
