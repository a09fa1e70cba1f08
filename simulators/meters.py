"""What a simulated site exposes: its identity, its meters, and the samples each step produces.

A simulated meter behaves like a real one: it keeps a cumulative register (kWh or m3) that integrates
its power over time and only ever increases (except when it rolls over at ``register_max``, like the
six-digit registers of DL/T 645 meters, or when a fault injector resets it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from peakwatch.domain.models import Carrier, Register, Role, SiteKind

ENERGY_FIELD = "energy_kwh"
VOLUME_FIELD = "volume_m3"
POWER_FIELD = "power_kw"
CUMULATIVE_FIELDS: frozenset[str] = frozenset({"energy_kwh", "volume_m3", "heat_gj", "mass_t"})
"""Payload fields that carry a cumulative register (the ones a counter reset acts on)."""


@dataclass(frozen=True, slots=True)
class SiteInfo:
    id: str
    name: str
    kind: SiteKind
    timezone: str = "Asia/Shanghai"
    grid_factor: str = "grid.cn.hunan.2023"


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """A meter as the registry describes it, plus which payload fields the simulator sends."""

    id: str
    carrier: Carrier
    role: Role
    unit: str = "kWh"
    register_field: str = ENERGY_FIELD
    """Payload field of the main quantity, in the meter's unit (``energy_mwh`` for a MWh register)."""
    reports_power: bool = True
    register_max: float | None = None
    zone: str | None = None
    """Data-centre zone (the hall whose partial PUE the meter contributes to)."""
    register: Register = Register.CUMULATIVE
    """What ``register_field`` carries: the cumulative register, the interval's amount, or a power
    sample (then ``register_field`` is a power field and ``reports_power`` adds nothing)."""
    scale: float = 1.0
    """Canonical units (kWh, m3, ...) per unit of ``register_field``: rates stay canonical, payloads
    are in the meter's own unit."""
    rated_kw: float | None = None
    """Rated power (gas: m3/h), above the highest rate the model produces: readings implying more are
    glitches (peakwatch.domain.energy)."""


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One reading of one meter: the payload fields (``energy_kwh``, ``power_kw`` ...) at ``ts_ms``."""

    site_id: str
    meter_id: str
    ts_ms: int
    fields: dict[str, float] = field(default_factory=dict)
    registers: frozenset[str] = CUMULATIVE_FIELDS
    """Which of ``fields`` are cumulative registers (a counter reset acts on those only; an interval
    amount named ``energy_kwh`` is not one)."""


class CumulativeRegister:
    """A meter register: adds non-negative amounts, rolls over at ``register_max`` when configured."""

    __slots__ = ("register_max", "rollovers", "value")

    def __init__(self, initial: float = 0.0, register_max: float | None = None) -> None:
        if initial < 0 or (register_max is not None and initial >= register_max):
            raise ValueError(f"initial register value {initial} outside [0, {register_max})")
        self.value = initial
        self.register_max = register_max
        self.rollovers = 0

    def add(self, amount: float) -> float:
        if amount < 0:
            raise ValueError(f"a register cannot run backwards (amount {amount})")
        self.value += amount
        if self.register_max is not None and self.value >= self.register_max:
            self.value -= self.register_max
            self.rollovers += 1
        return self.value


class SiteModel(Protocol):
    """A simulated site. ``step`` is called with strictly increasing event times (epoch ms); the
    first call establishes the registers' starting point (no energy is integrated before it)."""

    @property
    def info(self) -> SiteInfo: ...

    @property
    def meters(self) -> tuple[MeterSpec, ...]: ...

    def step(self, ts_ms: int) -> list[MeterSample]: ...

    bank: MeterBank


class MeterBank:
    """The registers of one site's meters, integrating power (or flow) over each step.

    Amounts are integrated as ``rate × dt`` with the rate of the step that ends at ``ts_ms`` (the
    reported ``power_kw`` is therefore the mean power of the interval the register delta covers), so
    any linear balance between rates also holds between register deltas.
    """

    def __init__(self, site_id: str, meters: tuple[MeterSpec, ...], initial: dict[str, float]) -> None:
        self.site_id = site_id
        self.meters = meters
        self.registers = {m.id: CumulativeRegister(initial.get(m.id, 0.0), m.register_max) for m in meters}
        self._last_ms: int | None = None

    def resume(self, meter_id: str, value: float) -> None:
        """Continue a register from ``value`` (what peakwatch last stored for it, in the canonical unit),
        so a restarted demo keeps counting like a real meter instead of jumping to a new random reading."""
        register = self.registers.get(meter_id)
        if register is None or value < 0:
            return
        value /= next(m.scale for m in self.meters if m.id == meter_id)
        if register.register_max is not None:
            value %= register.register_max
        register.value = value

    def hours_since_last(self, ts_ms: int) -> float:
        """Length of the step ending at ``ts_ms`` in hours (0 on the first step)."""
        if self._last_ms is None:
            return 0.0
        if ts_ms <= self._last_ms:
            raise ValueError(f"event time must increase: {ts_ms} after {self._last_ms}")
        return (ts_ms - self._last_ms) / 3_600_000.0

    def record(self, ts_ms: int, rates: dict[str, float]) -> list[MeterSample]:
        """Integrate each meter's rate (kW, or m3/h) over the step ending at ``ts_ms``, and report it
        the way the meter's register works (cumulative register, interval amount or power sample)."""
        dt_h = self.hours_since_last(ts_ms)
        self._last_ms = ts_ms
        samples: list[MeterSample] = []
        for meter in self.meters:
            rate = rates[meter.id]
            amount = rate * dt_h / meter.scale
            value = self.registers[meter.id].add(amount)
            registers: frozenset[str] = frozenset()
            if meter.register is Register.CUMULATIVE:
                registers = frozenset((meter.register_field,))
            elif meter.register is Register.INTERVAL:
                value = amount
            else:
                value = rate / meter.scale
            fields = {meter.register_field: value}
            if meter.reports_power and meter.register is not Register.POWER:
                fields[POWER_FIELD] = rate
            samples.append(MeterSample(self.site_id, meter.id, ts_ms, fields, registers))
        return samples
