"""The site energy balance and every KPI computed from it. Pure functions; units in names.

Two steps, so that longer windows are exact:

1. ``minute_components`` turns one minute's per-meter amounts into the site's *components*: additive
   energies and quantities (electricity consumed, purchased, renewables consumed, fuel per carrier,
   water, output, per-zone energy, meter-interval counts). Components depend on the meters only, never
   on factors, so a factor revision does not touch them.
2. ``window_kpis`` computes every KPI of a window of any period from its components (a longer window's
   components are the sums of its minutes'; ``peakwatch.domain.components``) and the site's resolved
   factors. Ratios are therefore always ratios of sums, never averages of ratios.

Definitions, units and references: docs/kpis.md (which repeats the rules below for operators) and
../shared/domain.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import msgspec

from peakwatch.domain.components import add_amount, finite_components, or_zero, sum_components
from peakwatch.domain.factors import (
    COAL_EQUIVALENT_SLOT,
    EQUIVALENT_SLOT,
    GRID_SLOT,
    RESIDUAL_SLOT,
    ResolvedFactors,
)
from peakwatch.domain.models import (
    Carrier,
    Components,
    Fuel,
    FuelUse,
    KpiWindow,
    Meter,
    Quantity,
    Role,
    SiteKind,
)
from peakwatch.domain.periods import MINUTE_MS, Period
from peakwatch.domain.units import meter_quantity

_K = TypeVar("_K")

KWH_PER_KGCE = 29.307 / 3.6
"""Energy content of 1 kgce (29,307 kJ, GB/T 2589-2020) in kWh: non-electric carriers in the PUE numerator."""
KWH_PER_GJ = 1e6 / 3600
QUARTER_HOUR_H = 0.25
_MONTHLY = (Period.MONTH, Period.YEAR)

DEFAULT_GB40879_THRESHOLDS: tuple[float, float, float] = (1.20, 1.30, 1.50)
"""Upper limits of the electric energy ratio for GB 40879-2021 grades 1, 2 and 3 (grade 3 is the legal
limit). Commonly quoted values; the standard's table is not verified (domain.md §2), so configurable."""

_ELECTRIC_LOAD_ORDER = (
    Role.IT_LOAD,
    Role.COOLING,
    Role.LIGHTING,
    Role.UPS_LOSSES,
    Role.PROCESS_LOAD,
    Role.HEAT_PUMP,
    Role.OTHER_LOAD,
    Role.PROCESS_HEAT,
    Role.BOILER,
)
"""The loads, in the order their electricity is added up: a fixed order, because a set of roles is
iterated in an order that changes with each process's hash seed, and float addition is not associative
(0.1 + 0.2 + 0.3 + 0.7 is 1.3 in one order and 1.2999999999999998 in another), so a minute computed live
and the same minute rebuilt by another process would differ in the last bit."""
_ELECTRIC_LOADS = frozenset(_ELECTRIC_LOAD_ORDER)
_ZONE_LOADS = frozenset({Role.IT_LOAD, Role.COOLING, Role.LIGHTING, Role.UPS_LOSSES, Role.OTHER_LOAD})


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing, the denominator not positive or
    the quotient not finite."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    quotient = numerator / denominator
    return quotient if math.isfinite(quotient) else None  # a subnormal denominator overflows


NOT_COMPUTABLE = "not_computable"
"""Window flag: a value could not be computed (not finite) and is shown as 0 (a number the API
promises) or absent (an optional one); never stored as null where a number is promised."""
_REQUIRED_FLOATS = frozenset(f.name for f in msgspec.structs.fields(KpiWindow) if f.type is float)


def finite_window(window: KpiWindow) -> KpiWindow:
    """``window`` with every non-finite number replaced (0.0 where the field is a number, ``None`` where
    it is optional; 0.0 for a component) and flagged ``not_computable``; ``window`` itself when all is
    finite. Applied to every window computed, and to windows read back from storage written before."""
    changes: dict[str, object] = {}
    for name in window.__struct_fields__:
        value = getattr(window, name)
        if type(value) is float and not math.isfinite(value):
            changes[name] = 0.0 if name in _REQUIRED_FLOATS else None
    components = finite_components(window.components)
    if components is not window.components:
        changes["components"] = components
    if not all(v is None or math.isfinite(v) for v in window.ppue.values()):
        changes["ppue"] = {k: v if v is None or math.isfinite(v) else None for k, v in window.ppue.items()}
    if not changes:
        return window
    changes["flags"] = tuple(sorted({*window.flags, NOT_COMPUTABLE}))
    return msgspec.structs.replace(window, **changes)


