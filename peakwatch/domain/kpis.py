"""The site energy balance and every KPI computed from it. Pure functions; units in names.

Two steps, so that longer windows are exact:

1. ``minute_components`` turns one minute's per-meter amounts into the site's *components*: additive
   energies and quantities (electricity consumed, purchased, renewables consumed, fuel per carrier,
   water, output, per-zone energy, meter-interval counts). Components depend on the meters only, never
   on factors, so a factor revision does not touch them.
2. ``window_kpis`` computes every KPI of a window of any period from its components (a longer window's
   components are the sums of its minutes'; ``add_components``) and the site's resolved factors. Ratios
   are therefore always ratios of sums, never averages of ratios.

Definitions, units and references: docs/kpis.md (which repeats the rules below for operators) and
../shared/domain.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from peakwatch.domain.factors import (
    COAL_EQUIVALENT_SLOT,
    EQUIVALENT_SLOT,
    GRID_SLOT,
    RESIDUAL_SLOT,
    ResolvedFactors,
)
from peakwatch.domain.models import Carrier, KpiWindow, Meter, Quantity, Role, SiteKind
from peakwatch.domain.periods import MINUTE_MS, Period
from peakwatch.domain.units import meter_quantity

KWH_PER_KGCE = 29.307 / 3.6
"""Energy content of 1 kgce (29,307 kJ, GB/T 2589-2020) in kWh: non-electric carriers in the PUE numerator."""
KWH_PER_GJ = 1e6 / 3600
QUARTER_HOUR_H = 0.25

DEFAULT_GB40879_THRESHOLDS: tuple[float, float, float] = (1.20, 1.30, 1.50)
"""Upper limits of the electric energy ratio for GB 40879-2021 grades 1, 2 and 3 (grade 3 is the legal
limit). Commonly quoted values; the standard's table is not verified (domain.md §2), so configurable."""

# component keys ---------------------------------------------------------------------------------
ELECTRICITY = "electricity_kwh"
FACILITY = "facility_kwh"
IT = "it_kwh"
GRID_IMPORT = "grid_import_kwh"
GRID_EXPORT = "grid_export_kwh"
PURCHASED = "purchased_kwh"
RENEWABLE_GENERATION = "renewable_generation_kwh"
RENEWABLE_CONSUMED = "renewable_consumed_kwh"
GENERATOR_OUTPUT = "generator_output_kwh"
STORAGE_CHARGE = "storage_charge_kwh"
STORAGE_DISCHARGE = "storage_discharge_kwh"
REUSED = "reused_kwh"
PUE_FACILITY = "pue_facility_kwh"
PUE_IT = "pue_it_kwh"
"""Facility and IT energy of the minutes in which both reported: PUE and the GB 40879 ratio use only
these, so a meter missing for part of a window lowers completeness, not the ratio."""
GREEN_CERTIFICATES = "green_certificates_kwh"
GREEN_COVERED = "green_covered_kwh"
"""Months only: certificates registered, and the part of them that covered purchased electricity (at
most the month's purchases and its electricity not already renewable). A 12-month window sums them,
so its market-based values are the sums of its months'."""
WATER = "water_m3"
EXPECTED = "n_expected"
PRESENT = "n_present"
ESTIMATED = "n_estimated"
FUEL_PREFIX = "fuel:"
"""``fuel:<carrier>:<quantity>``: fuel burned or heat bought for direct use (final energy)."""
GENERATOR_FUEL_PREFIX = "genfuel:"
"""``genfuel:<carrier>:<quantity>``: fuel turned into electricity on site (not final energy)."""
OUTPUT_PREFIX = "output:"
ZONE_PREFIX = "zone:"
"""``zone:<zone>:total_kwh`` and ``zone:<zone>:it_kwh`` (pPUE)."""

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
_ZONE_LOADS = frozenset({Role.IT_LOAD, Role.COOLING, Role.LIGHTING, Role.UPS_LOSSES, Role.OTHER_LOAD})


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing, the denominator not positive or
    the quotient not finite."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    quotient = numerator / denominator
    return quotient if math.isfinite(quotient) else None  # a subnormal denominator overflows


