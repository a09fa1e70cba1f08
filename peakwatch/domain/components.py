"""A window's components: the additive energies and quantities every KPI is computed from.

Components depend on the meters only, never on factors, and a longer window's are the exact sums of
its children's (``sum_components``), so a ratio is always a ratio of sums. ``Components`` names each
one: a field per fixed component and typed maps for the open-ended ones (fuel per use, carrier and
quantity; output per quantity; electricity per zone). A component is ``None`` (or absent from its map)
when the window has none of it, which is not the same as 0: a facility meter that did not report
leaves a gap, not 0 kWh (docs/kpis.md).

The database column ``kpi_windows.components``, the revisions' ``previous`` documents and the API show
components in their *flat* form, one string key per component (``electricity_kwh``,
``fuel:natural_gas:volume_m3``, ``zone:hall-a:it_kwh`` …). ``encode_components`` and
``decode_components`` are the one pair that converts, at the store and API edges; every stored window
decodes, whichever version wrote it (keys were only ever added).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import msgspec

from peakwatch.domain.models import Carrier, Components, Fuel, FuelUse, Quantity

_K = TypeVar("_K")


_MAPS: Final = ("fuels", "outputs", "zone_total_kwh", "zone_it_kwh")
SCALARS: Final = tuple(name for name in Components.__struct_fields__ if name not in _MAPS)
"""The fixed components, which are also their flat keys."""
_SCALAR_SET: Final = frozenset(SCALARS)
_OUTPUT: Final = "output:"
_ZONE: Final = "zone:"
_ZONE_TOTAL: Final = ":total_kwh"
_ZONE_IT: Final = ":it_kwh"


@functools.lru_cache(maxsize=4096)
def _fuel_key(fuel: Fuel) -> str:
    return f"{fuel.use.value}:{fuel.carrier.value}:{fuel.quantity.value}"


@functools.lru_cache(maxsize=4096)
def _output_key(quantity: Quantity) -> str:
    return _OUTPUT + quantity.value


@functools.lru_cache(maxsize=4096)
def _zone_total_key(zone: str) -> str:
    return f"{_ZONE}{zone}{_ZONE_TOTAL}"


@functools.lru_cache(maxsize=4096)
def _zone_it_key(zone: str) -> str:
    return f"{_ZONE}{zone}{_ZONE_IT}"


@functools.lru_cache(maxsize=4096)
def _jsonb_order(key: str) -> tuple[int, str]:
    """PostgreSQL ``jsonb`` key order: shorter (in bytes) first, then bytewise (which, for UTF-8, is
    code point order)."""
    return len(key.encode()), key


_SCALARS_IN_JSONB_ORDER: Final = tuple(
    (name, SCALARS.index(name)) for name in sorted(SCALARS, key=_jsonb_order)
)


def _has_maps(components: Components) -> bool:
    return bool(components.fuels or components.outputs or components.zone_total_kwh or components.zone_it_kwh)


def encode_components(components: Components) -> dict[str, float]:
    """The flat form, keys in PostgreSQL ``jsonb`` order (shorter first, then bytewise), so a window
    reads the same whether it was stored or computed for the request."""
    values = msgspec.structs.astuple(components)
    flat = {name: values[i] for name, i in _SCALARS_IN_JSONB_ORDER if values[i] is not None}
    if not _has_maps(components):
        return flat  # already in order: the usual window of a site without fuels, outputs or zones
    for fuel, amount in components.fuels.items():
        flat[_fuel_key(fuel)] = amount
    for quantity, amount in components.outputs.items():
        flat[_output_key(quantity)] = amount
    for zone, amount in components.zone_total_kwh.items():
        flat[_zone_total_key(zone)] = amount
    for zone, amount in components.zone_it_kwh.items():
        flat[_zone_it_key(zone)] = amount
    return {key: flat[key] for key in sorted(flat, key=_jsonb_order)}


def decode_components(flat: Mapping[str, float]) -> Components:
    """``Components`` from the flat form (a stored row, a revision's document); map entries keep the
    flat form's order. An unknown key is an error: dropping it would silently change a window."""
    try:
        fixed = msgspec.convert(flat, Components)  # the fixed components, in C; map keys are passed over
    except msgspec.ValidationError as exc:
        raise ValueError(f"not KPI components: {exc}") from None
    present = len(SCALARS) - msgspec.structs.astuple(fixed)[: len(SCALARS)].count(None)
    if present == len(flat) and not _has_maps(fixed):
        return fixed
    maps: dict[str, dict[Any, float]] = {name: {} for name in _MAPS}
    for key, value in flat.items():
        if key not in _SCALAR_SET:
            field, entry = _map_entry(key)
            maps[field][entry] = float(value)
    return msgspec.structs.replace(fixed, **maps)


@functools.lru_cache(maxsize=4096)
def _map_entry(key: str) -> tuple[str, Any]:
    """The map a flat key belongs in (``Components`` field) and its entry there; keys repeat from
    window to window, so each is parsed once."""
    if key.startswith(_ZONE) and key.endswith(_ZONE_TOTAL):
        return "zone_total_kwh", key[len(_ZONE) : -len(_ZONE_TOTAL)]
    if key.startswith(_ZONE) and key.endswith(_ZONE_IT):
        return "zone_it_kwh", key[len(_ZONE) : -len(_ZONE_IT)]
    if key.startswith(_OUTPUT):
        return "outputs", Quantity(key[len(_OUTPUT) :])
    return "fuels", _parse_fuel(key)


def _parse_fuel(key: str) -> Fuel:
    try:
        use, carrier, quantity = key.split(":")
        return Fuel(FuelUse(use), Carrier(carrier), Quantity(quantity))
    except ValueError:
        raise ValueError(f"{key!r} is not a KPI component") from None


def or_zero(value: float | None) -> float:
    """A component as a number: none of it is 0 (where the difference does not matter)."""
    return 0.0 if value is None else value


def add_amount(total: float | None, amount: float) -> float:
    """``amount`` added to a component that may not exist yet."""
    return (0.0 if total is None else total) + amount


def _plus(into: float | None, value: float | None) -> float | None:
    return into if value is None else add_amount(into, value)


def _map_plus(into: Mapping[_K, float], other: Mapping[_K, float]) -> dict[_K, float]:
    total = dict(into)
    for key, value in other.items():
        total[key] = total.get(key, 0.0) + value
    return total


def add_components(into: Components, other: Components) -> Components:
    """``into + other`` component by component (one present in either is present in the sum)."""
    scalars = {
        name: _plus(mine, theirs)
        for name, mine, theirs in zip(
            SCALARS, msgspec.structs.astuple(into), msgspec.structs.astuple(other), strict=False
        )
    }
    return Components(
        **scalars,
        fuels=_map_plus(into.fuels, other.fuels),
        outputs=_map_plus(into.outputs, other.outputs),
        zone_total_kwh=_map_plus(into.zone_total_kwh, other.zone_total_kwh),
        zone_it_kwh=_map_plus(into.zone_it_kwh, other.zone_it_kwh),
    )


def sum_components(parts: Iterable[Components]) -> Components:
    """Component by component, the exact sum (``math.fsum``, correctly rounded) of ``parts``: a window's
    value must not depend on the order its children come in (rows in storage order, a compressed
    chunk's). Map entries come in the order of their flat keys, whatever the parts' order."""
    scalars: dict[str, list[float]] = {}
    fuels: dict[Fuel, list[float]] = {}
    outputs: dict[Quantity, list[float]] = {}
    zone_total: dict[str, list[float]] = {}
    zone_it: dict[str, list[float]] = {}
    for part in parts:
        for name, value in zip(SCALARS, msgspec.structs.astuple(part), strict=False):
            if value is not None:
                scalars.setdefault(name, []).append(value)
        _collect(fuels, part.fuels)
        _collect(outputs, part.outputs)
        _collect(zone_total, part.zone_total_kwh)
        _collect(zone_it, part.zone_it_kwh)
    return Components(
        **{name: _fsum(values) for name, values in scalars.items()},
        fuels=_summed(fuels, _fuel_key),
        outputs=_summed(outputs, _output_key),
        zone_total_kwh=_summed(zone_total, _zone_total_key),
        zone_it_kwh=_summed(zone_it, _zone_it_key),
    )


def _collect(columns: dict[_K, list[float]], amounts: Mapping[_K, float]) -> None:
    for key, value in amounts.items():
        columns.setdefault(key, []).append(value)


def _summed(columns: Mapping[_K, list[float]], flat_key: Callable[[_K], str]) -> dict[_K, float]:
    return {key: _fsum(columns[key]) for key in sorted(columns, key=flat_key)}


def _fsum(values: list[float]) -> float:
    """``math.fsum``, NaN where it raises (``inf - inf``, intermediate overflow): ``finite_window`` then
    flags the window instead of the rollup dying."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        return math.nan


def finite_components(components: Components) -> Components:
    """``components`` with every non-finite amount replaced by 0.0; itself when all are finite."""
    scalars = msgspec.structs.astuple(components)[: len(SCALARS)]
    maps = (components.fuels, components.outputs, components.zone_total_kwh, components.zone_it_kwh)
    if all(v is None or math.isfinite(v) for v in scalars) and all(
        math.isfinite(v) for amounts in maps for v in amounts.values()
    ):
        return components
    finite: dict[str, float | None] = {
        name: v if v is None or math.isfinite(v) else 0.0 for name, v in zip(SCALARS, scalars, strict=True)
    }
    return Components(
        **finite,
        fuels=_finite(components.fuels),
        outputs=_finite(components.outputs),
        zone_total_kwh=_finite(components.zone_total_kwh),
        zone_it_kwh=_finite(components.zone_it_kwh),
    )


def _finite(amounts: Mapping[_K, float]) -> dict[_K, float]:
    return {key: v if math.isfinite(v) else 0.0 for key, v in amounts.items()}
