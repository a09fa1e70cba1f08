"""The park model: physics tables, then whole simulated days checked against the energy balance."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from peakwatch.domain.models import SiteKind
from simulators.meters import MeterSample, SiteInfo
from simulators.park import (
    NATURAL_GAS_LHV_KWH_PER_M3,
    ParkParams,
    ParkSimulator,
    ParkStep,
    dispatch_battery,
    gas_m3_per_h,
    heat_pump_cop,
    heat_pump_eer,
    process_heat_kw,
    process_shift_factor,
    pv_power_kw,
    wind_power_kw,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PARK = SiteInfo("park-changsha", "park", SiteKind.PARK)


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


@pytest.mark.parametrize(
    ("elevation_deg", "cloudiness", "expected_share"),
    [
        (-5.0, 0.0, 0.0),
        (0.0, 0.0, 0.0),
        (90.0, 0.0, 1.0),
        (30.0, 0.0, 0.5**1.15),
        (90.0, 1.0, 0.25),  # Kasten-Czeplak: overcast leaves a quarter
        (90.0, 0.5, 1 - 0.75 * 0.5**3.4),
    ],
)
def test_pv_power(elevation_deg: float, cloudiness: float, expected_share: float) -> None:
    assert pv_power_kw(elevation_deg, cloudiness, 2000.0) == pytest.approx(2000.0 * expected_share)


@pytest.mark.parametrize(
    ("speed_m_s", "expected_share"),
    [
        (0.0, 0.0),
        (2.9, 0.0),
        (3.0, 0.0),
        (7.5, (7.5**3 - 27) / (12**3 - 27)),  # 0.2322
        (12.0, 1.0),
        (20.0, 1.0),
        (25.0, 0.0),  # cut-out
        (30.0, 0.0),
    ],
)
def test_wind_power_curve(speed_m_s: float, expected_share: float) -> None:
    assert wind_power_kw(speed_m_s, 1500.0) == pytest.approx(1500.0 * expected_share)


@pytest.mark.parametrize(
    ("outdoor_c", "expected"),
    [
        (7.0, 0.45 * 318.15 / 38),  # 3.77
        (-5.0, 0.45 * 318.15 / 50),  # 2.86
        (40.0, 6.0),  # capped
        (50.0, 6.0),  # no lift at all
    ],
)
def test_heat_pump_cop(outdoor_c: float, expected: float) -> None:
    assert heat_pump_cop(outdoor_c) == pytest.approx(expected)


def test_heat_pump_eer_at_35_c() -> None:
    assert heat_pump_eer(35.0) == pytest.approx(0.45 * 280.15 / 38)


@pytest.mark.parametrize(
    ("hour", "weekday", "expected"),
    [
        (3.0, 0, 0.35),
        (7.75, 0, 0.675),  # half-way up the 07:30-08:00 ramp
        (12.0, 2, 1.0),
        (16.0, 2, 0.85),
        (20.0, 4, 0.85),
        (23.75, 1, 0.6),  # half-way down the 23:30-24:00 ramp
        (12.0, 5, 0.5),  # Saturday
        (3.0, 6, 0.175),
    ],
)
def test_process_shift_factor(hour: float, weekday: int, expected: float) -> None:
    assert process_shift_factor(hour, weekday) == pytest.approx(expected)


def test_gas_uses_the_gb_t_32151_heating_value() -> None:
    assert abs(NATURAL_GAS_LHV_KWH_PER_M3 - 10.814) < 0.001
    assert gas_m3_per_h(NATURAL_GAS_LHV_KWH_PER_M3 * 0.92, efficiency=0.92) == pytest.approx(1.0)
    assert process_heat_kw(100.0, 1.0, 0.0) > process_heat_kw(100.0, 1.0, 20.0) == pytest.approx(100.0)


Run = list[tuple[ParkStep, list[MeterSample]]]
P = ParkParams(battery_capacity_kwh=1000.0, battery_power_kw=500.0)


@pytest.mark.parametrize(
    ("net_kw", "soc", "dt_h", "hour", "expected"),
    [
        (-300.0, 0.5, 0.1, 12.0, (300.0, 0.0)),  # surplus charges
        (-900.0, 0.5, 0.1, 12.0, (500.0, 0.0)),  # ... up to the power limit
        (-300.0, 0.95, 0.1, 12.0, (0.0, 0.0)),  # full
        (-300.0, 0.94, 0.1, 12.0, (0.01 * 1000 / (0.95 * 0.1), 0.0)),  # ... room for 10 kWh of SoC
        (300.0, 0.5, 0.1, 18.0, (0.0, 300.0)),  # evening peak: cover the net load
        (800.0, 0.5, 0.1, 18.0, (0.0, 500.0)),  # ... up to the power limit
        (300.0, 0.10, 0.1, 18.0, (0.0, 0.0)),  # empty
        (300.0, 0.11, 0.1, 18.0, (0.0, 0.01 * 1000 * 0.95 / 0.1)),  # ... 10 kWh of SoC left
        (300.0, 0.5, 0.1, 12.0, (0.0, 0.0)),  # midday deficit: the grid covers it
        (300.0, 0.3, 0.1, 2.0, (250.0, 0.0)),  # valley: top up at half power
        (300.0, 0.59, 0.1, 2.0, (0.01 * 1000 / (0.95 * 0.1), 0.0)),  # ... only to 60 %
        (300.0, 0.7, 0.1, 2.0, (0.0, 0.0)),
    ],
)
def test_dispatch_battery(
    net_kw: float, soc: float, dt_h: float, hour: float, expected: tuple[float, float]
) -> None:
    charge, discharge = dispatch_battery(net_kw, soc, dt_h, hour, P)
    assert (charge, discharge) == pytest.approx(expected)


def run_park(start_ms: int, steps: int, step_ms: int, seed: int = 0) -> Run:
    park = ParkSimulator(PARK, seed=seed)
    out = []
    for k in range(steps):
        samples = park.step(start_ms + k * step_ms)
        assert park.last is not None
        out.append((park.last, samples))
    return out


@pytest.fixture(
    scope="module", params=[(2024, 1, 8), (2024, 4, 13), (2024, 7, 22)], ids=["winter", "spring", "summer"]
)
def three_days(request: pytest.FixtureRequest) -> Run:
    return run_park(local_ms(*request.param), 3 * 24 * 60, 60_000)


def test_power_balance_holds_at_every_step(three_days: Run) -> None:
    for s, _ in three_days:
        grid = s.grid_import_kw - s.grid_export_kw
        loads = s.heat_pump_kw + s.process_kw + s.battery_charge_kw
        generation = s.pv_kw + s.wind_kw + s.battery_discharge_kw
        assert grid == pytest.approx(loads - generation, abs=1e-6)
        assert s.grid_import_kw == 0.0 or s.grid_export_kw == 0.0
        assert s.battery_charge_kw == 0.0 or s.battery_discharge_kw == 0.0
        assert (
            min(
                s.pv_kw,
                s.wind_kw,
                s.heat_pump_kw,
                s.process_kw,
                s.grid_import_kw,
                s.grid_export_kw,
                s.battery_charge_kw,
                s.battery_discharge_kw,
                s.boiler_gas_m3_per_h,
            )
            >= 0.0
        )


def test_register_deltas_balance_and_never_decrease(three_days: Run) -> None:
    def registers(samples: list[MeterSample]) -> dict[str, float]:
        return {s.meter_id: s.fields.get("energy_kwh", s.fields.get("volume_m3", math.nan)) for s in samples}

    previous = registers(three_days[0][1])
    for _, samples in three_days[1:]:
        now = registers(samples)
        d = {k: now[k] - previous[k] for k in now}
        assert min(d.values()) >= 0.0
        assert d["grid-in"] - d["grid-out"] == pytest.approx(
            d["heat-pump"] + d["process"] + d["bess-charge"] - d["pv"] - d["wind"] - d["bess-discharge"],
            abs=1e-6,
        )
        previous = now


def test_pv_is_zero_at_night_and_produces_by_day(three_days: Run) -> None:
    park = ParkSimulator(PARK, seed=0)
    for s, _ in three_days:
        elevation = park.weather.at(s.ts_ms).solar_elevation_deg
        if elevation <= 0:
            assert s.pv_kw == 0.0
    night = [
        s
        for s, _ in three_days
        if datetime.fromtimestamp(s.ts_ms / 1000, SHANGHAI).hour in (0, 1, 2, 3, 22, 23)
    ]
    assert night
    assert all(s.pv_kw == 0.0 for s in night)
    assert max(s.pv_kw for s, _ in three_days) > 0.2 * ParkParams().pv_peak_kw


def test_battery_state_of_charge_stays_within_limits(three_days: Run) -> None:
    p = ParkParams()
    socs = [s.battery_soc for s, _ in three_days]
    assert all(p.battery_soc_min <= soc <= p.battery_soc_max for soc in socs)
    assert max(socs) - min(socs) > 0.2  # the battery is actually used


def test_battery_energy_is_conserved_through_the_state_of_charge() -> None:
    days = run_park(local_ms(2024, 4, 13), 2 * 24 * 60, 60_000)
    p = ParkParams()
    dt_h = 1 / 60
    stored_kwh = sum(
        (
            s.battery_charge_kw * p.battery_charge_efficiency
            - s.battery_discharge_kw / p.battery_discharge_efficiency
        )
        * dt_h
        for s, _ in days[1:]
    )
    assert (days[-1][0].battery_soc - p.battery_soc_initial) * p.battery_capacity_kwh == pytest.approx(
        stored_kwh
    )


def test_colder_weather_burns_more_gas_and_heat_pump_electricity() -> None:
    winter = run_park(local_ms(2024, 1, 8), 2 * 24 * 30, 120_000)
    summer = run_park(local_ms(2024, 5, 20), 2 * 24 * 30, 120_000)

    def gas(run: Run) -> float:
        return sum(s.boiler_gas_m3_per_h for s, _ in run)

    assert gas(winter) > 1.1 * gas(summer)
    assert min(s.heat_pump_cop for s, _ in winter) < min(s.heat_pump_cop for s, _ in summer)


def test_park_is_deterministic_per_seed() -> None:
    a = [samples for _, samples in run_park(local_ms(2024, 4, 13), 50, 10_000, seed=5)]
    b = [samples for _, samples in run_park(local_ms(2024, 4, 13), 50, 10_000, seed=5)]
    c = [samples for _, samples in run_park(local_ms(2024, 4, 13), 50, 10_000, seed=6)]
    assert a == b
    assert a != c


def test_first_step_integrates_nothing_and_time_must_advance() -> None:
    park = ParkSimulator(PARK, seed=0)
    first = {s.meter_id: dict(s.fields) for s in park.step(local_ms(2024, 4, 13, 12))}
    assert {m: f.get("energy_kwh", f.get("volume_m3")) for m, f in first.items()} == pytest.approx(
        {m: r.value for m, r in park.bank.registers.items()}
    )
    assert "power_kw" in first["pv"]
    assert "power_kw" not in first["boiler-gas"]
    with pytest.raises(ValueError, match="event time must increase"):
        park.step(local_ms(2024, 4, 13, 12))
