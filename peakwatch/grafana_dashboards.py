"""Grafana dashboards as code: the park, data-centre and alerts dashboards, built as plain dicts.

Why code and not hand-edited JSON: every panel's SQL is generated from a few helpers, so the period
choice, the site filter and the window arithmetic are written once; ``tests/integration/test_grafana_sql.py``
runs every query against a real migrated database with Grafana's macros expanded, and the files in
``deploy/grafana/dashboards/`` are checked to equal what this module renders (``peakwatch grafana export``
writes them), so a shipped dashboard never drifts from the tested one. No I/O here.

Conventions the queries keep (docs/dashboards.md):

* KPIs that are ratios (PUE, carbon intensity, shares) are read from the stored windows of one period
  and never averaged across windows: the ``period`` variable picks the windows (``auto`` picks them from
  the time range so a panel shows a few hundred points at most).
* Additive quantities (energy, emissions) may be summed into Grafana's ``$__interval`` buckets; power is
  energy divided by the hours of the windows summed, so a missing window does not lower the average.
* Single-value variables are quoted in the SQL (``'$site'``); multi-value ones are quoted by Grafana
  (``IN ($site)``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ALERTS_UID",
    "DATASOURCE",
    "DC_UID",
    "PARK_UID",
    "SCHEMA_VERSION",
    "alerts_dashboard",
    "dashboards",
    "data_centre_dashboard",
    "file_name",
    "park_dashboard",
    "render",
    "rendered_files",
]

Json = dict[str, Any]

DATASOURCE: Json = {"type": "grafana-postgresql-datasource", "uid": "peakwatch"}
SCHEMA_VERSION = 39
PARK_UID = "pw-park"
DC_UID = "pw-dc"
ALERTS_UID = "pw-alerts"
TAGS = ["peakwatch"]

PERIODS = ("auto", "1m", "15m", "1h", "1d", "1mo")

# The period ``auto`` resolves to, by the length of the time range: at most ~360 points for ranges up to
# 6 h (minutes), ~290 up to 3 days (quarter hours), ~1,100 up to 45 days (hours), then days.
PERIOD_SQL = (
    "(CASE WHEN '$period' <> 'auto' THEN '$period'"
    " WHEN $__timeTo()::timestamptz - $__timeFrom()::timestamptz <= interval '6 hours' THEN '1m'"
    " WHEN $__timeTo()::timestamptz - $__timeFrom()::timestamptz <= interval '3 days' THEN '15m'"
    " WHEN $__timeTo()::timestamptz - $__timeFrom()::timestamptz <= interval '45 days' THEN '1h'"
    " ELSE '1d' END)"
)

SITE_WINDOWS = f"site_id = '$site' AND period = {PERIOD_SQL} AND $__timeFilter(window_start)"
"""The windows a single-site panel reads: the chosen site, the chosen period, the dashboard's range."""

HOURS = "extract(epoch FROM window_end - window_start) / 3600.0"

OPEN_STATES = "state IN ('pending', 'firing')"
SEVERITY_ORDER = "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"

PUE_THRESHOLDS: list[Json] = [
    {"color": "green", "value": None},
    {"color": "orange", "value": 1.3},
    {"color": "red", "value": 1.5},
]
"""The Hunan plan's lines: new large data centres at most 1.3, existing ones retrofitted above 1.5."""


# ------------------------------------------------------------------------------------------ layout


