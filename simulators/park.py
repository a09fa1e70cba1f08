"""A green micro-grid industrial park: PV, wind, a battery, a heat pump, a gas boiler and process loads.

The electrical balance closes at every step through the grid connection:

    grid_import - grid_export = heat_pump + process + battery_charge - pv - wind - battery_discharge

with never both import and export (nor both charge and discharge) in the same step. The physics are
pure functions of the weather and local time (tested with tables); ``ParkSimulator`` holds the only
state: the random walks, the battery's state of charge and the meter registers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from peakwatch.domain.models import Carrier, Role, SiteKind
from simulators.localtime import local_time
from simulators.meters import VOLUME_FIELD, MeterBank, MeterSample, MeterSpec, SiteInfo
from simulators.randomness import OrnsteinUhlenbeck, derived_rng
from simulators.weather import Weather, WeatherParams

NATURAL_GAS_LHV_KWH_PER_M3 = 389.31e9 / 1e4 / 3.6e6
"""10.81 kWh/Nm3: GB/T 32151.34-2024 App. C lower heating value 389.31 GJ per 10^4 Nm3."""
_KELVIN = 273.15

PARK_METERS: tuple[MeterSpec, ...] = (
    MeterSpec("grid-in", Carrier.ELECTRICITY, Role.GRID_IMPORT, register_max=1_000_000.0, rated_kw=3000.0),
    MeterSpec("grid-out", Carrier.ELECTRICITY, Role.GRID_EXPORT, register_max=1_000_000.0, rated_kw=4000.0),
    MeterSpec("pv", Carrier.ELECTRICITY, Role.PV_GENERATION, rated_kw=2500.0),
    MeterSpec("wind", Carrier.ELECTRICITY, Role.WIND_GENERATION, rated_kw=1500.0),
    MeterSpec("bess-charge", Carrier.ELECTRICITY, Role.STORAGE_CHARGE, rated_kw=1000.0),
    MeterSpec("bess-discharge", Carrier.ELECTRICITY, Role.STORAGE_DISCHARGE, rated_kw=1000.0),
    MeterSpec("heat-pump", Carrier.ELECTRICITY, Role.HEAT_PUMP, rated_kw=300.0),
    MeterSpec("process", Carrier.ELECTRICITY, Role.PROCESS_LOAD, rated_kw=2500.0),
    MeterSpec(
        "boiler-gas",
        Carrier.NATURAL_GAS,
        Role.BOILER,
        unit="m3",
        register_field=VOLUME_FIELD,
        reports_power=False,
        rated_kw=100.0,  # m3/h
    ),
)
"""The meters of the demo park, identical to ``park-changsha`` in peakwatch/demo/sites.yaml."""


@dataclass(frozen=True, slots=True)
class ParkParams:
    pv_peak_kw: float = 2500.0
    """PV output with the sun at the zenith under a clear sky."""
    wind_rated_kw: float = 1500.0
    wind_cut_in_m_s: float = 3.0
    wind_rated_m_s: float = 12.0
    wind_cut_out_m_s: float = 25.0
    battery_capacity_kwh: float = 4000.0
    battery_power_kw: float = 1000.0
    battery_soc_min: float = 0.10
    battery_soc_max: float = 0.95
    battery_soc_initial: float = 0.50
    battery_charge_efficiency: float = 0.95
    battery_discharge_efficiency: float = 0.95
    evening_peak_hours: tuple[float, float] = (17.0, 22.0)
    """Local hours during which the battery discharges to cover the park's net load."""
    valley_hours: tuple[float, float] = (0.0, 6.0)
    """Local hours of the night tariff valley, when the battery tops up from the grid."""
    valley_charge_to_soc: float = 0.60
    building_ua_kw_per_k: float = 40.0
    """Heat loss coefficient of the park's buildings (thermal kW per K of indoor-outdoor difference)."""
    heating_balance_point_c: float = 16.0
    cooling_balance_point_c: float = 24.0
    heat_pump_heating_capacity_kw: float = 500.0
    """Thermal output limit; heating demand above it falls to the gas boiler."""
    heat_pump_standby_kw: float = 8.0
    process_peak_kw: float = 1800.0
    process_heat_peak_kw: float = 350.0
    """Process steam/hot water above heat-pump temperatures, served by the boiler."""
    process_noise: float = 0.03
    boiler_efficiency: float = 0.92


