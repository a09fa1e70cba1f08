"""What the two single-site dashboards (park, data centre) share: their SQL over ``kpi_windows`` and
``alerts``, and the panel shapes they repeat.

A KPI a dashboard shows as a ratio is read window by window (``kpi_series``, ``latest_stat``); energy
is summed into Grafana's buckets and power divided out of it (``bucketed``), so the conventions in
``panels`` hold for every panel built here.
"""

from __future__ import annotations

from cli.grafana.panels import (
    ALERT_STEPS,
    HALF,
    HOURS,
    OPEN_STATES,
    SEVERITY_ORDER,
    SITE_WINDOWS,
    STAT,
    WIDE,
    Grid,
    Json,
    dashboard,
    period_variable,
    site_variable,
    stat,
    table,
    timeseries,
)

# ------------------------------------------------------------------------------------------ queries


def kpi_series(*columns: tuple[str, str]) -> str:
    """Stored windows of one site and period: one column per KPI, as Grafana names the series."""
    selected = ", ".join(f'{column} AS "{name}"' for column, name in columns)
    return f'SELECT window_start AS "time", {selected}\nFROM kpi_windows\nWHERE {SITE_WINDOWS}\nORDER BY 1'


def bucketed(*columns: tuple[str, str]) -> str:
    """Additive quantities summed into ``$__interval`` buckets (``hours``: hours of the windows summed)."""
    selected = ",\n  ".join(f'{expression} AS "{name}"' for expression, name in columns)
    return (
        # Day and longer windows start at local midnight: $__timeGroup floors in UTC and, once the
        # interval reaches 12 h, would draw a Shanghai day (16:00Z) on the day before; they are their own
        # bucket instead.
        "SELECT CASE WHEN period IN ('1d', '1mo', '12mo') THEN window_start\n"
        '  ELSE to_timestamp($__timeGroup(window_start, $__interval)) END AS "time",\n'
        f"  {selected}\n"
        "FROM (\n"
        "  SELECT window_start, period, electricity_kwh, facility_kwh, it_kwh, grid_import_kwh,\n"
        "         grid_export_kwh,\n"
        "         renewable_generation_kwh, emissions_kg, max_demand_kw,\n"
        "         coalesce((components->>'storage_charge_kwh')::double precision, 0) AS storage_charge_kwh,\n"
        "         coalesce((components->>'storage_discharge_kwh')::double precision, 0) AS "
        "storage_discharge_kwh,\n"
        f"         {HOURS} AS hours\n"
        f"  FROM kpi_windows\n  WHERE {SITE_WINDOWS}\n) w\n"
        "GROUP BY 1\nORDER BY 1"
    )


def power(energy_column: str) -> str:
    """Average power over a bucket: its energy divided by the hours of its windows."""
    return f"sum({energy_column}) / sum(hours)"


def latest(column: str, name: str) -> str:
    return (
        f'SELECT window_start AS "time", {column} AS "{name}"\nFROM kpi_windows\n'
        f"WHERE {SITE_WINDOWS} AND {column} IS NOT NULL\nORDER BY 1"
    )


def range_sum(column: str, name: str) -> str:
    return f'SELECT sum({column}) AS "{name}"\nFROM kpi_windows\nWHERE {SITE_WINDOWS}'


OPEN_ALERTS_OF_SITE = (
    'SELECT coalesce(fired_at, started_at) AS "since", rule, severity, state, summary, value,\n'
    '       acknowledged_by AS "acknowledged by", acknowledged_at AS "acknowledged at"\n'
    f"FROM alerts\nWHERE site_id = '$site' AND {OPEN_STATES}\n"
    f"ORDER BY {SEVERITY_ORDER}, 1 DESC\nLIMIT 200"
)

OPEN_ALERT_COUNT_OF_SITE = (
    f"SELECT count(*) AS \"open alerts\"\nFROM alerts\nWHERE site_id = '$site' AND {OPEN_STATES}"
)


# ------------------------------------------------------------------------------------------ panels


def latest_stat(
    title: str,
    column: str,
    name: str,
    *,
    unit: str,
    decimals: int,
    description: str,
    steps: list[Json] | None = None,
) -> Json:
    """A KPI of the latest stored window (ratios are never averaged across windows)."""
    return stat(
        title, latest(column, name), unit=unit, decimals=decimals, steps=steps, description=description
    )


def range_stat(title: str, column: str, name: str, *, unit: str, description: str) -> Json:
    """An additive quantity summed over the dashboard's time range, to the unit."""
    return stat(title, range_sum(column, name), unit=unit, decimals=0, fmt="table", description=description)


def share_series(title: str, *columns: tuple[str, str], description: str) -> Json:
    """Shares between 0 and 1 (electrification, green power), one line per column."""
    return timeseries(
        title, kpi_series(*columns), unit="percentunit", minimum=0, maximum=1, description=description
    )


def _carbon_stats() -> list[Json]:
    """The latest carbon intensity and green-power share: the same two stats on every site dashboard."""
    return [
        latest_stat(
            "Carbon intensity (latest)",
            "carbon_intensity_kg_per_kwh",
            "carbon intensity",
            unit="kgCO2/kWh",
            decimals=3,
            description="Electricity emissions ÷ electricity consumed (location-based) of the latest window.",
        ),
        latest_stat(
            "Green-power share (latest)",
            "green_power_share",
            "green-power share",
            unit="percentunit",
            decimals=1,
            description="Renewables consumed on site ÷ electricity consumed, latest window.",
        ),
    ]


def _open_alerts_stat() -> Json:
    return stat(
        "Open alerts (count)",
        OPEN_ALERT_COUNT_OF_SITE,
        unit="none",
        steps=ALERT_STEPS,
        fmt="table",
        description="Pending and firing alerts of the site.",
    )


def add_stats(grid: Grid, *, own: list[Json], in_range: list[Json]) -> None:
    """A site dashboard's top row: its own KPIs, the latest carbon intensity and green-power share,
    sums over the time range, and the count of open alerts."""
    grid.row(STAT, *own, *_carbon_stats(), *in_range, _open_alerts_stat())


def add_demand_and_alerts(grid: Grid, demand: Json) -> None:
    """The bottom of a site dashboard: demand and data completeness side by side, then the site's open
    alerts across the whole width."""
    completeness = timeseries(
        "Data completeness",
        kpi_series(("completeness", "completeness")),
        unit="percentunit",
        minimum=0,
        maximum=1,
        steps=[{"color": "red", "value": None}, {"color": "green", "value": 0.8}],
        description="Meter-minutes present ÷ expected; below 0.8 the KPIs of a window are weak evidence.",
    )
    grid.row(HALF, demand, completeness)
    grid.row(
        WIDE, table("Open alerts", OPEN_ALERTS_OF_SITE, description="Pending and firing alerts of the site.")
    )


def site_dashboard(uid: str, title: str, description: str, *, kind: str, label: str, grid: Grid) -> Json:
    """A dashboard of one site of ``kind`` at a time, over the stored windows of one period."""
    return dashboard(uid, title, description, [site_variable(kind, label), period_variable()], grid)
