"""The industrial-park dashboard: where the micro-grid's power comes from and goes, and its carbon KPIs."""

from __future__ import annotations

from cli.grafana.panels import HALF, HERO, Grid, Json, timeseries
from cli.grafana.site import (
    add_demand_and_alerts,
    add_stats,
    bucketed,
    kpi_series,
    latest_stat,
    power,
    range_stat,
    share_series,
    site_dashboard,
)

PARK_UID = "pw-park"


def park_dashboard() -> Json:
    """An industrial park's micro-grid: where its power comes from and goes, and its carbon KPIs."""
    grid = Grid()
    _add_stats(grid)
    grid.row(HERO, _power_flows())
    grid.row(
        HALF,
        share_series(
            "Electrification rate",
            ("electrification_rate", "equivalent value"),
            ("electrification_rate_coal", "coal equivalent"),
            description="Electricity's share of final energy, electricity at its equivalent value "
            "(0.1229 kgce/kWh) and at its coal-equivalent value.",
        ),
        share_series(
            "Green-power share",
            ("green_power_share", "on site"),
            ("green_power_share_market", "with certificates"),
            description="Renewables consumed on site ÷ electricity consumed; with green certificates and "
            "contracts for calendar months.",
        ),
        timeseries(
            "Carbon intensity",
            kpi_series(
                ("carbon_intensity_kg_per_kwh", "location-based"),
                ("carbon_intensity_market_kg_per_kwh", "market-based"),
            ),
            unit="kgCO2/kWh",
            decimals=3,
            description="Electricity emissions ÷ electricity consumed; market-based for calendar months.",
        ),
        timeseries(
            "Emissions",
            bucketed(("sum(emissions_kg)", "emissions")),
            unit="kg",
            bars=True,
            description="CO2 emitted per interval (electricity location-based, fuels, heat).",
        ),
    )
    add_demand_and_alerts(grid, _demand())
    return site_dashboard(
        PARK_UID,
        "peakwatch — park",
        "Industrial park micro-grid: power flows, electrification, carbon intensity, green power, demand.",
        kind="park",
        label="Park",
        grid=grid,
    )


def _add_stats(grid: Grid) -> None:
    own = [
        latest_stat(
            "Electrification rate (latest)",
            "electrification_rate",
            "electrification rate",
            unit="percentunit",
            decimals=1,
            description="Electricity ÷ final energy (kgce, equivalent value) of the latest window.",
        ),
    ]
    in_range = [
        range_stat(
            "Electricity in range",
            "electricity_kwh",
            "electricity",
            unit="kwatth",
            description="Electricity consumed over the time range (sum of the windows).",
        ),
        range_stat(
            "Emissions in range",
            "emissions_kg",
            "emissions",
            unit="kg",
            description="CO2 emissions (electricity and fuels) over the time range.",
        ),
    ]
    add_stats(grid, own=own, in_range=in_range)


def _power_flows() -> Json:
    """Sources stacked above zero, sinks below: the two stacks balance when every meter reports."""
    return timeseries(
        "Micro-grid power flows",
        bucketed(
            (power("renewable_generation_kwh"), "PV + wind"),
            (power("storage_discharge_kwh"), "storage discharge"),
            (power("grid_import_kwh"), "grid import"),
            (f"-{power('storage_charge_kwh')}", "storage charge"),
            (f"-{power('grid_export_kwh')}", "grid export"),
            (f"-{power('electricity_kwh')}", "site load"),
        ),
        unit="kwatt",
        stacked=True,
        description="Average power of each flow (energy ÷ hours): sources above zero (PV and wind, "
        "storage discharge, grid import), sinks below (storage charge, grid export, the site's load); "
        "the two stacks balance.",
    )


def _demand() -> Json:
    return timeseries(
        "Demand",
        bucketed(
            (power("electricity_kwh"), "consumption"),
            (power("grid_import_kwh"), "grid import"),
            ("max(max_demand_kw)", "max 15-min demand"),
        ),
        unit="kwatt",
        description="Average demand, and the largest 15-minute grid-import demand (what is billed; "
        "windows of 15 minutes and longer).",
    )