@dataclass(frozen=True, slots=True)
class ParkStep:
    """Mean rates of the step that ends at ``ts_ms`` (kW, m3/h) and the state after it."""

    ts_ms: int
    temperature_c: float
    pv_kw: float
    wind_kw: float
    heat_pump_kw: float
    process_kw: float
    battery_charge_kw: float
    battery_discharge_kw: float
    grid_import_kw: float
    grid_export_kw: float
    boiler_gas_m3_per_h: float
    heat_pump_cop: float
    battery_soc: float

    @property
    def load_kw(self) -> float:
        return self.heat_pump_kw + self.process_kw


# ------------------------------------------------------------------------------------------------ physics


def pv_power_kw(solar_elevation_deg: float, cloudiness: float, peak_kw: float) -> float:
    """Clear-sky bell ``peak · sin(elevation)^1.15`` (longer air mass at low sun), zero with the sun
    below the horizon, reduced by clouds after Kasten & Czeplak (1980): ``1 - 0.75 · N^3.4``."""
    if solar_elevation_deg <= 0.0:
        return 0.0
    clear = peak_kw * math.pow(math.sin(math.radians(solar_elevation_deg)), 1.15)
    return clear * (1.0 - 0.75 * math.pow(min(max(cloudiness, 0.0), 1.0), 3.4))


def wind_power_kw(
    speed_m_s: float,
    rated_kw: float,
    *,
    cut_in_m_s: float = 3.0,
    rated_m_s: float = 12.0,
    cut_out_m_s: float = 25.0,
) -> float:
    """Turbine power curve: nothing below cut-in, cubic rise to rated, flat to cut-out, then stopped."""
    if speed_m_s < cut_in_m_s or speed_m_s >= cut_out_m_s:
        return 0.0
    if speed_m_s >= rated_m_s:
        return rated_kw
    return rated_kw * (speed_m_s**3 - cut_in_m_s**3) / (rated_m_s**3 - cut_in_m_s**3)


def carnot_cop(hot_c: float, cold_c: float, efficiency: float, *, limit: float) -> float:
    """``efficiency`` of the Carnot COP for the given temperature lift, capped at ``limit``."""
    lift_k = hot_c - cold_c
    if lift_k <= 0:
        return limit
    return min(efficiency * (hot_c + _KELVIN) / lift_k, limit)


def heat_pump_cop(outdoor_c: float, *, supply_c: float = 45.0, efficiency: float = 0.45) -> float:
    """Heating COP of an air-source heat pump delivering ``supply_c`` water (3.8 at 7 °C, 2.9 at -5 °C)."""
    return carnot_cop(supply_c, outdoor_c, efficiency, limit=6.0)


def heat_pump_eer(
    outdoor_c: float, *, chilled_c: float = 7.0, condenser_approach_k: float = 10.0, efficiency: float = 0.45
) -> float:
    """Cooling EER of the same heat pump run in reverse (3.3 at 35 °C)."""
    hot_c = outdoor_c + condenser_approach_k
    lift_k = hot_c - chilled_c
    if lift_k <= 0:
        return 8.0
    return min(efficiency * (chilled_c + _KELVIN) / lift_k, 8.0)


def heating_demand_kw(outdoor_c: float, ua_kw_per_k: float, balance_point_c: float) -> float:
    return ua_kw_per_k * max(balance_point_c - outdoor_c, 0.0)


def cooling_demand_kw(outdoor_c: float, ua_kw_per_k: float, balance_point_c: float) -> float:
    return ua_kw_per_k * max(outdoor_c - balance_point_c, 0.0)


