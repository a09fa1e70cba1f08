"""The registry YAML as written (documents) and the checks of its sites, meters, factors and factor sets.

``peakwatch.config.Registry.from_mapping`` runs them; each check records its problem and the others go
on (``peakwatch.config_problems``), so a file with several mistakes is refused once, naming all of them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from peakwatch.config_problems import Problems, convert, convert_partly, items, named, struct_problem
from peakwatch.domain.factors import (
    DEFAULT_FACTORS,
    DEFAULT_SET,
    DEFAULT_SLOTS,
    Factor,
    FactorLibrary,
    FactorSet,
)
from peakwatch.domain.kpis import DEFAULT_GB40879_THRESHOLDS
from peakwatch.domain.models import Carrier, Meter, Quantity, Register, Role, Site, SiteKind
from peakwatch.domain.units import CARRIER_QUANTITIES, METER_UNITS, meter_quantity
from peakwatch.errors import ConfigError

T = TypeVar("T")


class MeterDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    carrier: Carrier
    role: Role
    register: Register | None = None
    """``None``: ``power`` for a power unit (W, kW, MW), else ``cumulative``."""
    unit: str = "kWh"
    register_max: float | None = None
    rated_kw: float | None = None
    zone: str | None = None


class SiteDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    name: str
    kind: SiteKind
    timezone: str = "Asia/Shanghai"
    grid_factor: str | None = None
    factor_set: str = DEFAULT_SET.name
    pue_category: str | None = None
    labels: dict[str, str] = {}
    meters: list[MeterDoc] = []


class FactorDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    value: float
    unit: str
    source: str
    data_year: int | None = None
    published: str | None = None
    status: str = "unverified"


class FactorSetDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    description: str = ""
    slots: dict[str, str] = {}


class RegistryDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sites: list[SiteDoc] = []
    rules: list[Any] = []
    factors: list[FactorDoc] = []
    factor_sets: list[FactorSetDoc] = []
    gb40879_thresholds: list[float] | None = None
    notifications: dict[str, Any] | None = None


LISTS = frozenset({"sites", "rules", "factors", "factor_sets"})
_METERS = frozenset({"meters"})
_SITE_STAND_INS: dict[str, Any] = {"id": "", "name": "", "kind": SiteKind.PARK}
_METER_STAND_INS: dict[str, Any] = {"id": "", "carrier": Carrier.ELECTRICITY, "role": Role.OTHER_LOAD}
"""Stand-ins for wrong required fields, so that the right fields of a site or meter are still checked."""
"""The top-level lists, checked entry by entry (``items``) rather than as one field."""

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
GRID_FACTOR_UNIT = "kgCO2/kWh"


def as_struct(values: Mapping[str, Any], cls: type[T]) -> T:
    """``values`` as a domain ``cls``; its validation error in words (``ConfigError``)."""
    try:
        return msgspec.convert(values, cls)
    except msgspec.ValidationError as exc:
        raise ConfigError(struct_problem(values, cls, exc)) from None


def _where(kind: str, raw: Any, index: int) -> str:
    """A site or meter by its id when the id is one (``site dc-1``), else by position (``site #2``)."""
    value = raw.get("id") if isinstance(raw, Mapping) else None
    return f"{kind} {value}" if isinstance(value, str) and ID.match(value) else f"{kind} #{index + 1}"


def sites_and_meters(
    raw: Mapping[str, Any], factors: FactorLibrary, problems: Problems
) -> tuple[list[Site], list[Meter]]:
    sites: list[Site] = []
    meters: list[Meter] = []
    for i, raw_site in items(raw, "sites", "", problems):
        where = _where("site", raw_site, i)
        doc, failed = convert_partly(raw_site, SiteDoc, where, problems, _SITE_STAND_INS, skip=_METERS)
        site = None if doc is None else _site(doc, failed, factors, where, problems)
        site_id = raw_site.get("id") if isinstance(raw_site, Mapping) else None
        site_meters = (
            _meters(raw_site, str(site_id), where, problems) if isinstance(raw_site, Mapping) else []
        )
        if site is not None:
            sites.append(site)
            meters.extend(site_meters)
    twice = sorted(sid for sid, n in Counter(s.id for s in sites).items() if n > 1)
    if twice:
        problems.add("", f"duplicate site ids: {', '.join(twice)}")
    return sites, meters


def _site(
    s: SiteDoc, failed: frozenset[str], factors: FactorLibrary, where: str, problems: Problems
) -> Site | None:
    """The site when all is right; the fields that were wrong (``failed``) are not checked again."""
    before = len(problems.found)
    if "id" not in failed and not ID.match(s.id):
        problems.add(where, f"site id {s.id!r} must match {ID.pattern}")
    if s.grid_factor is not None and "grid_factor" not in failed:
        if s.grid_factor not in factors:
            problems.add(where, f"unknown grid_factor {s.grid_factor!r}")
        elif factors.get(s.grid_factor).unit != GRID_FACTOR_UNIT:
            unit = factors.get(s.grid_factor).unit
            problems.add(where, f"grid_factor {s.grid_factor!r} is in {unit}, not {GRID_FACTOR_UNIT}")
    if "factor_set" not in failed and s.factor_set not in factors.sets:
        known = ", ".join(sorted(factors.sets))
        problems.add(where, f"unknown factor_set {s.factor_set!r}; known: {known}")
    if "pue_category" not in failed and s.pue_category is not None and not s.pue_category.strip():
        problems.add(where, "pue_category must not be empty")
    for key, value in s.labels.items():
        if not ID.match(key) or not ID.match(value):
            problems.add(
                where,
                f"label {key}: {value} must be two words of letters, digits, '_', '.' or '-' ({ID.pattern})",
            )
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.add(where, f"unknown time zone {s.timezone!r}")
    if failed or len(problems.found) > before:
        return None
    site: Site | None = None
    with problems.at(where):
        fields = msgspec.to_builtins(s)
        del fields["meters"]
        site = as_struct(fields, Site)
    return site


def _meters(raw_site: Mapping[str, Any], site_id: str, site_where: str, problems: Problems) -> list[Meter]:
    meters: list[Meter] = []
    seen: set[str] = set()
    for j, raw_meter in items(raw_site, "meters", site_where, problems):
        where = f"{site_where}, {_where('meter', raw_meter, j)}"
        doc, failed = convert_partly(raw_meter, MeterDoc, where, problems, _METER_STAND_INS)
        if doc is None:
            continue
        if "id" not in failed:
            if not ID.match(doc.id):
                problems.add(where, f"meter id {doc.id!r} must match {ID.pattern}")
                failed |= {"id"}
            elif doc.id in seen:
                problems.add(site_where, f"duplicate meter id {doc.id!r}")
                failed |= {"id"}
            seen.add(doc.id)
        with problems.at(where):
            meter = _meter(doc, site_id, failed)
            if meter is not None:
                meters.append(meter)
    return meters


def _meter(m: MeterDoc, site_id: str, failed: frozenset[str]) -> Meter | None:
    """The meter; a ``ConfigError`` with each of its problems (unit, register, rated power); ``None``
    when fields were wrong already (``failed``, not checked again)."""
    found: list[str] = []
    register: Register | None = None
    try:
        quantity, _ = meter_quantity(m.unit)
    except KeyError as exc:
        found.append(str(exc.args[0]))
    else:
        allowed = CARRIER_QUANTITIES[m.carrier]
        if "carrier" not in failed and quantity not in allowed:
            units = sorted(u for u, (q, _) in METER_UNITS.items() if q in allowed)
            found.append(
                f"unit {m.unit!r} does not fit carrier {m.carrier.value}; use one of {', '.join(units)}"
            )
        else:
            try:
                register = _meter_register(m, quantity)
            except ConfigError as exc:
                found.extend(exc.problems)
    if m.rated_kw is not None and not (0 < m.rated_kw < math.inf):
        found.append(f"rated_kw must be a number > 0, not {m.rated_kw}")
    if found:
        raise ConfigError(problems=found)
    if failed or register is None:
        return None
    return Meter(
        id=m.id,
        site_id=site_id,
        carrier=m.carrier,
        role=m.role,
        register=register,
        unit=m.unit,
        register_max=m.register_max,
        rated_kw=m.rated_kw,
        zone=m.zone,
    )


def _meter_register(m: MeterDoc, quantity: Quantity) -> Register:
    """A power unit means instantaneous samples, to be integrated; any other unit is a register. The two
    cannot be mixed: differencing kW samples, or integrating a kWh register, gives nonsense."""
    is_power = quantity is Quantity.POWER_KW
    if is_power and m.register_max is not None:
        raise ConfigError("register_max applies to energy registers, not to power samples")
    if m.register is None:
        return Register.POWER if is_power else Register.CUMULATIVE
    if is_power and m.register is not Register.POWER:
        raise ConfigError(
            f"unit {m.unit!r} is power, so the register must be power (samples integrated "
            f"over time), not {m.register.value}; use an energy unit (kWh, MWh, Wh) for a {m.register.value} "
            "register"
        )
    if m.register is Register.POWER and not is_power:
        raise ConfigError(
            f"register power needs a power unit (W, kW, MW), not {m.unit!r}; use register "
            "cumulative or interval for an energy register"
        )
    return m.register


def factor_library(raw: Mapping[str, Any], problems: Problems) -> FactorLibrary:
    """The shipped factors with the registry's overrides. An override of a shipped factor must keep its
    unit: the code multiplies by it, so 2.16 kgCO2/kg in place of kgCO2/m3 would be silently wrong."""
    library = FactorLibrary(DEFAULT_FACTORS)
    overrides: list[Factor] = []
    for i, raw_factor in items(raw, "factors", "", problems):
        where = named("factor", raw_factor, "id", i)
        doc = convert(raw_factor, FactorDoc, where, problems)
        if doc is None:
            continue
        with problems.at(where):
            factor = as_struct(msgspec.to_builtins(doc), Factor)
            if factor.id in library and library.get(factor.id).unit != factor.unit:
                raise ConfigError(
                    f"unit {factor.unit!r} differs from the shipped {library.get(factor.id).unit!r}; "
                    "convert the value to that unit"
                )
            if not (factor.value >= 0 and factor.value < float("inf")):
                raise ConfigError("value must be a finite number >= 0")
            overrides.append(factor)
    return library.with_overrides(tuple(overrides))


def factor_sets(raw: Mapping[str, Any], library: FactorLibrary, problems: Problems) -> tuple[FactorSet, ...]:
    """The registry's factor sets. Each slot must be one the KPIs read and name a factor in the unit of
    the shipped one: the code multiplies by it, so a kgCO2/m3 factor in the grid slot would be wrong."""
    shipped = {f.id: f for f in DEFAULT_FACTORS}
    sets: list[FactorSet] = []
    seen: set[str] = set()
    for i, raw_set in items(raw, "factor_sets", "", problems):
        where = named("factor set", raw_set, "name", i, quote=True)
        doc = convert(raw_set, FactorSetDoc, where, problems)
        if doc is None:
            continue
        before = len(problems.found)
        if not ID.match(doc.name):
            problems.add(where, f"the name must match {ID.pattern}")
        if doc.name == DEFAULT_SET.name:
            problems.add(
                where,
                "the default set is built in (the shipped factors); give yours another name and choose it "
                "with a site's factor_set",
            )
        if doc.name in seen:
            problems.add(where, "defined twice")
        seen.add(doc.name)
        for slot, factor_id in doc.slots.items():
            if slot not in DEFAULT_SLOTS:
                problems.add(where, f"unknown slot {slot!r}; known: {', '.join(sorted(DEFAULT_SLOTS))}")
            elif factor_id not in library:
                problems.add(where, f"slot {slot!r}: unknown factor {factor_id!r}")
            elif (unit := library.get(factor_id).unit) != (expected := shipped[DEFAULT_SLOTS[slot]].unit):
                problems.add(
                    where, f"slot {slot!r}: factor {factor_id!r} is in {unit}, the slot needs {expected}"
                )
        if len(problems.found) == before:
            sets.append(FactorSet(name=doc.name, slots=dict(doc.slots), description=doc.description))
    return tuple(sets)


def gb40879_thresholds(values: list[float] | None) -> tuple[float, float, float]:
    if values is None:
        return DEFAULT_GB40879_THRESHOLDS
    if len(values) != 3 or not all(0 < v < math.inf for v in values) or not values[0] < values[1] < values[2]:
        raise ConfigError(
            "gb40879_thresholds must be three increasing numbers > 0 (the upper limits of "
            f"grades 1, 2 and 3, e.g. [1.2, 1.3, 1.5]), not {values}"
        )
    return values[0], values[1], values[2]
