"""Carbon-peak target tracking (peakwatch.domain.targets): hand-computed progress and status."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from peakwatch.domain.models import KpiWindow
from peakwatch.domain.targets import (
    TARGET_KPIS,
    TOTAL_KPIS,
    Target,
    TargetKind,
    TargetStatus,
    evaluate,
    project,
    target_problem,
)


def window(**values: Any) -> KpiWindow:
    """A year-to-date window; only the KPIs a test reads matter, the rest are zero."""
    base: dict[str, Any] = {
        "site_id": "s",
        "start_ms": 0,
        "end_ms": 1,
        "electricity_kwh": 0.0,
        "facility_kwh": None,
        "it_kwh": None,
        "renewable_generation_kwh": 0.0,
        "renewable_consumed_kwh": 0.0,
        "grid_import_kwh": 0.0,
        "grid_export_kwh": 0.0,
        "electricity_kgce": 0.0,
        "total_kgce": 0.0,
        "emissions_kg": 0.0,
        "electricity_emissions_kg": 0.0,
        "pue": None,
        "electrification_rate": None,
        "carbon_intensity_kg_per_kwh": None,
        "green_power_share": None,
        "completeness": 1.0,
        "period": "12mo",
    }
    return KpiWindow(**{**base, **values})


def target(kpi: str, kind: TargetKind, value: float, baseline_year: int | None = None) -> Target:
    return Target(site_id="s", kpi=kpi, kind=kind, value=value, year=2025, baseline_year=baseline_year)


def test_pue_below_the_ceiling_is_on_track() -> None:
    progress = evaluate(target("pue", TargetKind.AT_MOST, 1.3), window(pue=1.28), None, 0.5)
    assert progress.current == 1.28
    assert progress.target_value == 1.3
    # a ratio of sums does not scale with time: the year to date is the projection
    assert progress.projection == 1.28
    assert progress.baseline is None
    assert progress.status is TargetStatus.ON_TRACK
    assert progress.elapsed_share == 0.5


def test_pue_above_the_ceiling_is_at_risk() -> None:
    progress = evaluate(target("pue", TargetKind.AT_MOST, 1.3), window(pue=1.42), None, 0.25)
    assert progress.projection == 1.42
    assert progress.status is TargetStatus.AT_RISK


def test_energy_intensity_reduce_by_against_the_baseline() -> None:
    t = target("energy_intensity_kgce_per_10k_cny", TargetKind.REDUCE_BY, 0.14, baseline_year=2020)
    progress = evaluate(
        t,
        window(energy_intensity_kgce_per_10k_cny=90.0),
        window(energy_intensity_kgce_per_10k_cny=100.0),
        0.75,
    )
    assert progress.baseline == 100.0
    assert progress.target_value == pytest.approx(86.0)  # 100 x (1 - 0.14)
    assert progress.projection == 90.0
    assert progress.status is TargetStatus.AT_RISK  # 90 > 86

    progress = evaluate(
        t,
        window(energy_intensity_kgce_per_10k_cny=85.5),
        window(energy_intensity_kgce_per_10k_cny=100.0),
        0.75,
    )
    assert progress.status is TargetStatus.ON_TRACK


def test_emissions_total_projected_by_the_elapsed_share() -> None:
    progress = evaluate(
        target("emissions_kg", TargetKind.AT_MOST, 1000.0), window(emissions_kg=600.0), None, 0.5
    )
    assert progress.current == 600.0
    assert progress.projection == 1200.0  # 600 / 0.5
    assert progress.status is TargetStatus.AT_RISK

    progress = evaluate(
        target("emissions_kg", TargetKind.AT_MOST, 1000.0), window(emissions_kg=200.0), None, 0.25
    )
    assert progress.projection == 800.0
    assert progress.status is TargetStatus.ON_TRACK


def test_emissions_reduce_by_a_share_of_the_baseline_total() -> None:
    t = target("emissions_kg", TargetKind.REDUCE_BY, 0.1, baseline_year=2024)
    progress = evaluate(t, window(emissions_kg=460.0), window(emissions_kg=1000.0), 0.5)
    assert progress.target_value == pytest.approx(900.0)
    assert progress.projection == 920.0
    assert progress.status is TargetStatus.AT_RISK


def test_green_share_at_least() -> None:
    t = target("green_power_share", TargetKind.AT_LEAST, 0.3)
    assert evaluate(t, window(green_power_share=0.35), None, 0.4).status is TargetStatus.ON_TRACK
    assert evaluate(t, window(green_power_share=0.25), None, 0.4).status is TargetStatus.AT_RISK
    # exactly on the line counts as reaching it
    assert evaluate(t, window(green_power_share=0.3), None, 0.4).status is TargetStatus.ON_TRACK


def test_met_and_missed_only_once_the_year_is_over() -> None:
    t = target("pue", TargetKind.AT_MOST, 1.3)
    assert evaluate(t, window(pue=1.25), None, 1.0).status is TargetStatus.MET
    assert evaluate(t, window(pue=1.35), None, 1.0).status is TargetStatus.MISSED
    assert evaluate(t, window(pue=1.25), None, 0.999).status is TargetStatus.ON_TRACK
    # a total at year end is the total itself, not scaled
    done = evaluate(target("emissions_kg", TargetKind.AT_MOST, 1000.0), window(emissions_kg=990.0), None, 1.0)
    assert done.projection == 990.0
    assert done.status is TargetStatus.MET


@pytest.mark.parametrize(
    ("t", "ytd", "baseline", "elapsed"),
    [
        (target("pue", TargetKind.AT_MOST, 1.3), None, None, 0.5),  # no data yet
        (target("pue", TargetKind.AT_MOST, 1.3), window(pue=None), None, 0.5),  # IT not metered
        (
            target("emissions_kg", TargetKind.AT_MOST, 1.0),
            window(emissions_kg=1.0),
            None,
            0.0,
        ),  # year not begun
        (  # no baseline year data: nothing to reduce from
            target("emissions_kg", TargetKind.REDUCE_BY, 0.1, baseline_year=2020),
            window(emissions_kg=1.0),
            None,
            0.5,
        ),
    ],
)
def test_no_data(t: Target, ytd: KpiWindow | None, baseline: KpiWindow | None, elapsed: float) -> None:
    assert evaluate(t, ytd, baseline, elapsed).status is TargetStatus.NO_DATA


def test_elapsed_share_is_clamped() -> None:
    progress = evaluate(target("emissions_kg", TargetKind.AT_MOST, 10.0), window(emissions_kg=5.0), None, 1.7)
    assert progress.elapsed_share == 1.0
    assert progress.projection == 5.0
    assert progress.status is TargetStatus.MET


def test_projection_rules() -> None:
    assert project("electricity_kwh", 250.0, 0.25) == 1000.0
    assert project("carbon_intensity_kg_per_kwh", 0.5, 0.25) == 0.5
    assert project("electricity_kwh", None, 0.25) is None


def test_every_target_kpi_is_a_float_field_of_the_window() -> None:
    fields = {f.name for f in msgspec.structs.fields(KpiWindow)}
    assert TOTAL_KPIS <= TARGET_KPIS
    assert {"pue", "energy_intensity_kgce_per_10k_cny", "green_power_share", "emissions_kg"} <= TARGET_KPIS
    # not numbers: never a target
    assert not {"site_id", "flags", "ppue", "gb40879_grade", "components", "revision"} & TARGET_KPIS
    assert fields >= TARGET_KPIS


@pytest.mark.parametrize(
    ("t", "field", "message_part"),
    [
        (target("pues", TargetKind.AT_MOST, 1.3), "kpi", "unknown kpi 'pues'"),
        (target("pue", TargetKind.AT_MOST, float("nan")), "value", "finite"),
        (target("total_kgce", TargetKind.REDUCE_BY, 0.14), "baseline_year", "needs baseline_year"),
        (target("total_kgce", TargetKind.REDUCE_BY, 14, baseline_year=2020), "value", "0.14 for -14%"),
        (
            target("total_kgce", TargetKind.REDUCE_BY, 0.14, baseline_year=2025),
            "baseline_year",
            "must be before year 2025",
        ),
        (
            target("pue", TargetKind.AT_MOST, 1.3, baseline_year=2020),
            "baseline_year",
            "reduce_by targets only",
        ),
    ],
)
def test_target_problems(t: Target, field: str, message_part: str) -> None:
    problem = target_problem(t)
    assert problem is not None
    assert problem[0] == field
    assert message_part in problem[1]


def test_park_targets_refuse_data_centre_kpis() -> None:
    assert target_problem(target("pue", TargetKind.AT_MOST, 1.3), data_centre=False) == (
        "kpi",
        "pue is defined for data centres only",
    )
    assert target_problem(target("green_power_share", TargetKind.AT_LEAST, 0.3), data_centre=False) is None


def test_valid_targets_have_no_problem() -> None:
    assert target_problem(target("pue", TargetKind.AT_MOST, 1.3)) is None
    assert target_problem(target("total_kgce", TargetKind.REDUCE_BY, 0.14, baseline_year=2020)) is None
