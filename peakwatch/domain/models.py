"""The values that flow through peakwatch.

Readings are msgspec Structs (not pydantic models) because they are created on the hot path, one per
meter sample; registry objects (sites, meters) are created once at start-up and use msgspec too so
that the whole domain shares one style. Timestamps are integer epoch milliseconds (``*_ms``).
Quantities carry their canonical unit in the field name (``energy_kwh``, ``power_kw`` ...).
"""

from __future__ import annotations

import enum

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
    PRODUCTION_OUTPUT = "production_output"
    WATER_SUPPLY = "water_supply"
    OTHER_LOAD = "other_load"


class Register(enum.StrEnum):
    """``cumulative``: a monotonically increasing register that must be differenced.
    ``interval``: each reading is the quantity consumed in the interval that ends at ``ts``."""

    CUMULATIVE = "cumulative"
    INTERVAL = "interval"


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
    grid_factor: str = "grid.cn.hunan.2023"
    """Id of the grid emission factor in the factor library (peakwatch.domain.factors)."""


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


class KpiWindow(msgspec.Struct, frozen=True, kw_only=True):
    """KPIs of one site over one closed event-time window ``[start_ms, end_ms)``.

    A ratio is ``None`` when its denominator is zero or not metered (never 0 or infinity).
    ``interim`` is true for windows shorter than the 12-month reference period (PUE per ISO/IEC 30134-2).
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
    """Share of the site's meters that reported data covering this window (0..1)."""
    flags: tuple[str, ...] = ()
    interim: bool = True


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


class ProcessedBatch(msgspec.Struct, kw_only=True):
    """Everything one processor step produced; the store writes it in one transaction."""

    readings: list[Reading] = msgspec.field(default_factory=list)
    meter_states: list[MeterState] = msgspec.field(default_factory=list)
    intervals: list[MeterInterval] = msgspec.field(default_factory=list)
    events: list[MeterEvent] = msgspec.field(default_factory=list)
    kpi_windows: list[KpiWindow] = msgspec.field(default_factory=list)
    alerts: list[AlertChange] = msgspec.field(default_factory=list)
    dead_letters: list[DeadLetter] = msgspec.field(default_factory=list)