@dataclass(slots=True)
class _MinuteAmounts:
    """One minute's meter amounts gathered by what they measure, before the electricity balance."""

    expected: float
    present: float = 0.0
    estimated: float = 0.0
    electric: dict[Role, float] = field(default_factory=dict)
    """Electricity per meter role."""
    metered: set[Role] = field(default_factory=set)
    """The electric roles the site has a meter for."""
    reporting: set[Role] = field(default_factory=set)
    """Of them, those that reported this minute (a facility meter that did not is a gap, not 0 kWh)."""
    reused_kwh: float | None = None
    water_m3: float | None = None
    fuels: dict[Fuel, float] = field(default_factory=dict)
    outputs: dict[Quantity, float] = field(default_factory=dict)
    zone_total_kwh: dict[str, float] = field(default_factory=dict)
    zone_it_kwh: dict[str, float] = field(default_factory=dict)

    def add(self, meter: Meter, amount: float, reported: bool) -> None:
        """Count one meter's amount where it belongs: reuse, electricity (and its zone), water, output,
        or fuel by what it was burned for."""
        quantity, _ = meter_quantity(meter.unit)
        if quantity is Quantity.POWER_KW:
            quantity = Quantity.ENERGY_KWH  # power meters contribute integrated energy
        if meter.role is Role.ENERGY_REUSE:
            kwh = amount * KWH_PER_GJ if quantity is Quantity.HEAT_GJ else amount
            self.reused_kwh = add_amount(self.reused_kwh, kwh)
        elif meter.carrier is Carrier.ELECTRICITY:
            self.metered.add(meter.role)
            if reported:
                self.reporting.add(meter.role)
            _add_to(self.electric, meter.role, amount)
            if meter.zone is not None and meter.role in _ZONE_LOADS:
                _add_to(self.zone_total_kwh, meter.zone, amount)
                if meter.role is Role.IT_LOAD:
                    _add_to(self.zone_it_kwh, meter.zone, amount)
        elif meter.role is Role.WATER_SUPPLY or meter.carrier is Carrier.WATER:
            self.water_m3 = add_amount(self.water_m3, amount)
        elif meter.role is Role.PRODUCTION_OUTPUT or meter.carrier is Carrier.PRODUCT:
            _add_to(self.outputs, quantity, amount)
        else:
            use = FuelUse.GENERATOR if meter.role is Role.GENERATOR_FUEL else FuelUse.DIRECT
            _add_to(self.fuels, Fuel(use, meter.carrier, quantity), amount)

    def kwh(self, *roles: Role) -> float:
        """Electricity of the meters of ``roles`` (0 when the site has none)."""
        return sum(self.electric.get(role, 0.0) for role in roles)


def _add_to(totals: dict[_K, float], key: _K, amount: float) -> None:
    totals[key] = totals.get(key, 0.0) + amount


