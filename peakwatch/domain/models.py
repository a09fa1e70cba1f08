"""The values that flow through peakwatch.

Readings are msgspec Structs (not pydantic models) because they are created on the hot path, one per
meter sample; registry objects (sites, meters) are created once at start-up and use msgspec too so
that the whole domain shares one style. Timestamps are integer epoch milliseconds (``*_ms``).
Quantities carry their canonical unit in the field name (``energy_kwh``, ``power_kw`` ...).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import msgspec


class SiteKind(enum.StrEnum):
    DATA_CENTRE = "data_centre"
    PARK = "park"


class Carrier(enum.StrEnum):
    """The energy carrier (or medium) a meter measures."""

    ELECTRICITY = "electricity"
    NATURAL_GAS = "natural_gas"
    STEAM = "steam"
    HEAT = "heat"
    DIESEL = "diesel"
    COAL = "coal"
    WATER = "water"
    PRODUCT = "product"  # production counters (units of output): not energy


class Role(enum.StrEnum):
    """What a meter measures in the site's energy balance; decides how KPIs use it."""

    FACILITY_TOTAL = "facility_total"
    IT_LOAD = "it_load"
    COOLING = "cooling"
    LIGHTING = "lighting"
    UPS_LOSSES = "ups_losses"
    PV_GENERATION = "pv_generation"
    WIND_GENERATION = "wind_generation"
    GRID_IMPORT = "grid_import"
    GRID_EXPORT = "grid_export"
    STORAGE_CHARGE = "storage_charge"
    STORAGE_DISCHARGE = "storage_discharge"
    PROCESS_HEAT = "process_heat"
    PROCESS_LOAD = "process_load"
    HEAT_PUMP = "heat_pump"
    BOILER = "boiler"
    GENERATOR_FUEL = "generator_fuel"
    """Fuel burned by an on-site generator; its electricity is counted by the generator_output meter."""
    GENERATOR_OUTPUT = "generator_output"
    """Electricity an on-site (fossil) generator delivers: consumed on site, not purchased."""
    ENERGY_REUSE = "energy_reuse"
    """Energy (usually heat) delivered for reuse outside the data centre (ERF, ISO/IEC 30134-6)."""
    PRODUCTION_OUTPUT = "production_output"
    WATER_SUPPLY = "water_supply"
    OTHER_LOAD = "other_load"


class Register(enum.StrEnum):
    """``cumulative``: a monotonically increasing register that must be differenced.
    ``interval``: each reading is the quantity consumed in the interval that ends at ``ts``.
    ``power``: each reading is instantaneous power; energy is integrated (trapezoid) and estimated."""

    CUMULATIVE = "cumulative"
    INTERVAL = "interval"
    POWER = "power"


class Quantity(enum.StrEnum):
    """Canonical quantities; the value is the field name used everywhere (payloads, tables, code)."""

    ENERGY_KWH = "energy_kwh"
    POWER_KW = "power_kw"
    VOLUME_M3 = "volume_m3"
    HEAT_GJ = "heat_gj"
    MASS_T = "mass_t"
    COUNT = "count"


