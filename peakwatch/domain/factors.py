"""The factor library: conversion to standard coal (kgce) and CO2 emission factors, each with its source.

Every factor carries its source, data year and publication date, and a ``status`` mark copied from
../shared/domain.md (``verified`` = official text or two agreeing copies; ``single_source``;
``unverified``). Users override any factor by id in the YAML config (``factors:``), so an unverified
value is never hard-wired: see ``FactorLibrary.with_overrides``.

Versions: a factor id keeps every value it ever had (``version`` 1, 2 ...); the newest is the current
one. An override in the YAML registry or through the API adds a version, so the value used before a
revision stays visible and KPI rows record ``id@version`` of every factor they used.

Factor sets: a site's KPIs read factors through *slots* (``grid``, ``grid_residual``,
``kgce.electricity.coal_equivalent``, ``co2.natural_gas`` ...). A ``FactorSet`` maps slots to factor ids;
the default set maps every slot to the shipped factor of the same name, and ``Site.grid_factor`` fills
the ``grid`` slot. ``resolve`` turns a site's set into plain numbers for the pure KPI functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
    version: int = 1
    recorded_ms: int | None = None
    """When this version was added (``None`` for the shipped defaults)."""

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


_GB2589 = "GB/T 2589-2020 General principles for calculation of the comprehensive energy consumption"


def _gb2589(factor_id: str, value: float, unit: str, note: str = "") -> Factor:
    """A conversion to standard coal from GB/T 2589-2020 (a standard, not a year's data; one source)."""
    return Factor(
        id=factor_id,
        value=value,
        unit=unit,
        source=_GB2589 + note,
        data_year=None,
        published="2020-11-19",
        status="single_source",
    )


DEFAULT_FACTORS: Final[tuple[Factor, ...]] = (
    # --- conversion to standard coal equivalent (kgce per canonical unit) ---
    _gb2589("kgce.electricity.equivalent", 0.1229, "kgce/kWh"),
    _gb2589("kgce.natural_gas", 1.2143, "kgce/m3", " (gas-field natural gas)"),
    _gb2589("kgce.heat", 34.12, "kgce/GJ", " (0.03412 kgce/MJ)"),
    _gb2589("kgce.steam", 128.6, "kgce/t", " (low-pressure steam, 0.1286 kgce/kg)"),
    _gb2589("kgce.diesel", 1457.1, "kgce/t", " (1.4571 kgce/kg)"),
    _gb2589("kgce.coal", 714.3, "kgce/t", " (raw coal, 0.7143 kgce/kg)"),
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
    Factor(
        id="grid.cn.national_excl_nonfossil.2023",
        value=0.6096,
        unit="kgCO2/kWh",
        source="MEE/NBS announcement 2025 No.47, national grid excluding market-traded non-fossil "
        "electricity (residual factor for market-based accounting)",
        data_year=2023,
        published="2025-12-31",
        status="verified",
    ),
    # --- electricity at the coal-equivalent (发电煤耗) value, kgce/kWh ---
    Factor(
        id="kgce.electricity.coal_equivalent.2024",
        value=0.3024,
        unit="kgce/kWh",
        source="average coal consumption per kWh supplied, 302.4 gce/kWh (2024), China Electricity Council",
        data_year=2024,
        published="2025",
        status="single_source",
    ),
    Factor(
        id="kgce.electricity.coal_equivalent.2020",
        value=0.3055,
        unit="kgce/kWh",
        source="average coal consumption per kWh supplied, 305.5 gce/kWh (2020), China Electricity Council",
        data_year=2020,
        published="2021",
        status="single_source",
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


GRID_SLOT = "grid"
RESIDUAL_SLOT = "grid_residual"
COAL_EQUIVALENT_SLOT = "kgce.electricity.coal_equivalent"
EQUIVALENT_SLOT = "kgce.electricity.equivalent"

DEFAULT_SLOTS: Final[Mapping[str, str]] = {
    GRID_SLOT: "grid.cn.hunan.2023",
    RESIDUAL_SLOT: "grid.cn.national_excl_nonfossil.2023",
    COAL_EQUIVALENT_SLOT: "kgce.electricity.coal_equivalent.2024",
    EQUIVALENT_SLOT: "kgce.electricity.equivalent",
    **{fid: fid for fid in KGCE_BY_CARRIER.values() if fid != EQUIVALENT_SLOT},
    **{fid: fid for fid in CO2_BY_CARRIER.values()},
}
"""Every slot the KPIs read, with the shipped factor that fills it in the default set."""

SLOT_UNITS: Final[Mapping[str, str]] = {
    GRID_SLOT: "kgCO2/kWh",
    RESIDUAL_SLOT: "kgCO2/kWh",
    COAL_EQUIVALENT_SLOT: "kgce/kWh",
}


class FactorSet(msgspec.Struct, frozen=True, kw_only=True):
    """A named choice of factors: slot -> factor id. Slots not named fall back to ``DEFAULT_SLOTS``."""

    name: str
    slots: dict[str, str] = msgspec.field(default_factory=dict)
    description: str = ""

    def factor_id(self, slot: str) -> str:
        return self.slots.get(slot) or DEFAULT_SLOTS[slot]


DEFAULT_SET = FactorSet(name="default", description="shipped defaults: Hunan grid 2023, GB/T 2589-2020")


class ResolvedFactors(msgspec.Struct, frozen=True, kw_only=True):
    """A site's factors as plain numbers (slot -> value) plus what they were (slot -> ``id@version``)."""

    values: dict[str, float]
    used: dict[str, str]

    def value(self, slot: str) -> float:
        return self.values[slot]

    def kgce_per_unit(self, carrier: Carrier, quantity: Quantity) -> float | None:
        """kgce per canonical unit, or ``None`` when the carrier is not an energy carrier (water, product)."""
        slot = KGCE_BY_CARRIER.get((carrier, quantity))
        return None if slot is None else self.values[slot]

    def co2_per_unit(self, carrier: Carrier, quantity: Quantity) -> float | None:
        """kgCO2 per canonical unit burned or bought; electricity uses the ``grid`` slot instead."""
        slot = CO2_BY_CARRIER.get((carrier, quantity))
        return None if slot is None else self.values[slot]


class FactorLibrary:
    """Every version of every factor, and the factor sets. Immutable: a change makes a new library."""

    def __init__(
        self, factors: tuple[Factor, ...] = DEFAULT_FACTORS, sets: tuple[FactorSet, ...] = ()
    ) -> None:
        self._versions: dict[str, list[Factor]] = {}
        for f in factors:
            self._versions.setdefault(f.id, []).append(f)
        for versions in self._versions.values():
            versions.sort(key=lambda f: f.version)
        self.sets: dict[str, FactorSet] = {DEFAULT_SET.name: DEFAULT_SET}
        self.sets.update({s.name: s for s in sets})

    def __contains__(self, factor_id: object) -> bool:
        return factor_id in self._versions

    def __iter__(self) -> Iterator[Factor]:
        """The current (newest) version of every factor."""
        return iter([v[-1] for v in self._versions.values()])

    def all_versions(self) -> list[Factor]:
        return [f for v in self._versions.values() for f in v]

    def history(self, factor_id: str) -> list[Factor]:
        """Every version of ``factor_id``, oldest first."""
        self.get(factor_id)
        return list(self._versions[factor_id])

    def get(self, factor_id: str) -> Factor:
        """The current version."""
        try:
            return self._versions[factor_id][-1]
        except KeyError:
            raise KeyError(f"unknown factor {factor_id!r}") from None

    def value(self, factor_id: str) -> float:
        return self.get(factor_id).value

    def with_overrides(self, overrides: tuple[Factor, ...]) -> FactorLibrary:
        """A new library where each override becomes the newest version of its id (a new id starts at 1).
        An override identical in value to the current version adds nothing."""
        factors = self.all_versions()
        current = {fid: v[-1] for fid, v in self._versions.items()}
        for f in overrides:
            now = current.get(f.id)
            if now is not None and (now.value, now.unit, now.source, now.data_year, now.published) == (
                f.value,
                f.unit,
                f.source,
                f.data_year,
                f.published,
            ):
                continue
            f = msgspec.structs.replace(f, version=1 if now is None else now.version + 1)
            factors.append(f)
            current[f.id] = f
        return FactorLibrary(tuple(factors), tuple(self.sets.values()))

    def with_sets(self, sets: tuple[FactorSet, ...]) -> FactorLibrary:
        return FactorLibrary(tuple(self.all_versions()), (*self.sets.values(), *sets))

    def resolve(self, factor_set: str, grid_factor: str | None = None) -> ResolvedFactors:
        """The numbers of ``factor_set`` (``grid_factor``, a site's own choice, fills the grid slot)."""
        chosen = self.sets.get(factor_set)
        if chosen is None:
            raise KeyError(f"unknown factor set {factor_set!r}")
        values: dict[str, float] = {}
        used: dict[str, str] = {}
        for slot in DEFAULT_SLOTS:
            fid = grid_factor if slot == GRID_SLOT and grid_factor else chosen.factor_id(slot)
            f = self.get(fid)
            values[slot] = f.value
            used[slot] = f.ref
        return ResolvedFactors(values=values, used=used)

    def slots_using(self, factor_id: str) -> set[str]:
        """Factor sets (by name) that read ``factor_id`` in some slot (sites' grid factors aside)."""
        return {s.name for s in self.sets.values() if factor_id in {s.factor_id(k) for k in DEFAULT_SLOTS}}