def minute_components(
    meters: Iterable[Meter],
    amounts: Mapping[str, float],
    *,
    estimated: Iterable[str] = (),
) -> Components:
    """The site's components for one window from per-meter amounts (canonical units of each meter).

    Electricity consumed, in order of preference: the ``facility_total`` meters; else, when a grid
    import meter exists, ``import - export + PV + wind + generator output + storage discharge - storage
    charge``; else the sum of electric load meters when there are any; else the generation balance.
    Renewable generation is consumed on site before any export. Purchased electricity is the metered
    grid import, else consumption minus renewables consumed and generator output. Consumption is never
    negative. A meter absent from ``amounts`` did not report for the window (completeness).
    """
    meters = tuple(meters)
    minute = _MinuteAmounts(expected=float(len(meters)))
    estimated_ids = set(estimated)
    for meter in meters:
        reported = meter.id in amounts
        if reported:
            minute.present += 1.0
            if meter.id in estimated_ids:
                minute.estimated += 1.0
        minute.add(meter, amounts.get(meter.id, 0.0), reported)

    metered, reporting = minute.metered, minute.reporting
    grid_import = minute.kwh(Role.GRID_IMPORT)
    grid_export = minute.kwh(Role.GRID_EXPORT)
    renewable_generation = minute.kwh(Role.PV_GENERATION, Role.WIND_GENERATION)
    generator_output = minute.kwh(Role.GENERATOR_OUTPUT)
    if Role.FACILITY_TOTAL in metered:
        electricity = minute.kwh(Role.FACILITY_TOTAL)
    elif Role.GRID_IMPORT in metered or not (metered & _ELECTRIC_LOADS):
        electricity = (
            grid_import
            - grid_export
            + renewable_generation
            + generator_output
            + minute.kwh(Role.STORAGE_DISCHARGE)
            - minute.kwh(Role.STORAGE_CHARGE)
        )
    else:
        electricity = minute.kwh(*_ELECTRIC_LOAD_ORDER)
    electricity = max(electricity, 0.0)
    renewable_consumed = min(max(renewable_generation - grid_export, 0.0), electricity)
    if Role.GRID_IMPORT in metered:
        purchased = grid_import
    else:
        purchased = max(electricity - renewable_consumed - generator_output, 0.0)
    # facility and IT only when they reported: a missing meter is a gap, not 0 kWh
    facility = minute.kwh(Role.FACILITY_TOTAL) if Role.FACILITY_TOTAL in reporting else None
    it = minute.kwh(Role.IT_LOAD) if Role.IT_LOAD in reporting else None
    both = facility is not None and it is not None
    has_storage = Role.STORAGE_CHARGE in metered or Role.STORAGE_DISCHARGE in metered
    return Components(
        n_expected=minute.expected,
        n_present=minute.present,
        n_estimated=minute.estimated,
        electricity_kwh=electricity,
        purchased_kwh=purchased,
        renewable_generation_kwh=renewable_generation,
        renewable_consumed_kwh=renewable_consumed,
        grid_import_kwh=grid_import if Role.GRID_IMPORT in metered else None,
        grid_export_kwh=grid_export,
        facility_kwh=facility,
        it_kwh=it,
        pue_facility_kwh=facility if both else None,
        pue_it_kwh=it if both else None,
        generator_output_kwh=generator_output if Role.GENERATOR_OUTPUT in metered else None,
        storage_charge_kwh=minute.kwh(Role.STORAGE_CHARGE) if has_storage else None,
        storage_discharge_kwh=minute.kwh(Role.STORAGE_DISCHARGE) if has_storage else None,
        reused_kwh=minute.reused_kwh,
        water_m3=minute.water_m3,
        fuels=minute.fuels,
        outputs=minute.outputs,
        zone_total_kwh=minute.zone_total_kwh,
        zone_it_kwh=minute.zone_it_kwh,
    )


def green_coverage(month: Components, certificates_kwh: float) -> Components:
    """One month's certificates and the part of them that covers its purchased electricity: at most the
    purchases, and at most the electricity not already renewable on site (so the market-based green
    share never exceeds 1). Clamped per month, so a 12-month window is the sum of its months."""
    coverable = max(
        min(
            or_zero(month.purchased_kwh),
            or_zero(month.electricity_kwh) - or_zero(month.renewable_consumed_kwh),
        ),
        0.0,
    )
    return Components(
        green_certificates_kwh=certificates_kwh, green_covered_kwh=min(certificates_kwh, coverable)
    )


class WindowInputs(msgspec.Struct, frozen=True, kw_only=True):
    """What a window's KPIs need besides its components."""

    kind: SiteKind
    factors: ResolvedFactors
    period: Period = Period.MINUTE
    green_certificates_kwh: float | None = None
    """Certificates and green-power contracts of a calendar month (a 12-month window reads its months'
    ``green_coverage`` from its components instead)."""
    value_added_cny: float | None = None
    """Value added in the window (calendar months and longer; else None)."""
    max_demand_kw: float | None = None
    """Largest 15-minute demand of the window's quarter hours (for windows longer than 15 minutes)."""
    gb40879_thresholds: tuple[float, float, float] = DEFAULT_GB40879_THRESHOLDS


def gb40879_grade(ratio_value: float | None, thresholds: tuple[float, float, float]) -> str | None:
    """Grade ``1``, ``2`` or ``3`` (3 is the legal limit) of an electric energy ratio, or ``over_limit``."""
    if ratio_value is None:
        return None
    for grade, limit in enumerate(thresholds, start=1):
        if ratio_value <= limit:
            return str(grade)
    return "over_limit"


def quarter_hour_demand_kw(components: Components) -> float:
    """Average demand of a 15-minute window: grid import when metered (what is billed), else consumption."""
    basis = components.grid_import_kwh
    return (or_zero(components.electricity_kwh) if basis is None else basis) / QUARTER_HOUR_H


class _Energy(NamedTuple):
    """A window's energy in kgce and its location-based emissions."""

    electricity_kgce: float
    electricity_kgce_coal: float
    """Electricity at its equivalent and at its coal-equivalent value."""
    direct_kgce: float
    """Fuel and heat used directly: the final energy besides electricity."""
    total_kgce: float
    """Comprehensive energy consumption: generator output counts through its fuel, not twice."""
    electricity_emissions_kg: float
    """Purchased electricity at the grid factor."""
    fuel_emissions_kg: float
    """Every fuel burned (generators included) and heat bought."""
    emissions_kg: float


