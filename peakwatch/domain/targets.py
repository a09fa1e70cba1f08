"""Carbon-peak target tracking: is a site on course for a yearly KPI target? Pure, no I/O.

A target keeps one KPI of a ``KpiWindow`` at most or at least a value over a calendar year, or reduces
it by a share against a baseline year (the −14% energy-intensity target of the carbon-peak plan).
Progress compares the year to date with the target and projects the year end:

* a **total** (energies, emissions, kgce, output, value added) grows with time, so the year-end
  projection is the year to date ÷ the share of the year elapsed;
* a **ratio or level** (PUE, intensities, shares, completeness, maximum demand) does not scale with
  time: it is a ratio of sums, so the year to date already is the best estimate of the year.

The status is ``met``/``missed`` only once the year is over; before, ``on_track``/``at_risk`` by the
projection. Lower is better for ``at_most`` and ``reduce_by``, higher for ``at_least``.
"""

from __future__ import annotations

import enum
import math
import typing
from typing import Final

import msgspec

from peakwatch.domain.models import KpiWindow


class TargetKind(enum.StrEnum):
    AT_MOST = "at_most"
    AT_LEAST = "at_least"
    REDUCE_BY = "reduce_by"
    """``value`` is a share (0.14 = −14%) of the baseline year's value."""


class TargetStatus(enum.StrEnum):
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    MET = "met"
    MISSED = "missed"
    NO_DATA = "no_data"


def _float_fields() -> frozenset[str]:
    hints = typing.get_type_hints(KpiWindow)
    return frozenset(name for name, hint in hints.items() if hint in (float, float | None))


TARGET_KPIS: Final[frozenset[str]] = _float_fields()
"""Every float field of ``KpiWindow``: what a target may be set on."""

TOTAL_KPIS: Final[frozenset[str]] = frozenset(
    {
        "electricity_kwh",
        "facility_kwh",
        "it_kwh",
        "renewable_generation_kwh",
        "renewable_consumed_kwh",
        "grid_import_kwh",
        "grid_export_kwh",
        "electricity_kgce",
        "electricity_kgce_coal",
        "total_kgce",
        "emissions_kg",
        "electricity_emissions_kg",
        "emissions_market_kg",
        "electricity_emissions_market_kg",
        "green_certificates_kwh",
        "output",
        "value_added_10k_cny",
    }
)
"""KPIs that add up over time (projected by the elapsed share); every other target KPI is a ratio or a
level and is its own projection."""

DATA_CENTRE_KPIS: Final[frozenset[str]] = frozenset({"pue", "cue", "wue_l_per_kwh"})
"""Defined for data centres only (always ``None`` for a park): a target on them at a park is an error."""


class Target(msgspec.Struct, frozen=True, kw_only=True):
    site_id: str
    kpi: str
    kind: TargetKind
    value: float
    year: int
    baseline_year: int | None = None
    """Required for ``reduce_by`` (and only there)."""
    note: str = ""
    id: int | None = None
    """Assigned by the store."""


class TargetProgress(msgspec.Struct, frozen=True, kw_only=True):
    target: Target
    current: float | None
    """The KPI over the year to date."""
    baseline: float | None
    """The KPI over the baseline year (when a baseline window was given)."""
    target_value: float | None
    """The value to reach: ``target.value``, or baseline × (1 − value) for ``reduce_by``."""
    projection: float | None
    """Expected value for the whole year."""
    status: TargetStatus
    elapsed_share: float


def target_problem(target: Target, *, data_centre: bool = True) -> tuple[str, str] | None:
    """Why ``target`` cannot be tracked, as (field, message for the user), or ``None`` when it can.
    ``data_centre`` False refuses the KPIs a park never has."""
    if target.kpi not in TARGET_KPIS:
        return "kpi", f"unknown kpi {target.kpi!r}; choose one of: {', '.join(sorted(TARGET_KPIS))}"
    if not data_centre and target.kpi in DATA_CENTRE_KPIS:
        return "kpi", f"{target.kpi} is defined for data centres only"
    if not math.isfinite(target.value):
        return "value", "value must be a finite number"
    if target.kind is TargetKind.REDUCE_BY:
        if target.baseline_year is None:
            return (
                "baseline_year",
                "a reduce_by target needs baseline_year (the year the reduction is measured against)",
            )
        if target.baseline_year >= target.year:
            return "baseline_year", f"baseline_year {target.baseline_year} must be before year {target.year}"
        if not 0 < target.value < 1:
            return (
                "value",
                f"a reduce_by value is a share between 0 and 1 (0.14 for -14%), not {target.value:g}",
            )
    elif target.baseline_year is not None:
        return "baseline_year", f"baseline_year applies to reduce_by targets only, not {target.kind.value}"
    return None


def target_value(target: Target, baseline: float | None) -> float | None:
    if target.kind is TargetKind.REDUCE_BY:
        return None if baseline is None else baseline * (1.0 - target.value)
    return target.value


def project(kpi: str, current: float | None, elapsed_share: float) -> float | None:
    """Year-end value expected from the year to date (see the module docstring)."""
    if current is None:
        return None
    if kpi not in TOTAL_KPIS or elapsed_share >= 1.0:
        return current
    if elapsed_share <= 0.0:
        return None
    return current / elapsed_share


def _kpi(window: KpiWindow | None, kpi: str) -> float | None:
    if window is None:
        return None
    value = getattr(window, kpi)
    return None if value is None else float(value)


def evaluate(
    target: Target, year_to_date: KpiWindow | None, baseline: KpiWindow | None, elapsed_share: float
) -> TargetProgress:
    """Progress of ``target`` given the year-to-date and baseline-year windows (``None``: no data) and the
    share of the target year elapsed (0..1; at 1 the year is over and the status is final)."""
    elapsed = min(max(elapsed_share, 0.0), 1.0)
    current = _kpi(year_to_date, target.kpi)
    base = _kpi(baseline, target.kpi)
    goal = target_value(target, base)
    projection = project(target.kpi, current, elapsed)
    if projection is None or goal is None:
        status = TargetStatus.NO_DATA
    else:
        good = projection >= goal if target.kind is TargetKind.AT_LEAST else projection <= goal
        if elapsed >= 1.0:
            status = TargetStatus.MET if good else TargetStatus.MISSED
        else:
            status = TargetStatus.ON_TRACK if good else TargetStatus.AT_RISK
    return TargetProgress(
        target=target,
        current=current,
        baseline=base,
        target_value=goal,
        projection=projection,
        status=status,
        elapsed_share=elapsed,
    )
