"""The factor library: conversion to standard coal (kgce) and CO2 emission factors, each with its source.

Every factor carries its source, data year and publication date, and a ``status`` mark copied from
../shared/domain.md (``verified`` = official text or two agreeing copies; ``single_source``;
``unverified``). Users override any factor by id in the YAML config (``factors:``), so an unverified
value is never hard-wired: see ``FactorLibrary.with_overrides``.

Factors are keyed by ``(carrier, canonical quantity)`` for conversions and fuel emissions, and by id for
grid factors that a site chooses (``Site.grid_factor``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import msgspec

from peakwatch.domain.models import Carrier, Quantity

Status = Literal["verified", "single_source", "unverified"]


class Factor(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    value: float
    unit: str
    source: str
    data_year: int | None
    published: str | None
    """Publication date (ISO 8601, or a year-month when only that is known)."""
    status: Status


_GB2589 = "GB/T 2589-2020 General principles for calculation of the comprehensive energy consumption"

DEFAULT_FACTORS: Final[tuple[Factor, ...]] = (
    # --- conversion to standard coal equivalent (kgce per canonical unit) ---
    Factor(
        id="kgce.electricity.equivalent",
        value=0.1229,
        unit="kgce/kWh",
        source=_GB2589,
        data_year=None,
        published="2020-11-19",
        status="single_source",
    ),
    Factor(
        id="kgce.natural_gas",
        value=1.2143,
        unit="kgce/m3",
        source=_GB2589 + " (gas-field natural gas)",
        data_year=None,
        published="2020-11-19",
        status="single_source",
    ),
    Factor(
        id="kgce.heat",
        value=34.12,
        unit="kgce/GJ",
        source=_GB2589 + " (0.03412 kgce/MJ)",
        data_year=None,
        published="2020-11-19",
        status="single_source",
    ),
    Factor(
        id="kgce.steam",
        value=128.6,
        unit="kgce/t",
        source=_GB2589 + " (low-pressure steam, 0.1286 kgce/kg)",
        data_year=None,
        published="2020-11-19",
        status="single_source",
    ),
    Factor(
        id="kgce.diesel",
        value=1457.1,
        unit="kgce/t",
        source=_GB2589 + " (1.4571 kgce/kg)",
        data_year=None,
        published="2020-11-19",
        status="single_source",
    ),
    Factor(
        id="kgce.coal",
        value=714.3,
        unit="kgce/t",
        source=_GB2589 + " (raw coal, 0.7143 kgce/kg)",
        data_year=None,
        published="2020-11-19",
        status="single_source",
    ),
    # --- grid average emission factors (kgCO2/kWh), MEE/NBS ---
    Factor(
        id="grid.cn.hunan.2023",
        value=0.4976,
        unit="kgCO2/kWh",
        source="MEE/NBS announcement 2025 No.47, Hunan provincial grid average",
        data_year=2023,
        published="2025-12-31",
        status="verified",
    ),
    Factor(
        id="grid.cn.central.2023",
        value=0.5271,
        unit="kgCO2/kWh",
        source="MEE/NBS announcement 2025 No.47, Central China regional grid",
        data_year=2023,
        published="2025-12-31",
        status="verified",
    ),
    Factor(
        id="grid.cn.national.2023",
        value=0.5306,
        unit="kgCO2/kWh",
        source="MEE/NBS announcement 2025 No.47, national grid average",
        data_year=2023,
        published="2025-12-31",
        status="verified",
    ),
    Factor(
        id="grid.cn.national.2022",
        value=0.5366,
        unit="kgCO2/kWh",
        source="MEE/NBS announcement 2024 No.33, national grid average",
        data_year=2022,
        published="2024",
        status="verified",
    ),
    Factor(
        id="grid.cn.hunan.2022",
        value=0.4900,
        unit="kgCO2/kWh",
        source="MEE/NBS announcement 2024 No.33, Hunan provincial grid average",
        data_year=2022,
        published="2024",
        status="single_source",
    ),
    Factor(
        id="grid.cn.ets.2023_2025",
        value=0.5703,
        unit="kgCO2/kWh",
        source="MEE notice (Feb 2023): fixed national factor for power-sector ETS reporting 2023-2025",
        data_year=None,
        published="2023-02",
        status="verified",
    ),
    # --- fuel combustion (kgCO2 per canonical unit) ---
    Factor(
        id="co2.natural_gas",
        value=2.1622,
        unit="kgCO2/m3",
        source="GB/T 32151.34-2024 Appendix C (LHV 389.31 GJ/1e4 Nm3, 0.0153 tC/GJ, oxidation 0.99)",
        data_year=None,
        published="2024",
        status="verified",
    ),
    Factor(
        id="co2.diesel",
        value=3095.9,
        unit="kgCO2/t",
        source="42,652 kJ/kg x 20.2 tC/TJ x 0.98 x 44/12 (3.0959 kg/kg)",
        data_year=None,
        published=None,
        status="single_source",
    ),
    Factor(
        id="co2.coal",
        value=1900.3,
        unit="kgCO2/t",
        source="20,908 kJ/kg x 26.37 tC/TJ x 0.94 x 44/12 (1.9003 kg/kg)",
        data_year=None,
        published=None,
        status="single_source",
    ),
    Factor(
        id="co2.heat",
        value=110.0,
        unit="kgCO2/GJ",
        source="GB/T 32150-2025 default for purchased heat (0.11 tCO2/GJ), in force 2026-07-01",
        data_year=None,
        published="2025",
        status="single_source",
    ),
    Factor(
        id="co2.steam",
        value=414.6,
        unit="kgCO2/t",
        source="derived: 0.1286 kgce/kg x 29.307 MJ/kgce = 3.769 GJ/t, x 0.11 tCO2/GJ (purchased heat)",
        data_year=None,
        published=None,
        status="unverified",
    ),
)

# (carrier, canonical quantity) -> factor id
KGCE_BY_CARRIER: Final[Mapping[tuple[Carrier, Quantity], str]] = {
    (Carrier.ELECTRICITY, Quantity.ENERGY_KWH): "kgce.electricity.equivalent",
    (Carrier.NATURAL_GAS, Quantity.VOLUME_M3): "kgce.natural_gas",
    (Carrier.HEAT, Quantity.HEAT_GJ): "kgce.heat",
    (Carrier.STEAM, Quantity.HEAT_GJ): "kgce.heat",
    (Carrier.STEAM, Quantity.MASS_T): "kgce.steam",
    (Carrier.DIESEL, Quantity.MASS_T): "kgce.diesel",
    (Carrier.COAL, Quantity.MASS_T): "kgce.coal",
}

CO2_BY_CARRIER: Final[Mapping[tuple[Carrier, Quantity], str]] = {
    (Carrier.NATURAL_GAS, Quantity.VOLUME_M3): "co2.natural_gas",
    (Carrier.HEAT, Quantity.HEAT_GJ): "co2.heat",
    (Carrier.STEAM, Quantity.HEAT_GJ): "co2.heat",
    (Carrier.STEAM, Quantity.MASS_T): "co2.steam",
    (Carrier.DIESEL, Quantity.MASS_T): "co2.diesel",
    (Carrier.COAL, Quantity.MASS_T): "co2.coal",
}


class FactorLibrary:
    """An immutable set of factors by id. Build once at start-up and pass it down."""

    def __init__(self, factors: tuple[Factor, ...] = DEFAULT_FACTORS) -> None:
        self._by_id: dict[str, Factor] = {f.id: f for f in factors}

    def __contains__(self, factor_id: object) -> bool:
        return factor_id in self._by_id

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_id.values())

    def get(self, factor_id: str) -> Factor:
        try:
            return self._by_id[factor_id]
        except KeyError:
            raise KeyError(f"unknown factor {factor_id!r}") from None

    def value(self, factor_id: str) -> float:
        return self.get(factor_id).value

    def with_overrides(self, overrides: tuple[Factor, ...]) -> FactorLibrary:
        """A new library where each override replaces (or adds) the factor with the same id."""
        merged = dict(self._by_id)
        merged.update({f.id: f for f in overrides})
        return FactorLibrary(tuple(merged.values()))

    def kgce_per_unit(self, carrier: Carrier, quantity: Quantity) -> float | None:
        """kgce per canonical unit, or ``None`` when the carrier is not an energy carrier (water, product)."""
        factor_id = KGCE_BY_CARRIER.get((carrier, quantity))
        return None if factor_id is None else self.value(factor_id)

    def co2_per_unit(self, carrier: Carrier, quantity: Quantity) -> float | None:
        """kgCO2 per canonical unit burned or bought; electricity uses the site's grid factor instead."""
        factor_id = CO2_BY_CARRIER.get((carrier, quantity))
        return None if factor_id is None else self.value(factor_id)