def process_shift_factor(local_hour: float, weekday: int) -> float:
    """Share of peak process load: day shift 08-16 (1.0), evening shift 16-24 (0.85), night 0.35;
    30-minute ramps at the shift changes; weekends at half."""
    levels = ((0.0, 0.35), (8.0, 1.0), (16.0, 0.85), (24.0, 0.35))
    ramp_h = 0.5
    level = levels[0][1]
    for (start, value), (_, previous) in zip(levels[1:], levels[:-1], strict=True):
        if local_hour >= start:
            level = value
        elif local_hour > start - ramp_h:
            level = previous + (value - previous) * (local_hour - (start - ramp_h)) / ramp_h
            break
        else:
            break
    return level * (0.5 if weekday >= 5 else 1.0)


def occupancy_factor(local_hour: float, weekday: int) -> float:
    """Buildings heated or cooled to set-point during working hours, set back otherwise."""
    return 1.0 if weekday < 5 and 7.0 <= local_hour < 19.0 else 0.6


def process_heat_kw(peak_kw: float, shift: float, outdoor_c: float) -> float:
    """Process heat follows the shifts and rises 1 % per K below 20 °C (colder make-up water, larger
    distribution losses), within 0.8..1.3 of the nominal demand."""
    return peak_kw * shift * min(max(1.0 + 0.01 * (20.0 - outdoor_c), 0.8), 1.3)


def gas_m3_per_h(heat_kw: float, *, efficiency: float) -> float:
    return heat_kw / (efficiency * NATURAL_GAS_LHV_KWH_PER_M3)


def _within(hour: float, span: tuple[float, float]) -> bool:
    return span[0] <= hour < span[1]


def dispatch_battery(
    net_load_kw: float, soc: float, dt_h: float, local_hour: float, p: ParkParams
) -> tuple[float, float]:
    """``(charge_kw, discharge_kw)`` for one step, at most one of them non-zero.

    Charges from renewable surplus (``net_load_kw < 0``) and, in the tariff valley, from the grid up to
    ``valley_charge_to_soc``; discharges during the evening peak, never more than the net load (so the
    battery never exports). Energy limits keep the state of charge within ``[soc_min, soc_max]``.
    """
    cap = p.battery_capacity_kwh
    room_kw = p.battery_power_kw
    avail_kw = p.battery_power_kw
    if dt_h > 0:
        room_kw = min(room_kw, max(p.battery_soc_max - soc, 0.0) * cap / (p.battery_charge_efficiency * dt_h))
        avail_kw = min(
            avail_kw, max(soc - p.battery_soc_min, 0.0) * cap * p.battery_discharge_efficiency / dt_h
        )
    if net_load_kw < 0:
        return min(-net_load_kw, room_kw), 0.0
    if _within(local_hour, p.evening_peak_hours):
        return 0.0, min(net_load_kw, avail_kw)
    if _within(local_hour, p.valley_hours) and soc < p.valley_charge_to_soc:
        target_kw = 0.5 * p.battery_power_kw
        if dt_h > 0:
            target_kw = min(
                target_kw, (p.valley_charge_to_soc - soc) * cap / (p.battery_charge_efficiency * dt_h)
            )
        return min(target_kw, room_kw), 0.0
    return 0.0, 0.0


# ------------------------------------------------------------------------------------------------ model


