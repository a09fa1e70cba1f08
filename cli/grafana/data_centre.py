"""The data-centre dashboard: PUE against the Hunan plan's lines, power, partial PUE, carbon, demand."""

from __future__ import annotations

from cli.grafana.panels import HALF, HERO, SITE_WINDOWS, Grid, Json, stat, timeseries
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

DC_UID = "pw-dc"

PUE_THRESHOLDS: list[Json] = [
    {"color": "green", "value": None},
    {"color": "orange", "value": 1.3},
    {"color": "red", "value": 1.5},
]
"""The Hunan plan's lines: new large data centres at most 1.3, existing ones retrofitted above 1.5."""


def data_centre_dashboard() -> Json:
    """A data centre: PUE against the Hunan plan's 1.3 and 1.5 lines, power, carbon and green power."""
    grid = Grid()
    _add_stats(grid)
    grid.row(
        HERO,
        timeseries(
            "PUE",
            kpi_series(("pue", "PUE")),
            unit="none",
            decimals=2,
            minimum=1,
            steps=PUE_THRESHOLDS,
            description="Power usage effectiveness of each window, with the Hunan plan's lines: 1.3 for new "
            "large data centres, 1.5 above which existing ones are retrofitted.",
        ),
    )
    grid.row(
        HALF,
        timeseries(
            "Facility and IT power",
            bucketed((power("facility_kwh"), "facility"), (power("it_kwh"), "IT")),
            unit="kwatt",
            description="Average power: the whole facility and the IT load (energy ÷ hours).",
        ),
        _partial_pue(),
        timeseries(
            "Carbon intensity and CUE",
            kpi_series(("carbon_intensity_kg_per_kwh", "carbon intensity"), ("cue", "CUE")),
            unit="kgCO2/kWh",
            decimals=3,
            description="Electricity emissions ÷ electricity consumed, and emissions ÷ IT energy (CUE, "
            "ISO/IEC 30134-8).",
        ),
        share_series(
            "Green-power share and electrification rate",
            ("green_power_share", "green-power share"),
            ("electrification_rate", "electrification"),
            description="Renewables consumed ÷ electricity consumed; electricity's share of final energy.",
        ),
    )
    demand = timeseries(
        "Demand",
        bucketed((power("electricity_kwh"), "consumption"), ("max(max_demand_kw)", "max 15-min demand")),
        unit="kwatt",
        description="Average demand, and the largest 15-minute demand (15-minute and longer windows).",
    )
    add_demand_and_alerts(grid, demand)
    return site_dashboard(
        DC_UID,
        "peakwatch — data centre",
        "Data centre: PUE against the 1.3 and 1.5 lines, power, partial PUE, carbon intensity, demand.",
        kind="data_centre",
        label="Data centre",
        grid=grid,
    )


def _add_stats(grid: Grid) -> None:
    own = [
        latest_stat(
            "PUE (latest window)",
            "pue",
            "PUE",
            unit="none",
            decimals=2,
            steps=PUE_THRESHOLDS,
            description="Facility ÷ IT energy of the latest window (interim: the reference value is the "
            "12-month one).",
        ),
        stat(
            "PUE (12 months, reference)",
            'SELECT window_end AS "time", pue AS "PUE 12 months"\nFROM kpi_windows\n'
            "WHERE site_id = '$site' AND period = '12mo' AND pue IS NOT NULL\n"
            "ORDER BY window_start DESC\nLIMIT 1",
            unit="none",
            decimals=2,
            steps=PUE_THRESHOLDS,
            fmt="table",
            description="The latest 12-month PUE: the value ISO/IEC 30134-2 and GB 40879 grade.",
        ),
    ]
    in_range = [
        range_stat(
            "IT energy in range",
            "it_kwh",
            "IT energy",
            unit="kwatth",
            description="IT energy over the time range (sum of the windows).",
        ),
    ]
    add_stats(grid, own=own, in_range=in_range)


def _partial_pue() -> Json:
    """One series per zone: the zones are the keys of the window's ``ppue`` object."""
    return timeseries(
        "Partial PUE by zone",
        'SELECT window_start AS "time", zone.key AS metric, zone.value::double precision AS "pPUE"\n'
        "FROM kpi_windows, jsonb_each_text(ppue) AS zone\n"
        f"WHERE {SITE_WINDOWS}\nORDER BY 1, 2",
        unit="none",
        decimals=2,
        description="Zone electricity ÷ zone IT energy (zones from the meters' zone).",
    )
