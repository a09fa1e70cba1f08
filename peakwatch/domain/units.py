"""Units: payload field names and meter units mapped to canonical quantities.

A payload quantity field is ``<quantity>_<unit>`` (``energy_mwh``, ``power_w`` ...). The collector
multiplies the value by the scale below to obtain the canonical field (``energy_kwh`` ...). Keeping the
table here, not in the collector, lets the registry validate meter units with the same rules.
"""

from __future__ import annotations

from typing import Final

from peakwatch.domain.models import Carrier, Quantity

VALUE_CEILING: Final = 1e15
"""Largest magnitude of a register value or an amount in its canonical unit (kWh, m3, GJ, t, count):
1e15 kWh is some thirty years of the world's electricity. Anything larger is no meter reading (a
corrupt register, a test value such as 1e308) and is refused (``out_of_range``) before any register
difference, so sums of amounts stay far from float overflow."""
RATE_CEILING: Final = 1e8
"""Largest magnitude of a power sample in kW (100 GW, above any plant on Earth): the collector refuses a
larger one (``out_of_range``), and a power meter without ``rated_kw`` counts a larger one as a glitch."""


def in_range(value: float, ceiling: float = VALUE_CEILING) -> bool:
    """Whether ``value`` is finite and within ``ceiling`` in magnitude (NaN is not)."""
    return -ceiling <= value <= ceiling


# field name in a payload -> (canonical quantity, multiply by)
PAYLOAD_FIELDS: Final[dict[str, tuple[Quantity, float]]] = {
    "energy_wh": (Quantity.ENERGY_KWH, 0.001),
    "energy_kwh": (Quantity.ENERGY_KWH, 1.0),
    "energy_mwh": (Quantity.ENERGY_KWH, 1000.0),
    "power_w": (Quantity.POWER_KW, 0.001),
    "power_kw": (Quantity.POWER_KW, 1.0),
    "power_mw": (Quantity.POWER_KW, 1000.0),
    "volume_l": (Quantity.VOLUME_M3, 0.001),
    "volume_m3": (Quantity.VOLUME_M3, 1.0),
    "heat_mj": (Quantity.HEAT_GJ, 0.001),
    "heat_gj": (Quantity.HEAT_GJ, 1.0),
    "mass_kg": (Quantity.MASS_T, 0.001),
    "mass_t": (Quantity.MASS_T, 1.0),
    "count": (Quantity.COUNT, 1.0),
}

# meter register unit (as written in the registry, case-insensitive) -> (canonical quantity, scale)
METER_UNITS: Final[dict[str, tuple[Quantity, float]]] = {
    "wh": (Quantity.ENERGY_KWH, 0.001),
    "kwh": (Quantity.ENERGY_KWH, 1.0),
    "mwh": (Quantity.ENERGY_KWH, 1000.0),
    # power-only meters (register: power): energy is integrated from the samples
    "w": (Quantity.POWER_KW, 0.001),
    "kw": (Quantity.POWER_KW, 1.0),
    "mw": (Quantity.POWER_KW, 1000.0),
    "l": (Quantity.VOLUME_M3, 0.001),
    "m3": (Quantity.VOLUME_M3, 1.0),
    "mj": (Quantity.HEAT_GJ, 0.001),
    "gj": (Quantity.HEAT_GJ, 1.0),
    "kg": (Quantity.MASS_T, 0.001),
    "t": (Quantity.MASS_T, 1.0),
    "count": (Quantity.COUNT, 1.0),
}

# What a meter of each carrier may measure. Another pair (a gas meter in kWh, an electricity meter in
# m3) would get no conversion factor and silently count as zero, so the registry refuses it.
CARRIER_QUANTITIES: Final[dict[Carrier, frozenset[Quantity]]] = {
    Carrier.ELECTRICITY: frozenset({Quantity.ENERGY_KWH, Quantity.POWER_KW}),
    Carrier.NATURAL_GAS: frozenset({Quantity.VOLUME_M3}),
    Carrier.HEAT: frozenset({Quantity.HEAT_GJ}),
    Carrier.STEAM: frozenset({Quantity.HEAT_GJ, Quantity.MASS_T}),
    Carrier.DIESEL: frozenset({Quantity.MASS_T}),
    Carrier.COAL: frozenset({Quantity.MASS_T}),
    Carrier.WATER: frozenset({Quantity.VOLUME_M3}),
    Carrier.PRODUCT: frozenset({Quantity.COUNT, Quantity.MASS_T, Quantity.VOLUME_M3}),
}


def meter_quantity(unit: str) -> tuple[Quantity, float]:
    """The canonical quantity of a meter's main register and the scale from its unit.

    Raises ``KeyError`` naming the unit when it is not known, so the registry can report it.
    """
    try:
        return METER_UNITS[unit.lower()]
    except KeyError:
        raise KeyError(f"unknown meter unit {unit!r}; known: {', '.join(sorted(METER_UNITS))}") from None
