"""Site energy balance and KPIs: hand-computed vectors (peakwatch.domain.kpis, ../shared/domain.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from peakwatch.domain.components import decode_components, encode_components, sum_components
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.kpis import WindowInputs, minute_components, window_kpis
from peakwatch.domain.models import Carrier, KpiWindow, Meter, Role, Site, SiteKind

FACTORS = FactorLibrary().resolve("default")
HUNAN_2023 = 0.4976  # kgCO2/kWh, MEE/NBS 2025 No.47
KGCE_PER_KWH = 0.1229  # GB/T 2589-2020, equivalent value
KGCE_PER_M3_GAS = 1.2143  # GB/T 2589-2020, gas-field natural gas
CO2_PER_M3_GAS = 2.1622  # GB/T 32151.34-2024 App. C


def elec(site_id: str, meter_id: str, role: Role) -> Meter:
    return Meter(id=meter_id, site_id=site_id, carrier=Carrier.ELECTRICITY, role=role)


DC = Site(id="dc", name="DC", kind=SiteKind.DATA_CENTRE)
DC_METERS = (
    elec("dc", "facility", Role.FACILITY_TOTAL),
    elec("dc", "it", Role.IT_LOAD),
    elec("dc", "cooling", Role.COOLING),
)
PARK = Site(id="park", name="Park", kind=SiteKind.PARK)
PARK_METERS = (
    elec("park", "grid-in", Role.GRID_IMPORT),
    elec("park", "grid-out", Role.GRID_EXPORT),
    elec("park", "pv", Role.PV_GENERATION),
    elec("park", "wind", Role.WIND_GENERATION),
    elec("park", "bess-charge", Role.STORAGE_CHARGE),
    elec("park", "bess-discharge", Role.STORAGE_DISCHARGE),
    elec("park", "heat-pump", Role.HEAT_PUMP),
    Meter(id="boiler-gas", site_id="park", carrier=Carrier.NATURAL_GAS, role=Role.BOILER, unit="m3"),
    Meter(id="water", site_id="park", carrier=Carrier.WATER, role=Role.WATER_SUPPLY, unit="m3"),
)


def kpis(site: Site, meters: tuple[Meter, ...], amounts: dict[str, float]) -> KpiWindow:
    components = minute_components(meters, {m.id: amounts.get(m.id, 0.0) for m in meters})
    return window_kpis(site.id, 0, 60_000, components, WindowInputs(kind=site.kind, factors=FACTORS))


def test_data_centre() -> None:
    w = kpis(DC, DC_METERS, {"facility": 1350.0, "it": 1000.0, "cooling": 300.0})
    # PUE = 1350 / 1000; cooling is inside the facility meter and does not add to it
    assert w.pue == pytest.approx(1.35)
    assert w.electricity_kwh == pytest.approx(1350.0)
    assert w.facility_kwh == pytest.approx(1350.0)
    assert w.it_kwh == pytest.approx(1000.0)
    # no grid meter, no renewables: everything consumed is purchased -> 1350 x 0.4976 = 671.76 kg
    assert w.electricity_emissions_kg == pytest.approx(1350 * HUNAN_2023)
    assert w.emissions_kg == pytest.approx(671.76)
    # carbon intensity = 671.76 / 1350 = the grid factor
    assert w.carbon_intensity_kg_per_kwh == pytest.approx(HUNAN_2023)
    # 1350 x 0.1229 = 165.915 kgce, all of it electricity -> electrification rate 1
    assert w.electricity_kgce == pytest.approx(165.915)
    assert w.total_kgce == pytest.approx(165.915)
    assert w.electrification_rate == pytest.approx(1.0)
    assert w.green_power_share == 0.0
    assert w.interim is True
    assert (w.start_ms, w.end_ms, w.completeness) == (0, 60_000, 1.0)


def test_park() -> None:
    amounts = {
        "grid-in": 800.0,
        "grid-out": 100.0,
        "pv": 500.0,
        "wind": 100.0,
        "bess-charge": 50.0,
        "bess-discharge": 30.0,
        "heat-pump": 400.0,
        "boiler-gas": 100.0,
        "water": 70.0,
    }
    w = kpis(PARK, PARK_METERS, amounts)
    # electricity consumed (grid balance, the heat-pump load meter is inside it):
    #   800 import - 100 export + 500 PV + 100 wind + 30 discharge - 50 charge = 1280 kWh
    assert w.electricity_kwh == pytest.approx(1280.0)
    # renewable generation 500 + 100 = 600; the 100 exported comes out of it first -> 500 consumed
    assert w.renewable_generation_kwh == pytest.approx(600.0)
    assert w.renewable_consumed_kwh == pytest.approx(500.0)
    # green-power share = 500 / 1280 = 0.390625
    assert w.green_power_share == pytest.approx(0.390625)
    # kgce: electricity 1280 x 0.1229 = 157.312; gas 100 m3 x 1.2143 = 121.43; total 278.742
    # (water is not energy)
    assert w.electricity_kgce == pytest.approx(157.312)
    assert w.total_kgce == pytest.approx(278.742)
    # electrification rate = 157.312 / 278.742 = 0.564364...
    assert w.electrification_rate == pytest.approx(157.312 / 278.742)
    assert w.electrification_rate == pytest.approx(0.5643642, abs=1e-7)
    # emissions: purchased = metered import 800 x 0.4976 = 398.08; gas 100 x 2.1622 = 216.22; sum 614.30
    assert w.electricity_emissions_kg == pytest.approx(398.08)
    assert w.emissions_kg == pytest.approx(614.30)
    # carbon intensity (location-based) = 398.08 / 1280 = 0.311
    assert w.carbon_intensity_kg_per_kwh == pytest.approx(0.311)
    assert (w.grid_import_kwh, w.grid_export_kwh) == (800.0, 100.0)
    # a park has no PUE
    assert w.pue is None
    assert w.facility_kwh is None


@pytest.mark.parametrize(
    ("amounts", "meters"),
    [
        pytest.param({"facility": 1350.0, "it": 0.0}, DC_METERS, id="zero-it-energy"),
        pytest.param({"facility": 1350.0}, DC_METERS, id="it-silent"),
        pytest.param({"it": 1000.0}, DC_METERS[1:], id="no-facility-meter"),
    ],
)
def test_pue_none_without_denominator_or_numerator(
    amounts: dict[str, float], meters: tuple[Meter, ...]
) -> None:
    assert kpis(DC, meters, amounts).pue is None


def test_empty_window_has_no_ratios() -> None:
    w = kpis(PARK, PARK_METERS, {})
    assert w.electricity_kwh == 0.0
    assert (w.pue, w.electrification_rate, w.carbon_intensity_kg_per_kwh, w.green_power_share) == (
        None,
        None,
        None,
        None,
    )


def test_loads_are_consumption_without_grid_meter() -> None:
    meters = (
        elec("s", "pv", Role.PV_GENERATION),
        elec("s", "process", Role.PROCESS_LOAD),
        elec("s", "hp", Role.HEAT_PUMP),
    )
    w = kpis(Site(id="s", name="S", kind=SiteKind.PARK), meters, {"pv": 100.0, "process": 300.0, "hp": 200.0})
    # no facility or grid meter: consumption = loads 300 + 200 = 500 (not the 100 kWh of PV)
    assert w.electricity_kwh == pytest.approx(500.0)
    assert w.renewable_consumed_kwh == pytest.approx(100.0)
    # purchased = 500 - 100 = 400 -> 400 x 0.4976 = 199.04 kg
    assert w.emissions_kg == pytest.approx(199.04)
    assert w.green_power_share == pytest.approx(0.2)


def test_generation_only_site_uses_generation_balance() -> None:
    meters = (elec("s", "pv", Role.PV_GENERATION), elec("s", "out", Role.GRID_EXPORT))
    w = kpis(Site(id="s", name="S", kind=SiteKind.PARK), meters, {"pv": 100.0, "out": 30.0})
    # 100 PV - 30 export = 70 consumed, all renewable, nothing purchased
    assert w.electricity_kwh == pytest.approx(70.0)
    assert w.renewable_consumed_kwh == pytest.approx(70.0)
    assert w.electricity_emissions_kg == 0.0


@pytest.mark.parametrize(
    ("carrier", "role", "unit", "amount", "kgce", "co2_kg"),
    [
        pytest.param(Carrier.NATURAL_GAS, Role.BOILER, "m3", 100.0, 121.43, 216.22, id="gas-100m3"),
        # 2 GJ x 34.12 kgce/GJ = 68.24; 2 x 110 kg/GJ = 220
        pytest.param(Carrier.HEAT, Role.PROCESS_HEAT, "GJ", 2.0, 68.24, 220.0, id="heat-2GJ"),
        # 1 t x 128.6 kgce/t; 1 t x 414.6 kg/t
        pytest.param(Carrier.STEAM, Role.PROCESS_HEAT, "t", 1.0, 128.6, 414.6, id="steam-1t"),
        # 0.5 t x 1457.1 = 728.55 kgce; 0.5 x 3095.9 = 1547.95 kg
        pytest.param(Carrier.DIESEL, Role.GENERATOR_FUEL, "t", 0.5, 728.55, 1547.95, id="diesel-0.5t"),
        # 2 t x 714.3 = 1428.6 kgce; 2 x 1900.3 = 3800.6 kg
        pytest.param(Carrier.COAL, Role.BOILER, "t", 2.0, 1428.6, 3800.6, id="coal-2t"),
        pytest.param(Carrier.WATER, Role.WATER_SUPPLY, "m3", 50.0, 0.0, 0.0, id="water-not-energy"),
        pytest.param(
            Carrier.PRODUCT, Role.PRODUCTION_OUTPUT, "count", 9.0, 0.0, 0.0, id="product-not-energy"
        ),
    ],
)
def test_fuel_conversion(
    carrier: Carrier, role: Role, unit: str, amount: float, kgce: float, co2_kg: float
) -> None:
    meters = (Meter(id="m", site_id="s", carrier=carrier, role=role, unit=unit),)
    w = kpis(Site(id="s", name="S", kind=SiteKind.PARK), meters, {"m": amount})
    assert w.total_kgce == pytest.approx(kgce)
    assert w.emissions_kg == pytest.approx(co2_kg)


def test_sum_components_is_exact_in_any_order() -> None:
    # left to right 0.1 + 0.2 + 0.3 = 0.6000000000000001, right to left 0.6; the exact sum of the three
    # doubles, 0.60000000000000000555..., rounds to the double 0.6. Water is only in one part.
    flat = [{"electricity_kwh": 0.1}, {"electricity_kwh": 0.2, "water_m3": 1.0}, {"electricity_kwh": 0.3}]
    parts = [decode_components(p) for p in flat]
    assert sum_components(parts) == sum_components(reversed(parts))
    assert encode_components(sum_components(parts)) == {"electricity_kwh": 0.6, "water_m3": 1.0}


ROOT = Path(__file__).resolve().parents[2]
LOAD_METERS = (
    elec("s", "it", Role.IT_LOAD),
    elec("s", "cooling", Role.COOLING),
    elec("s", "lighting", Role.LIGHTING),
    elec("s", "other", Role.OTHER_LOAD),
)
_LOAD_SUM = """
from peakwatch.domain.kpis import minute_components
from tests.unit.test_domain_kpis import LOAD_METERS
amounts = {"it": 0.1, "cooling": 0.7, "lighting": 0.3, "other": 0.2}
print(repr(minute_components(LOAD_METERS, amounts).electricity_kwh))
"""


def test_the_loads_add_up_the_same_in_every_process() -> None:
    # Loads in their fixed order (IT, cooling, lighting, other): 0.1 + 0.7 = 0.7999999999999999,
    # + 0.3 = 1.0999999999999999, + 0.2 = 1.2999999999999998. Other orders give 1.3, and a set of roles
    # is iterated in an order that depends on the process's hash seed: a minute computed live and the
    # same minute rebuilt in another process must not differ in the last bit.
    seeds = ("0", "1", "2", "3", "4", "5")
    printed = {
        subprocess.run(
            [sys.executable, "-c", _LOAD_SUM],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in seeds
    }
    assert printed == {"1.2999999999999998"}