class Site(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    kind: SiteKind
    timezone: str = "Asia/Shanghai"
    grid_factor: str | None = None
    """Id of a grid emission factor that overrides the ``grid`` slot of the site's factor set (``None``:
    the set's own, Hunan 2023 in the default set)."""
    factor_set: str = "default"
    """Name of the factor set (slot -> factor id) the site's KPIs use."""
    pue_category: str | None = None
    """Measurement category stated with every published PUE (ISO/IEC 30134-2 category 1..3, or The
    Green Grid PUE0..PUE3); ``None``: not stated (no category is assumed for a site that did not
    declare one)."""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Free-form labels (``class: new-large``, ``region: changsha``) that alert rules select on."""


class Meter(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    site_id: str
    carrier: Carrier
    role: Role
    register: Register = Register.CUMULATIVE
    unit: str = "kWh"
    """Unit of the meter's main register as configured (kWh, MWh, m3, GJ, MJ, t, kg, count)."""
    register_max: float | None = None
    """The register's modulus in ``unit``: it wraps to zero on reaching this value (1,000,000 for a
    six-digit DL/T 645 kWh register, which shows 999,999.99 and then 0.00)."""
    rated_kw: float | None = None
    """Rated power (kW; for other carriers the canonical unit per hour, e.g. m3/h, t/h): an
    increment implying more than ``GLITCH_MARGIN`` times this rate is a glitch, not energy."""
    zone: str | None = None
    """Data-centre zone (hall, pod) the meter belongs to, for partial PUE (pPUE)."""


class Reading(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One validated, unit-normalised sample of one meter. Absent quantities are ``None``."""

    site_id: str
    meter_id: str
    ts_ms: int
    energy_kwh: float | None = None
    power_kw: float | None = None
    volume_m3: float | None = None
    heat_gj: float | None = None
    mass_t: float | None = None
    count: float | None = None


class ReadingBatch(msgspec.Struct, frozen=True, gc=False):
    """Readings of one site, the unit the bus moves. ``site_id`` is the partition key."""

    site_id: str
    readings: list[Reading]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Input that could not be accepted, kept with the reason so nothing is silently lost."""

    received_ms: int
    source: str
    """Where it came from, e.g. the MQTT topic."""
    reason: str
    """Machine-friendly reason code, e.g. ``malformed_json``, ``unknown_meter``."""
    detail: str
    """Human-readable explanation naming the offending field or value."""
    payload: bytes
    site_id: str | None = None
    meter_id: str | None = None


class MeterFlag(enum.StrEnum):
    """Events detected while turning readings into energy; stored with the interval."""

    RESET = "reset"
    ROLLOVER = "rollover"
    REGISTER_DROP = "register_drop"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    LATE = "late"
    FIRST = "first"
    GLITCH = "glitch"
    REPLACEMENT = "replacement"
    GAP = "gap"
    ESTIMATED = "estimated"


class RestatementReason(enum.StrEnum):
    """Why windows were recomputed; kept with every revision."""

    LATE_DATA = "late_data"
    OUT_OF_ORDER = "out_of_order"
    METER_REPLACEMENT = "meter_replacement"
    FACTOR_REVISION = "factor_revision"
    GREEN_INSTRUMENTS = "green_instruments"
    VALUE_ADDED = "value_added"
    MANUAL = "manual"
    GLITCH = "glitch"


class FuelUse(enum.StrEnum):
    """What a fuel was burned for; the value is the prefix of its flat key."""

    DIRECT = "fuel"
    """Burned, or heat bought, for direct use: final energy."""
    GENERATOR = "genfuel"
    """Turned into electricity on site: a transformation, not final energy (its electricity counts)."""


class Fuel(NamedTuple):
    """Key of a fuel component: ``fuel:<carrier>:<quantity>`` or ``genfuel:<carrier>:<quantity>``."""

    use: FuelUse
    carrier: Carrier
    quantity: Quantity


class Components(msgspec.Struct, frozen=True, kw_only=True):
    """One window's components; ``None``: the window has none of it. Field names are the flat keys."""

    n_expected: float | None = None
    """Meter-minutes expected: every configured meter, every minute."""
    n_present: float | None = None
    n_estimated: float | None = None
    """Meter-minutes present, and those of them integrated from power."""
    electricity_kwh: float | None = None
    purchased_kwh: float | None = None
    renewable_generation_kwh: float | None = None
    renewable_consumed_kwh: float | None = None
    grid_import_kwh: float | None = None
    """Only when an import meter exists: the 15-minute demand bills it, else consumption."""
    grid_export_kwh: float | None = None
    facility_kwh: float | None = None
    it_kwh: float | None = None
    pue_facility_kwh: float | None = None
    pue_it_kwh: float | None = None
    """Facility and IT energy of the minutes in which both reported: PUE and the GB 40879 ratio use only
    these, so a meter missing for part of a window lowers completeness, not the ratio."""
    generator_output_kwh: float | None = None
    storage_charge_kwh: float | None = None
    storage_discharge_kwh: float | None = None
    reused_kwh: float | None = None
    water_m3: float | None = None
    green_certificates_kwh: float | None = None
    green_covered_kwh: float | None = None
    """Months only: certificates registered, and the part of them that covered purchased electricity (at
    most the month's purchases and its electricity not already renewable). A 12-month window sums them,
    so its market-based values are the sums of its months'."""
    fuels: dict[Fuel, float] = {}
    outputs: dict[Quantity, float] = {}
    """Production output per quantity (``output:<quantity>``)."""
    zone_total_kwh: dict[str, float] = {}
    zone_it_kwh: dict[str, float] = {}
    """Per zone: electricity of its loads and of its IT (``zone:<zone>:total_kwh``, ``…:it_kwh``; pPUE)."""


class KpiWindow(msgspec.Struct, frozen=True, kw_only=True):
    """KPIs of one site over one event-time window ``[start_ms, end_ms)`` of a period (``1m`` ... ``12mo``).

    ``components`` are the window's additive energies (``peakwatch.domain.components``): a longer window's
    components are the exact sums of its minutes', and every KPI below is computed from them, so ratios
    are never averaged. A ratio is ``None`` when its denominator is zero or not metered (never 0 or
    infinity). ``interim`` is true for windows shorter than the 12-month reference period (ISO/IEC 30134-2).
    Market-based values, REF with certificates and energy intensity per value added need monthly inputs
    and are ``None`` for windows shorter than a calendar month.
    """

    site_id: str
    start_ms: int
    end_ms: int
    electricity_kwh: float
    facility_kwh: float | None
    it_kwh: float | None
    renewable_generation_kwh: float
    renewable_consumed_kwh: float
    grid_import_kwh: float
    grid_export_kwh: float
    electricity_kgce: float
    total_kgce: float
    emissions_kg: float
    electricity_emissions_kg: float
    pue: float | None
    electrification_rate: float | None
    carbon_intensity_kg_per_kwh: float | None
    green_power_share: float | None
    completeness: float
    """Share of the expected meter-intervals (meters × minutes) present in this window (0..1)."""
    flags: tuple[str, ...] = ()
    interim: bool = True
    period: str = "1m"
    electricity_kgce_coal: float = 0.0
    """Electricity at the coal-equivalent (发电煤耗) value instead of the equivalent value."""
    electrification_rate_coal: float | None = None
    emissions_market_kg: float | None = None
    electricity_emissions_market_kg: float | None = None
    carbon_intensity_market_kg_per_kwh: float | None = None
    green_certificates_kwh: float | None = None
    """Green certificates and green-power contracts applied to this window (calendar months and longer)."""
    green_power_share_market: float | None = None
    cue: float | None = None
    ref: float | None = None
    wue_l_per_kwh: float | None = None
    erf: float | None = None
    ppue: dict[str, float | None] = msgspec.field(default_factory=dict)
    """Partial PUE per zone: zone electricity (IT and its cooling, lighting, losses) ÷ zone IT energy."""
    max_demand_kw: float | None = None
    """Largest 15-minute average demand (grid import, else consumption) within the window."""
    output: float | None = None
    energy_intensity_kgce_per_unit: float | None = None
    value_added_10k_cny: float | None = None
    energy_intensity_kgce_per_10k_cny: float | None = None
    gb40879_grade: str | None = None
    """Data centres: grade 1, 2 or 3 of GB 40879-2021 for the electric energy ratio, or ``over_limit``."""
    estimated: bool = False
    """Some input was estimated (integrated from power) rather than read from a register."""
    components: Components = msgspec.field(default_factory=Components)
    factors_used: dict[str, str] = msgspec.field(default_factory=dict)
    """Factor slot -> ``id@version`` of every factor the values were computed with."""
    revision: int = 0
    """0 for the first computation; +1 each time the window is restated (``kpi_revisions`` keeps the old)."""


class MeterState(msgspec.Struct, frozen=True, kw_only=True):
    """Last accepted register value of a meter: the baseline for the next delta, kept in the store so a
    restarted processor neither loses nor double-counts the interval across the restart."""

    site_id: str
    meter_id: str
    last_ts_ms: int
    last_value: float | None
    last_seen_ms: int
    """Wall-clock time the last reading was received (for meter health)."""


class MeterInterval(msgspec.Struct, frozen=True, kw_only=True):
    """Amount (canonical unit of the meter's register) a meter consumed within one window.
    Several rows for the same ``(site, meter, window)`` add up."""

    site_id: str
    meter_id: str
    window_start_ms: int
    amount: float
    estimated: bool = False
    """Integrated from power (or otherwise not measured by a register): flagged in the KPIs."""


class MeterReplacement(msgspec.Struct, frozen=True, kw_only=True):
    """A meter swapped at ``ts_ms``: the old meter's last register value and the new one's first, both
    in the canonical unit. Energy across the swap is ``(old_final - before) + (after - new_initial)``."""

    site_id: str
    meter_id: str
    ts_ms: int
    old_final: float
    new_initial: float
    note: str = ""


class MeterEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something detected on a meter's register (reset, rollover, late or out-of-order reading)."""

    site_id: str
    meter_id: str
    ts_ms: int
    kind: MeterFlag
    detail: str
    previous: float | None = None
    value: float | None = None


class AlertChange(msgspec.Struct, frozen=True, kw_only=True):
    """A rule's state for one site after evaluation; the store upserts the open alert by fingerprint."""

    fingerprint: str
    rule: str
    site_id: str
    state: str
    """pending | firing | resolved | inactive (inactive closes a pending alert that never fired)."""
    severity: str
    summary: str
    value: float | None
    started_ms: int
    at_ms: int
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """What notification routing matches on: ``alertname``, ``site``, ``severity``, ``kpi`` or ``meter``,
    the site's kind and registry labels, the rule's labels."""
    reason: str | None = None
    """Why an alert closed when it is not simply recovery: ``restated`` (the recomputed windows no longer
    breach its rule). Receivers are told (the notifier words it per language)."""


class Restatement(msgspec.Struct, frozen=True, kw_only=True):
    """A request to recompute a site's windows over ``[from_ms, to_ms)`` (every site when ``site_id`` is
    ``None``), re-deriving one meter's intervals from its stored readings first when ``meter_id`` is set."""

    site_id: str | None
    from_ms: int
    to_ms: int
    reason: RestatementReason
    detail: str = ""
    meter_id: str | None = None


class ProcessedBatch(msgspec.Struct, kw_only=True):
    """Everything one processor step produced; the store writes it in one transaction."""

    readings: list[Reading] = msgspec.field(default_factory=list)
    meter_states: list[MeterState] = msgspec.field(default_factory=list)
    intervals: list[MeterInterval] = msgspec.field(default_factory=list)
    events: list[MeterEvent] = msgspec.field(default_factory=list)
    kpi_windows: list[KpiWindow] = msgspec.field(default_factory=list)
    alerts: list[AlertChange] = msgspec.field(default_factory=list)
    dead_letters: list[DeadLetter] = msgspec.field(default_factory=list)
    restatements: list[Restatement] = msgspec.field(default_factory=list)
    """Late or out-of-order data for closed windows: queued for the accountant in the same transaction."""
    write_id: str | None = None
    """Set by the processor before the first attempt: the store applies a step once per id, so a retry
    after a lost COMMIT reply does not add its interval amounts twice."""
    fence: dict[str, int] | None = None
    """Site -> ownership epoch the processor claimed (shared bus only): the store refuses the write if
    another processor has claimed any of these sites since (``FencedError``)."""