def _energy(components: Components, factors: ResolvedFactors) -> _Energy:
    direct_kgce = generator_kgce = fuel_emissions = 0.0
    for fuel, quantity in components.fuels.items():
        kgce = quantity * (factors.kgce_per_unit(fuel.carrier, fuel.quantity) or 0.0)
        fuel_emissions += quantity * (factors.co2_per_unit(fuel.carrier, fuel.quantity) or 0.0)
        if fuel.use is FuelUse.DIRECT:
            direct_kgce += kgce
        else:
            generator_kgce += kgce
    electricity = or_zero(components.electricity_kwh)
    equivalent = factors.value(EQUIVALENT_SLOT)
    from_electricity = (electricity - or_zero(components.generator_output_kwh)) * equivalent
    electricity_emissions = or_zero(components.purchased_kwh) * factors.value(GRID_SLOT)
    return _Energy(
        electricity_kgce=electricity * equivalent,
        electricity_kgce_coal=electricity * factors.value(COAL_EQUIVALENT_SLOT),
        direct_kgce=direct_kgce,
        total_kgce=from_electricity + direct_kgce + generator_kgce,
        electricity_emissions_kg=electricity_emissions,
        fuel_emissions_kg=fuel_emissions,
        emissions_kg=electricity_emissions + fuel_emissions,
    )


class _Market(NamedTuple):
    """Certificates and green-power contracts of a calendar month or 12 months (``None``: shorter)."""

    certificates_kwh: float | None
    covered_kwh: float
    """The part of them that covered purchased electricity (0 for shorter windows)."""
    electricity_emissions_kg: float | None
    """Market-based: purchased electricity not covered × the residual factor."""
    components: Components
    """A month's components with its certificates and their coverage (a 12-month window sums its
    months'); the window's own otherwise."""


def _market(components: Components, inputs: WindowInputs) -> _Market:
    if inputs.period is Period.MONTH:
        coverage = green_coverage(components, inputs.green_certificates_kwh or 0.0)
        components = msgspec.structs.replace(
            components,
            green_certificates_kwh=coverage.green_certificates_kwh,
            green_covered_kwh=coverage.green_covered_kwh,
        )
    elif inputs.period is not Period.YEAR:
        return _Market(None, 0.0, None, components)
    certificates = or_zero(components.green_certificates_kwh)
    covered = or_zero(components.green_covered_kwh)
    residual = inputs.factors.value(RESIDUAL_SLOT)
    return _Market(
        certificates, covered, (or_zero(components.purchased_kwh) - covered) * residual, components
    )


def _max_demand_kw(components: Components, inputs: WindowInputs) -> float | None:
    if inputs.period is Period.QUARTER_HOUR:
        return quarter_hour_demand_kw(components)
    if inputs.period is Period.MINUTE:
        return None  # a minute is not a demand interval
    return inputs.max_demand_kw


def _ppue(components: Components) -> dict[str, float | None]:
    """Partial PUE per zone: the zone's electricity ÷ its IT electricity."""
    return {
        zone: ratio(kwh, components.zone_it_kwh.get(zone)) for zone, kwh in components.zone_total_kwh.items()
    }


