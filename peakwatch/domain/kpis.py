"""KPI formulas and the site energy balance. Pure functions; units in names.

Definitions follow ../shared/domain.md and docs/kpis.md:

* PUE = facility energy ÷ IT energy (ISO/IEC 30134-2); windows shorter than 12 months are interim.
* Electrification rate = electricity ÷ total final energy, both in kgce (GB/T 2589, electricity at
  its equivalent value 0.1229 kgce/kWh).
* Carbon intensity (location-based) = purchased electricity × grid factor ÷ electricity consumed.
* Emissions = purchased electricity × grid factor + fuel combustion + purchased heat/steam.
* Green-power share = on-site renewable generation consumed on site ÷ electricity consumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.models import Carrier, KpiWindow, Meter, Role, Site, SiteKind
from peakwatch.domain.units import meter_quantity


def ratio(numerator: float, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when the denominator is missing or not positive."""
    if denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def pue(facility_kwh: float | None, it_kwh: float | None) -> float | None:
    return None if facility_kwh is None else ratio(facility_kwh, it_kwh)


def electrification_rate(electricity_kgce: float, total_kgce: float) -> float | None:
    return ratio(electricity_kgce, total_kgce)


def carbon_intensity_kg_per_kwh(electricity_emissions_kg: float, electricity_kwh: float) -> float | None:
    return ratio(electricity_emissions_kg, electricity_kwh)


def green_power_share(renewable_consumed_kwh: float, electricity_kwh: float) -> float | None:
    return ratio(renewable_consumed_kwh, electricity_kwh)


_NOT_CONSUMPTION = frozenset({Role.PRODUCTION_OUTPUT, Role.WATER_SUPPLY})
_ELECTRIC_LOADS = frozenset(
    {
        Role.IT_LOAD,
        Role.COOLING,
        Role.LIGHTING,
        Role.UPS_LOSSES,
        Role.PROCESS_LOAD,
        Role.HEAT_PUMP,
        Role.OTHER_LOAD,
        Role.PROCESS_HEAT,
        Role.BOILER,
    }
)


class EnergyBalance(msgspec.Struct, frozen=True, kw_only=True):
    """The site's energy balance over one window, everything the KPIs are made from."""

    electricity_kwh: float
    facility_kwh: float | None
    it_kwh: float | None
    renewable_generation_kwh: float
    renewable_consumed_kwh: float
    grid_import_kwh: float
    grid_export_kwh: float
    purchased_electricity_kwh: float
    fuel_kgce: float
    fuel_emissions_kg: float


def energy_balance(
    meters: Iterable[Meter], amounts: Mapping[str, float], factors: FactorLibrary
) -> EnergyBalance:
    """Sum per-meter amounts (canonical units) into the site balance.

    Electricity consumed is, in order of preference: the ``facility_total`` meters; else, when a grid
    import meter exists, the grid balance ``import - export + PV + wind + storage discharge - storage
    charge``; else the sum of electric load meters when there are any (docs/configuration.md: loads
    are the consumption when there is neither a facility nor a grid meter; a generation-only balance
    would ignore the unmetered purchases); else the generation balance. Renewable generation is
    consumed on site before any export.
    """
    by_role: dict[Role, float] = {}
    has_role: set[Role] = set()
    fuel_kgce = 0.0
    fuel_emissions_kg = 0.0
    for meter in meters:
        amount = amounts.get(meter.id, 0.0)
        if meter.carrier is Carrier.ELECTRICITY:
            has_role.add(meter.role)
            by_role[meter.role] = by_role.get(meter.role, 0.0) + amount
            continue
        if meter.role in _NOT_CONSUMPTION:
            continue
        quantity, _ = meter_quantity(meter.unit)
        kgce = factors.kgce_per_unit(meter.carrier, quantity)
        co2 = factors.co2_per_unit(meter.carrier, quantity)
        fuel_kgce += amount * (kgce or 0.0)
        fuel_emissions_kg += amount * (co2 or 0.0)

    def total(*roles: Role) -> float:
        return sum(by_role.get(r, 0.0) for r in roles)

    grid_import = total(Role.GRID_IMPORT)
    grid_export = total(Role.GRID_EXPORT)
    renewable_generation = total(Role.PV_GENERATION, Role.WIND_GENERATION)
    if Role.FACILITY_TOTAL in has_role:
        electricity = total(Role.FACILITY_TOTAL)
    elif Role.GRID_IMPORT in has_role or not (has_role & _ELECTRIC_LOADS):
        electricity = (
            grid_import
            - grid_export
            + renewable_generation
            + total(Role.STORAGE_DISCHARGE)
            - total(Role.STORAGE_CHARGE)
        )
    else:
        electricity = sum(by_role.get(r, 0.0) for r in _ELECTRIC_LOADS)
    electricity = max(electricity, 0.0)
    renewable_consumed = min(max(renewable_generation - grid_export, 0.0), electricity)
    purchased = grid_import if Role.GRID_IMPORT in has_role else max(electricity - renewable_consumed, 0.0)
    return EnergyBalance(
        electricity_kwh=electricity,
        facility_kwh=total(Role.FACILITY_TOTAL) if Role.FACILITY_TOTAL in has_role else None,
        it_kwh=total(Role.IT_LOAD) if Role.IT_LOAD in has_role else None,
        renewable_generation_kwh=renewable_generation,
        renewable_consumed_kwh=renewable_consumed,
        grid_import_kwh=grid_import,
        grid_export_kwh=grid_export,
        purchased_electricity_kwh=purchased,
        fuel_kgce=fuel_kgce,
        fuel_emissions_kg=fuel_emissions_kg,
    )


def site_kpis(
    site: Site,
    meters: Iterable[Meter],
    amounts: Mapping[str, float],
    factors: FactorLibrary,
    *,
    start_ms: int,
    end_ms: int,
    completeness: float,
    flags: Iterable[str] = (),
) -> KpiWindow:
    """All KPIs of one site window from its per-meter amounts (canonical units)."""
    balance = energy_balance(meters, amounts, factors)
    electricity_kgce = balance.electricity_kwh * factors.value("kgce.electricity.equivalent")
    total_kgce = electricity_kgce + balance.fuel_kgce
    electricity_emissions = balance.purchased_electricity_kwh * factors.value(site.grid_factor)
    return KpiWindow(
        site_id=site.id,
        start_ms=start_ms,
        end_ms=end_ms,
        electricity_kwh=balance.electricity_kwh,
        facility_kwh=balance.facility_kwh,
        it_kwh=balance.it_kwh,
        renewable_generation_kwh=balance.renewable_generation_kwh,
        renewable_consumed_kwh=balance.renewable_consumed_kwh,
        grid_import_kwh=balance.grid_import_kwh,
        grid_export_kwh=balance.grid_export_kwh,
        electricity_kgce=electricity_kgce,
        total_kgce=total_kgce,
        emissions_kg=electricity_emissions + balance.fuel_emissions_kg,
        electricity_emissions_kg=electricity_emissions,
        pue=pue(balance.facility_kwh, balance.it_kwh) if site.kind is SiteKind.DATA_CENTRE else None,
        electrification_rate=electrification_rate(electricity_kgce, total_kgce),
        carbon_intensity_kg_per_kwh=carbon_intensity_kg_per_kwh(
            electricity_emissions, balance.electricity_kwh
        ),
        green_power_share=green_power_share(balance.renewable_consumed_kwh, balance.electricity_kwh),
        completeness=completeness,
        flags=tuple(sorted(set(flags))),
        interim=True,
    )