class _Grid:
    """Places panels left to right on Grafana's 24-column grid and numbers them, so ids are unique and
    stable (they follow the order panels are added in)."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def add(self, panel: Json, *, w: int, h: int) -> None:
        if self._x + w > 24:
            self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        panel = {"id": len(self.panels) + 1, "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y}, **panel}
        self.panels.append(panel)
        self._x += w
        self._row_height = max(self._row_height, h)


def _target(sql: str, *, fmt: str = "time_series", ref: str = "A") -> Json:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": sql,
        "refId": ref,
    }


def _thresholds(steps: list[Json] | None) -> Json:
    return {"mode": "absolute", "steps": steps or [{"color": "green", "value": None}]}


def _timeseries(
    title: str,
    sql: str,
    *,
    unit: str,
    description: str,
    thresholds: list[Json] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    stacked: bool = False,
    bars: bool = False,
    decimals: int | None = None,
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else (30 if stacked else 10),
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked or bars else "none"},
        "thresholdsStyle": {"mode": "line" if thresholds else "off"},
    }
    defaults: Json = {"custom": custom, "thresholds": _thresholds(thresholds), "unit": unit}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "calcs": ["lastNotNull", "mean", "max"],
                "displayMode": "table",
                "placement": "bottom",
            },
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [_target(sql)],
    }


def _stat(
    title: str,
    sql: str,
    *,
    unit: str,
    description: str,
    thresholds: list[Json] | None = None,
    decimals: int | None = None,
    fmt: str = "time_series",
) -> Json:
    defaults: Json = {"thresholds": _thresholds(thresholds), "unit": unit, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "value",
            "graphMode": "area" if fmt == "time_series" else "none",
            "justifyMode": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        "targets": [_target(sql, fmt=fmt)],
    }


def _table(title: str, sql: str, *, description: str) -> Json:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {"custom": {"align": "auto", "filterable": True}, "thresholds": _thresholds(None)},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": "severity"},
                    "properties": [
                        {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                        {
                            "id": "mappings",
                            "value": [
                                {
                                    "type": "value",
                                    "options": {
                                        "critical": {"color": "red", "index": 0},
                                        "warning": {"color": "orange", "index": 1},
                                        "info": {"color": "blue", "index": 2},
                                    },
                                }
                            ],
                        },
                    ],
                }
            ],
        },
        "options": {"cellHeight": "sm", "showHeader": True, "footer": {"show": False}},
        "targets": [_target(sql, fmt="table")],
    }


# --------------------------------------------------------------------------------------- variables


def _site_variable(kind: str, label: str) -> Json:
    query = (
        "SELECT id AS __value, name || ' (' || id || ')' AS __text FROM sites "
        f"WHERE kind = '{kind}' AND retired_at IS NULL ORDER BY name"
    )
    return {
        "type": "query",
        "name": "site",
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": query,
        "refresh": 1,
        "multi": False,
        "includeAll": False,
        "sort": 0,
        "current": {},
        "options": [],
        "hide": 0,
    }


def _period_variable() -> Json:
    options = [{"text": p, "value": p, "selected": p == "auto"} for p in PERIODS]
    return {
        "type": "custom",
        "name": "period",
        "label": "Window",
        "description": "Stored KPI windows to show; auto: minutes up to 6 h, quarter hours up to 3 days, "
        "hours up to 45 days, then days.",
        "query": ",".join(PERIODS),
        "multi": False,
        "includeAll": False,
        "current": {"text": "auto", "value": "auto"},
        "options": options,
        "hide": 0,
    }


def _dashboard(uid: str, title: str, description: str, variables: list[Json], grid: _Grid) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "weekStart": "",
        "links": [
            {
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "title": "peakwatch",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": variables},
        "panels": grid.panels,
    }


# ------------------------------------------------------------------------------------------ queries


def _kpi_series(*columns: tuple[str, str]) -> str:
    """Stored windows of one site and period: one column per KPI, as Grafana names the series."""
    selected = ", ".join(f'{column} AS "{name}"' for column, name in columns)
    return f'SELECT window_start AS "time", {selected}\nFROM kpi_windows\nWHERE {SITE_WINDOWS}\nORDER BY 1'


def _bucketed(*columns: tuple[str, str]) -> str:
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


def _latest(column: str, name: str) -> str:
    return (
        f'SELECT window_start AS "time", {column} AS "{name}"\nFROM kpi_windows\n'
        f"WHERE {SITE_WINDOWS} AND {column} IS NOT NULL\nORDER BY 1"
    )


def _range_sum(column: str, name: str) -> str:
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

ALERT_STEPS: list[Json] = [{"color": "green", "value": None}, {"color": "red", "value": 1}]


# --------------------------------------------------------------------------------------- dashboards


def _carbon_stats() -> list[Json]:
    """The latest carbon intensity and green-power share: the same two stats on every site dashboard."""
    return [
        _stat(
            "Carbon intensity (latest)",
            _latest("carbon_intensity_kg_per_kwh", "carbon intensity"),
            unit="kgCO2/kWh",
            decimals=3,
            description="Electricity emissions ÷ electricity consumed (location-based) of the latest window.",
        ),
        _stat(
            "Green-power share (latest)",
            _latest("green_power_share", "green-power share"),
            unit="percentunit",
            decimals=1,
            description="Renewables consumed on site ÷ electricity consumed, latest window.",
        ),
    ]


def _open_alerts_stat() -> Json:
    return _stat(
        "Open alerts (count)",
        OPEN_ALERT_COUNT_OF_SITE,
        unit="none",
        thresholds=ALERT_STEPS,
        fmt="table",
        description="Pending and firing alerts of the site.",
    )


def park_dashboard() -> Json:
    """An industrial park's micro-grid: where its power comes from and goes, and its carbon KPIs."""
    grid = _Grid()
    stats = [
        _stat(
            "Electrification rate (latest)",
            _latest("electrification_rate", "electrification rate"),
            unit="percentunit",
            decimals=1,
            description="Electricity ÷ final energy (kgce, equivalent value) of the latest window.",
        ),
        *_carbon_stats(),
        _stat(
            "Electricity in range",
            _range_sum("electricity_kwh", "electricity"),
            unit="kwatth",
            decimals=0,
            fmt="table",
            description="Electricity consumed over the time range (sum of the windows).",
        ),
        _stat(
            "Emissions in range",
            _range_sum("emissions_kg", "emissions"),
            unit="kg",
            decimals=0,
            fmt="table",
            description="CO2 emissions (electricity and fuels) over the time range.",
        ),
        _open_alerts_stat(),
    ]
    for stat in stats:
        grid.add(stat, w=4, h=4)
    grid.add(
        _timeseries(
            "Micro-grid power flows",
            _bucketed(
                ("sum(renewable_generation_kwh) / sum(hours)", "PV + wind"),
                ("sum(storage_discharge_kwh) / sum(hours)", "storage discharge"),
                ("sum(grid_import_kwh) / sum(hours)", "grid import"),
                ("-sum(storage_charge_kwh) / sum(hours)", "storage charge"),
                ("-sum(grid_export_kwh) / sum(hours)", "grid export"),
                ("-sum(electricity_kwh) / sum(hours)", "site load"),
            ),
            unit="kwatt",
            stacked=True,
            description="Average power of each flow (energy ÷ hours): sources above zero (PV and wind, "
            "storage discharge, grid import), sinks below (storage charge, grid export, the site's load); "
            "the two stacks balance.",
        ),
        w=24,
        h=10,
    )
    grid.add(
        _timeseries(
            "Electrification rate",
            _kpi_series(
                ("electrification_rate", "equivalent value"), ("electrification_rate_coal", "coal equivalent")
            ),
            unit="percentunit",
            minimum=0,
            maximum=1,
            description="Electricity's share of final energy, electricity at its equivalent value "
            "(0.1229 kgce/kWh) and at its coal-equivalent value.",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _timeseries(
            "Green-power share",
            _kpi_series(("green_power_share", "on site"), ("green_power_share_market", "with certificates")),
            unit="percentunit",
            minimum=0,
            maximum=1,
            description="Renewables consumed on site ÷ electricity consumed; with green certificates and "
            "contracts for calendar months.",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _timeseries(
            "Carbon intensity",
            _kpi_series(
                ("carbon_intensity_kg_per_kwh", "location-based"),
                ("carbon_intensity_market_kg_per_kwh", "market-based"),
            ),
            unit="kgCO2/kWh",
            decimals=3,
            description="Electricity emissions ÷ electricity consumed; market-based for calendar months.",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _timeseries(
            "Emissions",
            _bucketed(("sum(emissions_kg)", "emissions")),
            unit="kg",
            bars=True,
            description="CO2 emitted per interval (electricity location-based, fuels, heat).",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _timeseries(
            "Demand",
            _bucketed(
                ("sum(electricity_kwh) / sum(hours)", "consumption"),
                ("sum(grid_import_kwh) / sum(hours)", "grid import"),
                ("max(max_demand_kw)", "max 15-min demand"),
            ),
            unit="kwatt",
            description="Average demand, and the largest 15-minute grid-import demand (what is billed; "
            "windows of 15 minutes and longer).",
        ),
        w=12,
        h=8,
    )
    grid.add(_completeness(), w=12, h=8)
    grid.add(
        _table("Open alerts", OPEN_ALERTS_OF_SITE, description="Pending and firing alerts of the site."),
        w=24,
        h=8,
    )
    return _dashboard(
        PARK_UID,
        "peakwatch — park",
        "Industrial park micro-grid: power flows, electrification, carbon intensity, green power, demand.",
        [_site_variable("park", "Park"), _period_variable()],
        grid,
    )


def _completeness() -> Json:
    return _timeseries(
        "Data completeness",
        _kpi_series(("completeness", "completeness")),
        unit="percentunit",
        minimum=0,
        maximum=1,
        thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 0.8}],
        description="Meter-minutes present ÷ expected; below 0.8 the KPIs of a window are weak evidence.",
    )


def data_centre_dashboard() -> Json:
    """A data centre: PUE against the Hunan plan's 1.3 and 1.5 lines, power, carbon and green power."""
    grid = _Grid()
    stats = [
        _stat(
            "PUE (latest window)",
            _latest("pue", "PUE"),
            unit="none",
            decimals=2,
            thresholds=PUE_THRESHOLDS,
            description="Facility ÷ IT energy of the latest window (interim: the reference value is the "
            "12-month one).",
        ),
        _stat(
            "PUE (12 months, reference)",
            'SELECT window_end AS "time", pue AS "PUE 12 months"\nFROM kpi_windows\n'
            "WHERE site_id = '$site' AND period = '12mo' AND pue IS NOT NULL\n"
            "ORDER BY window_start DESC\nLIMIT 1",
            unit="none",
            decimals=2,
            thresholds=PUE_THRESHOLDS,
            fmt="table",
            description="The latest 12-month PUE: the value ISO/IEC 30134-2 and GB 40879 grade.",
        ),
        *_carbon_stats(),
        _stat(
            "IT energy in range",
            _range_sum("it_kwh", "IT energy"),
            unit="kwatth",
            decimals=0,
            fmt="table",
            description="IT energy over the time range (sum of the windows).",
        ),
        _open_alerts_stat(),
    ]
    for stat in stats:
        grid.add(stat, w=4, h=4)
    grid.add(
        _timeseries(
            "PUE",
            _kpi_series(("pue", "PUE")),
            unit="none",
            decimals=2,
            minimum=1,
            thresholds=PUE_THRESHOLDS,
            description="Power usage effectiveness of each window, with the Hunan plan's lines: 1.3 for new "
            "large data centres, 1.5 above which existing ones are retrofitted.",
        ),
        w=24,
        h=10,
    )
    grid.add(
        _timeseries(
            "Facility and IT power",
            _bucketed(
                ("sum(facility_kwh) / sum(hours)", "facility"),
                ("sum(it_kwh) / sum(hours)", "IT"),
            ),
            unit="kwatt",
            description="Average power: the whole facility and the IT load (energy ÷ hours).",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _timeseries(
            "Partial PUE by zone",
            'SELECT window_start AS "time", zone.key AS metric, zone.value::double precision AS "pPUE"\n'
            "FROM kpi_windows, jsonb_each_text(ppue) AS zone\n"
            f"WHERE {SITE_WINDOWS}\nORDER BY 1, 2",
            unit="none",
            decimals=2,
            description="Zone electricity ÷ zone IT energy (zones from the meters' zone).",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _timeseries(
            "Carbon intensity and CUE",
            _kpi_series(("carbon_intensity_kg_per_kwh", "carbon intensity"), ("cue", "CUE")),
            unit="kgCO2/kWh",
            decimals=3,
            description="Electricity emissions ÷ electricity consumed, and emissions ÷ IT energy (CUE, "
            "ISO/IEC 30134-8).",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _timeseries(
            "Green-power share and electrification rate",
            _kpi_series(
                ("green_power_share", "green-power share"), ("electrification_rate", "electrification")
            ),
            unit="percentunit",
            minimum=0,
            maximum=1,
            description="Renewables consumed ÷ electricity consumed; electricity's share of final energy.",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _timeseries(
            "Demand",
            _bucketed(
                ("sum(electricity_kwh) / sum(hours)", "consumption"),
                ("max(max_demand_kw)", "max 15-min demand"),
            ),
            unit="kwatt",
            description="Average demand, and the largest 15-minute demand (15-minute and longer windows).",
        ),
        w=12,
        h=8,
    )
    grid.add(_completeness(), w=12, h=8)
    grid.add(
        _table("Open alerts", OPEN_ALERTS_OF_SITE, description="Pending and firing alerts of the site."),
        w=24,
        h=8,
    )
    return _dashboard(
        DC_UID,
        "peakwatch — data centre",
        "Data centre: PUE against the 1.3 and 1.5 lines, power, partial PUE, carbon intensity, demand.",
        [_site_variable("data_centre", "Data centre"), _period_variable()],
        grid,
    )


ALERT_FILTER = "site_id IN ($site) AND severity IN ($severity)"


def alerts_dashboard() -> Json:
    """Every site's alerts: what is open now, what fired over the time range, which rules fire most."""
    grid = _Grid()
    counts = [
        ("Firing", f"SELECT count(*) AS firing\nFROM alerts\nWHERE state = 'firing' AND {ALERT_FILTER}"),
        ("Pending", f"SELECT count(*) AS pending\nFROM alerts\nWHERE state = 'pending' AND {ALERT_FILTER}"),
        (
            "Firing, not acknowledged",
            "SELECT count(*) AS unacknowledged\nFROM alerts\n"
            f"WHERE state = 'firing' AND acknowledged_at IS NULL AND {ALERT_FILTER}",
        ),
        (
            "Fired in range",
            f'SELECT count(*) AS "fired"\nFROM alerts\nWHERE $__timeFilter(fired_at) AND {ALERT_FILTER}',
        ),
    ]
    for title, sql in counts:
        grid.add(
            _stat(
                title,
                sql,
                unit="none",
                thresholds=None if title == "Fired in range" else ALERT_STEPS,
                fmt="table",
                description=f"{title} alerts of the selected sites and severities.",
            ),
            w=6,
            h=4,
        )
    grid.add(
        _timeseries(
            "Alerts fired over time",
            'SELECT $__timeGroupAlias(fired_at, $__interval), severity AS metric, count(*) AS "alerts"\n'
            f"FROM alerts\nWHERE $__timeFilter(fired_at) AND {ALERT_FILTER}\n"
            "GROUP BY 1, 2\nORDER BY 1, 2",
            unit="none",
            bars=True,
            decimals=0,
            description="Alerts that started firing in each interval, by severity.",
        ),
        w=24,
        h=8,
    )
    grid.add(
        _table(
            "Open alerts",
            'SELECT coalesce(fired_at, started_at) AS "since", site_id AS "site", rule, severity, state, '
            "summary, value,\n"
            '       acknowledged_by AS "acknowledged by", acknowledged_at AS "acknowledged at"\n'
            f"FROM alerts\nWHERE {OPEN_STATES} AND {ALERT_FILTER}\n"
            f"ORDER BY {SEVERITY_ORDER}, 1 DESC\nLIMIT 500",
            description="Pending and firing alerts, most severe first; acknowledge them in peakwatch.",
        ),
        w=24,
        h=9,
    )
    grid.add(
        _table(
            "Alerts by rule in range",
            'SELECT rule, severity, count(*) AS "fired", count(DISTINCT site_id) AS "sites",\n'
            '       max(fired_at) AS "last fired"\n'
            f"FROM alerts\nWHERE $__timeFilter(fired_at) AND {ALERT_FILTER}\n"
            "GROUP BY rule, severity\nORDER BY 3 DESC, 1",
            description="Which rules fired most over the time range.",
        ),
        w=12,
        h=8,
    )
    grid.add(
        _table(
            "Resolved in range",
            'SELECT resolved_at AS "resolved", site_id AS "site", rule, severity, summary,\n'
            '       resolved_at - coalesce(fired_at, started_at) AS "open for"\n'
            f"FROM alerts\nWHERE state = 'resolved' AND $__timeFilter(resolved_at) AND {ALERT_FILTER}\n"
            "ORDER BY 1 DESC\nLIMIT 200",
            description="Alerts resolved over the time range, and how long they were open.",
        ),
        w=12,
        h=8,
    )
    site = {
        "type": "query",
        "name": "site",
        "label": "Site",
        "datasource": DATASOURCE,
        "definition": "SELECT id AS __value, name || ' (' || id || ')' AS __text FROM sites ORDER BY name",
        "query": "SELECT id AS __value, name || ' (' || id || ')' AS __text FROM sites ORDER BY name",
        "refresh": 1,
        "multi": True,
        "includeAll": True,
        "sort": 0,
        "current": {"text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }
    severity_query = (
        "SELECT DISTINCT severity FROM (SELECT severity FROM alerts "
        "UNION ALL SELECT unnest(ARRAY['critical', 'warning', 'info'])) s ORDER BY 1"
    )
    severity = {
        **site,
        "name": "severity",
        "label": "Severity",
        "definition": severity_query,
        "query": severity_query,
    }
    return _dashboard(
        ALERTS_UID,
        "peakwatch — alerts",
        "Alerts of every site: open now, fired over time, by rule, resolved.",
        [site, severity],
        grid,
    )


def dashboards() -> list[Json]:
    """Every dashboard peakwatch ships, in a stable order."""
    return [park_dashboard(), data_centre_dashboard(), alerts_dashboard()]


def render(dashboard: Json) -> str:
    """The JSON text of a dashboard as committed under deploy/grafana/dashboards/ (stable key order, so
    regenerating it gives byte-identical files)."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def file_name(dashboard: Json) -> str:
    return f"{dashboard['uid']}.json"


def rendered_files() -> dict[str, str]:
    """File name -> JSON text of every dashboard (what ``peakwatch grafana export`` writes)."""
    return {file_name(d): render(d) for d in dashboards()}