def add_components(into: dict[str, float], other: Mapping[str, float]) -> dict[str, float]:
    """Add ``other`` into ``into`` key by key (a key present in either is present in the sum)."""
    for key, value in other.items():
        into[key] = into.get(key, 0.0) + value
    return into


def sum_components(parts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Key by key, the exact sum (``math.fsum``, correctly rounded) of ``parts``: a window's value must
    not depend on the order its children come in (rows in storage order, a compressed chunk's)."""
    columns: dict[str, list[float]] = {}
    for part in parts:
        for key, value in part.items():
            columns.setdefault(key, []).append(value)
    return {key: _fsum(columns[key]) for key in sorted(columns)}


def _fsum(values: list[float]) -> float:
    """``math.fsum``, NaN where it raises (``inf - inf``, intermediate overflow): ``finite_window`` then
    flags the window instead of the rollup dying."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        return math.nan


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
    if not all(math.isfinite(v) for v in window.components.values()):
        changes["components"] = {k: v if math.isfinite(v) else 0.0 for k, v in window.components.items()}
    if not all(v is None or math.isfinite(v) for v in window.ppue.values()):
        changes["ppue"] = {k: v if v is None or math.isfinite(v) else None for k, v in window.ppue.items()}
    if not changes:
        return window
    changes["flags"] = tuple(sorted({*window.flags, NOT_COMPUTABLE}))
    return msgspec.structs.replace(window, **changes)


def minute_components(
    meters: Iterable[Meter],
    amounts: Mapping[str, float],
    *,
    estimated: Iterable[str] = (),
) -> dict[str, float]:
    """The site's components for one window from per-meter amounts (canonical units of each meter).

    Electricity consumed, in order of preference: the ``facility_total`` meters; else, when a grid
    import meter exists, ``import - export + PV + wind + generator output + storage discharge - storage
    charge``; else the sum of electric load meters when there are any; else the generation balance.
    Renewable generation is consumed on site before any export. Purchased electricity is the metered
    grid import, else consumption minus renewables consumed and generator output. Consumption is never
    negative. A meter absent from ``amounts`` did not report for the window (completeness).
    """
    meters = tuple(meters)
    by_role: dict[Role, float] = {}
    has_role: set[Role] = set()
    present_roles: set[Role] = set()
    out: dict[str, float] = {EXPECTED: float(len(meters)), PRESENT: 0.0, ESTIMATED: 0.0}
    estimated_ids = set(estimated)
    for meter in meters:
        if meter.id in amounts:
            out[PRESENT] += 1.0
            if meter.id in estimated_ids:
                out[ESTIMATED] += 1.0
        amount = amounts.get(meter.id, 0.0)
        quantity, _ = meter_quantity(meter.unit)
        if quantity is Quantity.POWER_KW:
            quantity = Quantity.ENERGY_KWH  # power meters contribute integrated energy
        if meter.role is Role.ENERGY_REUSE:
            kwh = amount * KWH_PER_GJ if quantity is Quantity.HEAT_GJ else amount
            out[REUSED] = out.get(REUSED, 0.0) + kwh
            continue
        if meter.carrier is Carrier.ELECTRICITY:
            has_role.add(meter.role)
            if meter.id in amounts:
                present_roles.add(meter.role)
            by_role[meter.role] = by_role.get(meter.role, 0.0) + amount
            if meter.zone is not None and meter.role in _ZONE_LOADS:
                key = f"{ZONE_PREFIX}{meter.zone}:total_kwh"
                out[key] = out.get(key, 0.0) + amount
                if meter.role is Role.IT_LOAD:
                    key = f"{ZONE_PREFIX}{meter.zone}:it_kwh"
                    out[key] = out.get(key, 0.0) + amount
            continue
        if meter.role is Role.WATER_SUPPLY or meter.carrier is Carrier.WATER:
            out[WATER] = out.get(WATER, 0.0) + amount
            continue
        if meter.role is Role.PRODUCTION_OUTPUT or meter.carrier is Carrier.PRODUCT:
            key = f"{OUTPUT_PREFIX}{quantity.value}"
            out[key] = out.get(key, 0.0) + amount
            continue
        prefix = GENERATOR_FUEL_PREFIX if meter.role is Role.GENERATOR_FUEL else FUEL_PREFIX
        key = f"{prefix}{meter.carrier.value}:{quantity.value}"
        out[key] = out.get(key, 0.0) + amount

    def total(*roles: Role) -> float:
        return sum(by_role.get(r, 0.0) for r in roles)

    grid_import = total(Role.GRID_IMPORT)
    grid_export = total(Role.GRID_EXPORT)
    renewable_generation = total(Role.PV_GENERATION, Role.WIND_GENERATION)
    generator_output = total(Role.GENERATOR_OUTPUT)
    if Role.FACILITY_TOTAL in has_role:
        electricity = total(Role.FACILITY_TOTAL)
    elif Role.GRID_IMPORT in has_role or not (has_role & _ELECTRIC_LOADS):
        electricity = (
            grid_import
            - grid_export
            + renewable_generation
            + generator_output
            + total(Role.STORAGE_DISCHARGE)
            - total(Role.STORAGE_CHARGE)
        )
    else:
        electricity = sum(by_role.get(r, 0.0) for r in _ELECTRIC_LOADS)
    electricity = max(electricity, 0.0)
    renewable_consumed = min(max(renewable_generation - grid_export, 0.0), electricity)
    if Role.GRID_IMPORT in has_role:
        purchased = grid_import
    else:
        purchased = max(electricity - renewable_consumed - generator_output, 0.0)
    out[ELECTRICITY] = electricity
    out[PURCHASED] = purchased
    out[RENEWABLE_GENERATION] = renewable_generation
    out[RENEWABLE_CONSUMED] = renewable_consumed
    out[GRID_EXPORT] = grid_export
    if Role.GRID_IMPORT in has_role:
        out[GRID_IMPORT] = grid_import
    # facility and IT only when they reported: a missing meter is a gap, not 0 kWh
    if Role.FACILITY_TOTAL in present_roles:
        out[FACILITY] = total(Role.FACILITY_TOTAL)
    if Role.IT_LOAD in present_roles:
        out[IT] = total(Role.IT_LOAD)
    if Role.FACILITY_TOTAL in present_roles and Role.IT_LOAD in present_roles:
        out[PUE_FACILITY] = total(Role.FACILITY_TOTAL)
        out[PUE_IT] = total(Role.IT_LOAD)
    if Role.GENERATOR_OUTPUT in has_role:
        out[GENERATOR_OUTPUT] = generator_output
    if Role.STORAGE_CHARGE in has_role or Role.STORAGE_DISCHARGE in has_role:
        out[STORAGE_CHARGE] = total(Role.STORAGE_CHARGE)
        out[STORAGE_DISCHARGE] = total(Role.STORAGE_DISCHARGE)
    return out


def green_coverage(month: Mapping[str, float], certificates_kwh: float) -> dict[str, float]:
    """One month's certificates and the part of them that covers its purchased electricity: at most the
    purchases, and at most the electricity not already renewable on site (so the market-based green
    share never exceeds 1). Clamped per month, so a 12-month window is the sum of its months."""
    coverable = max(
        min(month.get(PURCHASED, 0.0), month.get(ELECTRICITY, 0.0) - month.get(RENEWABLE_CONSUMED, 0.0)), 0.0
    )
    return {GREEN_CERTIFICATES: certificates_kwh, GREEN_COVERED: min(certificates_kwh, coverable)}


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


def _carrier_of(key: str) -> tuple[Carrier, Quantity]:
    _, carrier, quantity = key.split(":")
    return Carrier(carrier), Quantity(quantity)


def gb40879_grade(ratio_value: float | None, thresholds: tuple[float, float, float]) -> str | None:
    """Grade ``1``, ``2`` or ``3`` (3 is the legal limit) of an electric energy ratio, or ``over_limit``."""
    if ratio_value is None:
        return None
    for grade, limit in enumerate(thresholds, start=1):
        if ratio_value <= limit:
            return str(grade)
    return "over_limit"


def quarter_hour_demand_kw(components: Mapping[str, float]) -> float:
    """Average demand of a 15-minute window: grid import when metered (what is billed), else consumption."""
    basis = components.get(GRID_IMPORT, components.get(ELECTRICITY, 0.0))
    return basis / QUARTER_HOUR_H


def window_kpis(
    site_id: str,
    start_ms: int,
    end_ms: int,
    components: Mapping[str, float],
    inputs: WindowInputs,
    *,
    flags: Iterable[str] = (),
    revision: int = 0,
) -> KpiWindow:
    """Every KPI of one site window from its components (see the module docstring)."""
    c = components
    f = inputs.factors
    is_dc = inputs.kind is SiteKind.DATA_CENTRE
    electricity = c.get(ELECTRICITY, 0.0)
    purchased = c.get(PURCHASED, 0.0)
    generator_output = c.get(GENERATOR_OUTPUT, 0.0)
    facility = c.get(FACILITY)
    it = c.get(IT)

    direct_kgce = 0.0
    generator_kgce = 0.0
    fuel_emissions = 0.0
    for key, amount in c.items():
        if key.startswith(FUEL_PREFIX) or key.startswith(GENERATOR_FUEL_PREFIX):
            carrier, quantity = _carrier_of(key)
            kgce = amount * (f.kgce_per_unit(carrier, quantity) or 0.0)
            fuel_emissions += amount * (f.co2_per_unit(carrier, quantity) or 0.0)
            if key.startswith(FUEL_PREFIX):
                direct_kgce += kgce
            else:
                generator_kgce += kgce

    # electricity at both conversions; generator output is counted through its fuel, not twice
    electricity_kgce = electricity * f.value(EQUIVALENT_SLOT)
    electricity_kgce_coal = electricity * f.value(COAL_EQUIVALENT_SLOT)
    total_kgce = (electricity - generator_output) * f.value(EQUIVALENT_SLOT) + direct_kgce + generator_kgce
    electricity_emissions = purchased * f.value(GRID_SLOT)
    emissions = electricity_emissions + fuel_emissions

    monthly = inputs.period in (Period.MONTH, Period.YEAR)
    certificates: float | None = None
    covered = 0.0
    market_electricity: float | None = None
    added: dict[str, float] = {}
    if inputs.period is Period.MONTH:
        added = green_coverage(c, inputs.green_certificates_kwh or 0.0)
        certificates, covered = added[GREEN_CERTIFICATES], added[GREEN_COVERED]
    elif inputs.period is Period.YEAR:
        certificates = c.get(GREEN_CERTIFICATES, 0.0)
        covered = c.get(GREEN_COVERED, 0.0)
    if certificates is not None:
        market_electricity = (purchased - covered) * f.value(RESIDUAL_SLOT)

    # data-centre total energy: facility electricity plus non-electric carriers used directly
    dc_total = None if facility is None else facility + direct_kgce * KWH_PER_KGCE
    pue_facility = c.get(PUE_FACILITY)
    pue_value = (
        ratio(None if pue_facility is None else pue_facility + direct_kgce * KWH_PER_KGCE, c.get(PUE_IT))
        if is_dc
        else None
    )
    renewable = c.get(RENEWABLE_CONSUMED, 0.0) + covered
    ref_denominator = dc_total if is_dc and dc_total is not None else electricity

    if inputs.period is Period.QUARTER_HOUR:
        max_demand: float | None = quarter_hour_demand_kw(c)
    elif inputs.period is Period.MINUTE:
        max_demand = None  # a minute is not a demand interval
    else:
        max_demand = inputs.max_demand_kw

    outputs = [v for k, v in c.items() if k.startswith(OUTPUT_PREFIX)]
    output = outputs[0] if len(outputs) == 1 else None
    value_added_10k = (
        None if inputs.value_added_cny is None or not monthly else inputs.value_added_cny / 10_000
    )

    zones: dict[str, float | None] = {}
    if is_dc:
        for key in c:
            if key.startswith(ZONE_PREFIX) and key.endswith(":total_kwh"):
                zone_name = key[len(ZONE_PREFIX) : -len(":total_kwh")]
                zones[zone_name] = ratio(c[key], c.get(f"{ZONE_PREFIX}{zone_name}:it_kwh"))

    expected = c.get(EXPECTED, 0.0)
    window = KpiWindow(
        site_id=site_id,
        period=inputs.period.value,
        start_ms=start_ms,
        end_ms=end_ms,
        electricity_kwh=electricity,
        facility_kwh=facility,
        it_kwh=it,
        renewable_generation_kwh=c.get(RENEWABLE_GENERATION, 0.0),
        renewable_consumed_kwh=c.get(RENEWABLE_CONSUMED, 0.0),
        grid_import_kwh=c.get(GRID_IMPORT, 0.0),
        grid_export_kwh=c.get(GRID_EXPORT, 0.0),
        electricity_kgce=electricity_kgce,
        electricity_kgce_coal=electricity_kgce_coal,
        total_kgce=total_kgce,
        emissions_kg=emissions,
        electricity_emissions_kg=electricity_emissions,
        pue=pue_value,
        electrification_rate=ratio(electricity_kgce, electricity_kgce + direct_kgce),
        electrification_rate_coal=ratio(electricity_kgce_coal, electricity_kgce_coal + direct_kgce),
        carbon_intensity_kg_per_kwh=ratio(electricity_emissions, electricity),
        green_power_share=ratio(c.get(RENEWABLE_CONSUMED, 0.0), electricity),
        emissions_market_kg=None if market_electricity is None else market_electricity + fuel_emissions,
        electricity_emissions_market_kg=market_electricity,
        carbon_intensity_market_kg_per_kwh=ratio(market_electricity, electricity),
        green_certificates_kwh=certificates,
        green_power_share_market=ratio(renewable, electricity) if certificates is not None else None,
        cue=ratio(emissions, it) if is_dc else None,
        ref=min(ratio(renewable, ref_denominator) or 0.0, 1.0) if ref_denominator > 0 else None,
        wue_l_per_kwh=ratio(c[WATER] * 1000.0, it) if is_dc and WATER in c else None,
        erf=ratio(c[REUSED], ref_denominator) if REUSED in c else None,
        ppue=zones,
        max_demand_kw=max_demand,
        output=output,
        energy_intensity_kgce_per_unit=ratio(total_kgce, output),
        value_added_10k_cny=value_added_10k,
        energy_intensity_kgce_per_10k_cny=ratio(total_kgce, value_added_10k),
        gb40879_grade=(
            gb40879_grade(ratio(pue_facility, c.get(PUE_IT)), inputs.gb40879_thresholds) if is_dc else None
        ),
        completeness=min(c.get(PRESENT, 0.0) / expected, 1.0) if expected > 0 else 0.0,
        estimated=c.get(ESTIMATED, 0.0) > 0,
        flags=tuple(sorted(set(flags))),
        interim=inputs.period is not Period.YEAR,
        components={**c, **added},
        factors_used=dict(f.used),
        revision=revision,
    )
    return finite_window(window)


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
    components = sum_components(c.components for c in children)
    components[EXPECTED] = float(meters * ((end_ms - start_ms) // MINUTE_MS))
    demands = [c.max_demand_kw for c in children if c.max_demand_kw is not None]
    flags = {f for c in children for f in c.flags}
    inputs = msgspec.structs.replace(inputs, max_demand_kw=max(demands) if demands else None)
    return window_kpis(site_id, start_ms, end_ms, components, inputs, flags=flags)