class ParkSimulator:
    """The park template (meters as in ``PARK_METERS``), stepped with increasing event times."""

    def __init__(
        self,
        info: SiteInfo,
        *,
        seed: int,
        params: ParkParams | None = None,
        weather: WeatherParams | None = None,
    ) -> None:
        if info.kind is not SiteKind.PARK:
            raise ValueError(f"{info.id}: a park simulator needs kind park, not {info.kind}")
        self.info: Final = info
        self.meters: Final = PARK_METERS
        self.params = params or ParkParams()
        self._tz = ZoneInfo(info.timezone)
        self.weather = Weather(derived_rng(seed, info.id, "weather"), weather, info.timezone)
        self._process_noise = OrnsteinUhlenbeck(
            derived_rng(seed, info.id, "process"), sigma=self.params.process_noise, tau_s=1800.0
        )
        start = derived_rng(seed, info.id, "registers")
        initial = {m.id: round(start.uniform(1_000.0, 200_000.0), 2) for m in PARK_METERS}
        self.bank = MeterBank(info.id, PARK_METERS, initial)
        self.soc = self.params.battery_soc_initial
        self.last: ParkStep | None = None

    def step(self, ts_ms: int) -> list[MeterSample]:
        p = self.params
        dt_h = self.bank.hours_since_last(ts_ms)
        w = self.weather.at(ts_ms)
        local = local_time(ts_ms, self._tz)
        t = w.temperature_c

        pv_kw = pv_power_kw(w.solar_elevation_deg, w.cloudiness, p.pv_peak_kw)
        wind_kw = wind_power_kw(
            w.wind_speed_m_s,
            p.wind_rated_kw,
            cut_in_m_s=p.wind_cut_in_m_s,
            rated_m_s=p.wind_rated_m_s,
            cut_out_m_s=p.wind_cut_out_m_s,
        )

        occupancy = occupancy_factor(local.hour, local.weekday)
        heating_kw_th = heating_demand_kw(t, p.building_ua_kw_per_k, p.heating_balance_point_c) * occupancy
        cooling_kw_th = cooling_demand_kw(t, p.building_ua_kw_per_k, p.cooling_balance_point_c) * occupancy
        hp_heat_kw_th = min(heating_kw_th, p.heat_pump_heating_capacity_kw)
        cop = heat_pump_cop(t)
        heat_pump_kw = p.heat_pump_standby_kw + hp_heat_kw_th / cop + cooling_kw_th / heat_pump_eer(t)

        shift = process_shift_factor(local.hour, local.weekday)
        process_kw = p.process_peak_kw * shift * max(1.0 + self._process_noise.at(ts_ms), 0.5)

        boiler_heat_kw = process_heat_kw(p.process_heat_peak_kw, shift, t) + (heating_kw_th - hp_heat_kw_th)
        boiler_m3_per_h = gas_m3_per_h(boiler_heat_kw, efficiency=p.boiler_efficiency)

        net_kw = heat_pump_kw + process_kw - pv_kw - wind_kw
        charge_kw, discharge_kw = dispatch_battery(net_kw, self.soc, dt_h, local.hour, p)
        grid_kw = net_kw + charge_kw - discharge_kw
        import_kw, export_kw = max(grid_kw, 0.0), max(-grid_kw, 0.0)

        soc = (
            self.soc
            + (charge_kw * p.battery_charge_efficiency - discharge_kw / p.battery_discharge_efficiency)
            * dt_h
            / p.battery_capacity_kwh
        )
        self.soc = min(max(soc, p.battery_soc_min), p.battery_soc_max)  # absorbs float rounding only

        self.last = ParkStep(
            ts_ms=ts_ms,
            temperature_c=t,
            pv_kw=pv_kw,
            wind_kw=wind_kw,
            heat_pump_kw=heat_pump_kw,
            process_kw=process_kw,
            battery_charge_kw=charge_kw,
            battery_discharge_kw=discharge_kw,
            grid_import_kw=import_kw,
            grid_export_kw=export_kw,
            boiler_gas_m3_per_h=boiler_m3_per_h,
            heat_pump_cop=cop,
            battery_soc=self.soc,
        )
        return self.bank.record(
            ts_ms,
            {
                "grid-in": import_kw,
                "grid-out": export_kw,
                "pv": pv_kw,
                "wind": wind_kw,
                "bess-charge": charge_kw,
                "bess-discharge": discharge_kw,
                "heat-pump": heat_pump_kw,
                "process": process_kw,
                "boiler-gas": boiler_m3_per_h,
            },
        )