def window_kpis(
    site_id: str,
    start_ms: int,
    end_ms: int,
    components: Components,
    inputs: WindowInputs,
    *,
    flags: Iterable[str] = (),
    revision: int = 0,
) -> KpiWindow:
    """Every KPI of one site window from its components (see the module docstring and docs/kpis.md)."""
    data_centre = inputs.kind is SiteKind.DATA_CENTRE
    electricity = or_zero(components.electricity_kwh)
    renewable_consumed = or_zero(components.renewable_consumed_kwh)
    facility, it = components.facility_kwh, components.it_kwh
    energy = _energy(components, inputs.factors)
    market = _market(components, inputs)
    # data-centre energy: facility electricity plus non-electric carriers used directly (the PUE numerator)
    direct_kwh = energy.direct_kgce * KWH_PER_KGCE
    pue_facility, pue_it = components.pue_facility_kwh, components.pue_it_kwh
    pue = ratio(None if pue_facility is None else pue_facility + direct_kwh, pue_it) if data_centre else None
    renewable = renewable_consumed + market.covered_kwh
    ref_denominator = facility + direct_kwh if data_centre and facility is not None else electricity
    output = next(iter(components.outputs.values())) if len(components.outputs) == 1 else None
    value_added = inputs.value_added_cny
    value_added_10k = value_added / 10_000 if value_added is not None and inputs.period in _MONTHLY else None
    expected = or_zero(components.n_expected)
    window = KpiWindow(
        site_id=site_id,
        period=inputs.period.value,
        start_ms=start_ms,
        end_ms=end_ms,
        electricity_kwh=electricity,
        facility_kwh=facility,
        it_kwh=it,
        renewable_generation_kwh=or_zero(components.renewable_generation_kwh),
        renewable_consumed_kwh=renewable_consumed,
        grid_import_kwh=or_zero(components.grid_import_kwh),
        grid_export_kwh=or_zero(components.grid_export_kwh),
        electricity_kgce=energy.electricity_kgce,
        electricity_kgce_coal=energy.electricity_kgce_coal,
        total_kgce=energy.total_kgce,
        emissions_kg=energy.emissions_kg,
        electricity_emissions_kg=energy.electricity_emissions_kg,
        pue=pue,
        electrification_rate=ratio(energy.electricity_kgce, energy.electricity_kgce + energy.direct_kgce),
        electrification_rate_coal=ratio(
            energy.electricity_kgce_coal, energy.electricity_kgce_coal + energy.direct_kgce
        ),
        carbon_intensity_kg_per_kwh=ratio(energy.electricity_emissions_kg, electricity),
        green_power_share=ratio(renewable_consumed, electricity),
        emissions_market_kg=_plus_or_none(market.electricity_emissions_kg, energy.fuel_emissions_kg),
        electricity_emissions_market_kg=market.electricity_emissions_kg,
        carbon_intensity_market_kg_per_kwh=ratio(market.electricity_emissions_kg, electricity),
        green_certificates_kwh=market.certificates_kwh,
        green_power_share_market=None if market.certificates_kwh is None else ratio(renewable, electricity),
        cue=ratio(energy.emissions_kg, it) if data_centre else None,
        ref=min(ratio(renewable, ref_denominator) or 0.0, 1.0) if ref_denominator > 0 else None,
        wue_l_per_kwh=_wue(components.water_m3, it) if data_centre else None,
        erf=None if components.reused_kwh is None else ratio(components.reused_kwh, ref_denominator),
        ppue=_ppue(components) if data_centre else {},
        max_demand_kw=_max_demand_kw(components, inputs),
        output=output,
        energy_intensity_kgce_per_unit=ratio(energy.total_kgce, output),
        value_added_10k_cny=value_added_10k,
        energy_intensity_kgce_per_10k_cny=ratio(energy.total_kgce, value_added_10k),
        gb40879_grade=gb40879_grade(ratio(pue_facility, pue_it), inputs.gb40879_thresholds)
        if data_centre
        else None,
        completeness=min(or_zero(components.n_present) / expected, 1.0) if expected > 0 else 0.0,
        estimated=or_zero(components.n_estimated) > 0,
        flags=tuple(sorted(set(flags))),
        interim=inputs.period is not Period.YEAR,
        components=market.components,
        factors_used=dict(inputs.factors.used),
        revision=revision,
    )
    return finite_window(window)


def _plus_or_none(value: float | None, plus: float) -> float | None:
    return None if value is None else value + plus


def _wue(water_m3: float | None, it_kwh: float | None) -> float | None:
    """Water (m³ → L) ÷ IT energy; only when water is metered."""
    return None if water_m3 is None else ratio(water_m3 * 1000.0, it_kwh)


def expect_every_minute(components: Components, meters: int, start_ms: int, end_ms: int) -> Components:
    """``components`` expecting each of the site's ``meters`` every minute of ``[start_ms, end_ms)``: a
    minute without a window lowers the completeness instead of vanishing from it."""
    return msgspec.structs.replace(components, n_expected=float(meters * ((end_ms - start_ms) // MINUTE_MS)))


def rollup_window(
    site_id: str,
    start_ms: int,
    end_ms: int,
    children: Sequence[KpiWindow],
    inputs: WindowInputs,
    meters: int,
) -> KpiWindow:
    """A window of ``inputs.period`` from its child windows (oldest first): their components summed,
    every one of the site's ``meters`` expected every minute of the *whole* window (so a window still in
    progress has the completeness it will close with if nothing more arrives), the largest child demand
    and every child's flags. The accountant stores windows computed so; the API shows periods in
    progress computed so from the closed children, hence equal values for equal minutes."""
    components = expect_every_minute(
        sum_components(child.components for child in children), meters, start_ms, end_ms
    )
    demands = [child.max_demand_kw for child in children if child.max_demand_kw is not None]
    flags = {flag for child in children for flag in child.flags}
    inputs = msgspec.structs.replace(inputs, max_demand_kw=max(demands) if demands else None)
    return window_kpis(site_id, start_ms, end_ms, components, inputs, flags=flags)
