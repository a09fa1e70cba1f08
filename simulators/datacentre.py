"""A data centre: IT load, cooling, UPS/PDU losses and lighting behind one facility meter.

    facility = it + cooling + ups_losses + lighting        (at every step, hence PUE = facility / it)

Cooling follows the outdoor temperature: below ``free_cooling_below_c`` the chillers are off and only
fans and pumps run (free cooling through economisers), above ``mechanical_above_c`` the chillers carry
the whole load with a COP that falls as the condenser gets hotter; in between the two blend. With the
defaults the PUE is about 1.25 in winter, 1.35-1.45 on mild to warm days and crosses 1.5 on hot
summer afternoons, which is what the Hunan retrofit line (PUE > 1.5) is about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from peakwatch.domain.models import Carrier, Role, SiteKind
from simulators.localtime import local_time
from simulators.meters import MeterBank, MeterSample, MeterSpec, SiteInfo
from simulators.randomness import OrnsteinUhlenbeck, derived_rng
from simulators.weather import Weather, WeatherParams

_KELVIN = 273.15

DATA_CENTRE_METERS: tuple[MeterSpec, ...] = (
    MeterSpec(
        "facility", Carrier.ELECTRICITY, Role.FACILITY_TOTAL, register_max=1_000_000.0, rated_kw=3000.0
    ),
    MeterSpec("it", Carrier.ELECTRICITY, Role.IT_LOAD, zone="hall-1", rated_kw=2000.0),
    MeterSpec("cooling", Carrier.ELECTRICITY, Role.COOLING, zone="hall-1", rated_kw=1000.0),
    MeterSpec("ups-losses", Carrier.ELECTRICITY, Role.UPS_LOSSES, zone="hall-1", rated_kw=120.0),
    MeterSpec("lighting", Carrier.ELECTRICITY, Role.LIGHTING, zone="hall-1", rated_kw=30.0),
)
"""The meters of the demo data centre, identical to ``dc-xiangjiang`` in peakwatch/demo/sites.yaml."""


@dataclass(frozen=True, slots=True)
class DataCentreParams:
    it_capacity_kw: float = 2000.0
    it_utilisation_mean: float = 0.68
    it_diurnal_amplitude: float = 0.07
    it_peak_hour: float = 21.0
    """Local hour of the daily IT peak (consumer workloads peak in the evening)."""
    it_noise: float = 0.02
    it_noise_tau_s: float = 1200.0
    fans_pumps_ratio: float = 0.13
    """CRAH fans, pumps and tower fans per kW of heat, running in every regime."""
    cooling_fixed_kw: float = 30.0
    free_cooling_below_c: float = 10.0
    mechanical_above_c: float = 16.0
    chilled_water_c: float = 14.0
    condenser_approach_k: float = 8.0
    chiller_efficiency: float = 0.38
    """Share of the Carnot COP the chiller plant reaches."""
    ups_no_load_share: float = 0.012
    """UPS/PDU losses at zero load, as a share of IT capacity."""
    ups_linear_share: float = 0.025
    ups_quadratic_share: float = 0.010
    lighting_day_kw: float = 24.0
    lighting_night_kw: float = 12.0


@dataclass(frozen=True, slots=True)
class DataCentreStep:
    """Mean powers (kW) of the step that ends at ``ts_ms``."""

    ts_ms: int
    temperature_c: float
    it_kw: float
    cooling_kw: float
    ups_losses_kw: float
    lighting_kw: float
    facility_kw: float

    @property
    def pue(self) -> float:
        return self.facility_kw / self.it_kw


# ------------------------------------------------------------------------------------------------ physics


def it_utilisation(local_hour: float, noise: float, p: DataCentreParams) -> float:
    """Share of IT capacity in use: mean plus an evening-peaking daily cosine plus noise, 0.2..1."""
    diurnal = p.it_diurnal_amplitude * math.cos(2.0 * math.pi * (local_hour - p.it_peak_hour) / 24.0)
    return min(max(p.it_utilisation_mean + diurnal + noise, 0.2), 1.0)


def mechanical_share(outdoor_c: float, p: DataCentreParams) -> float:
    """0 in full free cooling, 1 with the chillers carrying the whole load, linear in between."""
    if outdoor_c <= p.free_cooling_below_c:
        return 0.0
    if outdoor_c >= p.mechanical_above_c:
        return 1.0
    return (outdoor_c - p.free_cooling_below_c) / (p.mechanical_above_c - p.free_cooling_below_c)


def chiller_kw_per_kw(outdoor_c: float, p: DataCentreParams) -> float:
    """Electric kW per thermal kW removed by the chillers: the inverse of ``chiller_efficiency`` times
    the Carnot cooling COP ``T_chilled / (T_condenser - T_chilled)`` (0.13 at 20 °C, 0.26 at 35 °C),
    the COP capped at 12 for tiny lifts."""
    lift_k = outdoor_c + p.condenser_approach_k - p.chilled_water_c
    cop = 12.0 if lift_k <= 0 else min(p.chiller_efficiency * (p.chilled_water_c + _KELVIN) / lift_k, 12.0)
    return 1.0 / cop


def cooling_kw(heat_kw: float, outdoor_c: float, p: DataCentreParams) -> float:
    ratio = p.fans_pumps_ratio + mechanical_share(outdoor_c, p) * chiller_kw_per_kw(outdoor_c, p)
    return p.cooling_fixed_kw + heat_kw * ratio


def ups_losses_kw(it_kw: float, p: DataCentreParams) -> float:
    """No-load, linear and quadratic (copper) losses: about 6 % of IT at 30 % load, 4.5 % at 80 %."""
    cap = p.it_capacity_kw
    return (
        cap * p.ups_no_load_share + it_kw * p.ups_linear_share + p.ups_quadratic_share * it_kw * it_kw / cap
    )


def lighting_kw(local_hour: float, p: DataCentreParams) -> float:
    return p.lighting_day_kw if 8.0 <= local_hour < 19.0 else p.lighting_night_kw


# ------------------------------------------------------------------------------------------------ model


class DataCentreSimulator:
    """The data-centre template (meters as in ``DATA_CENTRE_METERS``), stepped with increasing times."""

    def __init__(
        self,
        info: SiteInfo,
        *,
        seed: int,
        params: DataCentreParams | None = None,
        weather: WeatherParams | None = None,
    ) -> None:
        if info.kind is not SiteKind.DATA_CENTRE:
            raise ValueError(f"{info.id}: a data-centre simulator needs kind data_centre, not {info.kind}")
        self.info: Final = info
        self.meters: Final = DATA_CENTRE_METERS
        self.params = params or DataCentreParams()
        self._tz = ZoneInfo(info.timezone)
        self.weather = Weather(derived_rng(seed, info.id, "weather"), weather, info.timezone)
        self._noise = OrnsteinUhlenbeck(
            derived_rng(seed, info.id, "it"), sigma=self.params.it_noise, tau_s=self.params.it_noise_tau_s
        )
        start = derived_rng(seed, info.id, "registers")
        initial = {m.id: round(start.uniform(1_000.0, 200_000.0), 2) for m in DATA_CENTRE_METERS}
        self.bank = MeterBank(info.id, DATA_CENTRE_METERS, initial)
        self.last: DataCentreStep | None = None

    def step(self, ts_ms: int) -> list[MeterSample]:
        p = self.params
        w = self.weather.at(ts_ms)
        local = local_time(ts_ms, self._tz)
        it_kw = p.it_capacity_kw * it_utilisation(local.hour, self._noise.at(ts_ms), p)
        ups_kw = ups_losses_kw(it_kw, p)
        light_kw = lighting_kw(local.hour, p)
        # every kW drawn inside the white space ends up as heat the cooling has to remove
        cool_kw = cooling_kw(it_kw + ups_kw + light_kw, w.temperature_c, p)
        facility_kw = it_kw + cool_kw + ups_kw + light_kw
        self.last = DataCentreStep(
            ts_ms=ts_ms,
            temperature_c=w.temperature_c,
            it_kw=it_kw,
            cooling_kw=cool_kw,
            ups_losses_kw=ups_kw,
            lighting_kw=light_kw,
            facility_kw=facility_kw,
        )
        return self.bank.record(
            ts_ms,
            {
                "facility": facility_kw,
                "it": it_kw,
                "cooling": cool_kw,
                "ups-losses": ups_kw,
                "lighting": light_kw,
            },
        )
