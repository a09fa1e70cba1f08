"""The panels, variables and SQL every peakwatch dashboard is built from, as plain dicts.

Why code and not hand-edited JSON: every panel's SQL is generated from these helpers, so the period
choice, the site filter and the window arithmetic are written once; ``tests/integration/test_grafana_sql.py``
runs every query against a real migrated database with Grafana's macros expanded, and the files in
``deploy/grafana/dashboards/`` are checked to equal what the package renders (``peakwatch grafana export``
writes them), so a shipped dashboard never drifts from the tested one. No I/O here.

Conventions the queries keep (docs/dashboards.md):

* KPIs that are ratios (PUE, carbon intensity, shares) are read from the stored windows of one period
  and never averaged across windows: the ``period`` variable picks the windows (``auto`` picks them from
  the time range so a panel shows a few hundred points at most).
* Additive quantities (energy, emissions) may be summed into Grafana's ``$__interval`` buckets; power is
  energy divided by the hours of the windows summed, so a missing window does not lower the average.
* Single-value variables are quoted in the SQL (``'$site'``); multi-value ones are quoted by Grafana
  (``IN ($site)``).

The key order of every dict is part of the output (the committed JSON is compared byte for byte), so a
helper here keeps the order its panels always had.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

DATASOURCE: Json = {"type": "grafana-postgresql-datasource", "uid": "peakwatch"}
SCHEMA_VERSION = 39
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

ALERT_STEPS: list[Json] = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
"""Any open alert turns a count red."""

STAT = {"w": 4, "h": 4}
"""A site dashboard's top row: six stats across the 24 columns."""
HALF = {"w": 12, "h": 8}
WIDE = {"w": 24, "h": 8}
HERO = {"w": 24, "h": 10}
"""The one large chart under a site dashboard's stats."""


# ------------------------------------------------------------------------------------------ layout


class Grid:
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

    def row(self, size: dict[str, int], *panels: Json) -> None:
        """Panels of one size, side by side (wrapping onto the next row when the grid is full)."""
        for panel in panels:
            self.add(panel, w=size["w"], h=size["h"])


def target(sql: str, *, fmt: str = "time_series", ref: str = "A") -> Json:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": sql,
        "refId": ref,
    }


def thresholds(steps: list[Json] | None) -> Json:
    return {"mode": "absolute", "steps": steps or [{"color": "green", "value": None}]}


def timeseries(
    title: str,
    sql: str,
    *,
    unit: str,
    description: str,
    steps: list[Json] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    stacked: bool = False,
    bars: bool = False,
    decimals: int | None = None,
) -> Json:
    """A chart; ``steps`` are threshold lines drawn across it."""
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else (30 if stacked else 10),
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked or bars else "none"},
        "thresholdsStyle": {"mode": "line" if steps else "off"},
    }
    defaults: Json = {"custom": custom, "thresholds": thresholds(steps), "unit": unit}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if decimals is not None:
        defaults["decimals"] = decimals
    options: Json = {
        "legend": {"calcs": ["lastNotNull", "mean", "max"], "displayMode": "table", "placement": "bottom"},
        "tooltip": {"mode": "multi", "sort": "none"},
    }
    return _panel("timeseries", title, description, {"defaults": defaults, "overrides": []}, options, sql)


def stat(
    title: str,
    sql: str,
    *,
    unit: str,
    description: str,
    steps: list[Json] | None = None,
    decimals: int | None = None,
    fmt: str = "time_series",
) -> Json:
    """One big number; a time-series query also draws its sparkline, a table query does not."""
    defaults: Json = {"thresholds": thresholds(steps), "unit": unit, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    options: Json = {
        "colorMode": "value",
        "graphMode": "area" if fmt == "time_series" else "none",
        "justifyMode": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }
    return _panel("stat", title, description, {"defaults": defaults, "overrides": []}, options, sql, fmt)


def _severity_colours() -> Json:
    return {
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


def table(title: str, sql: str, *, description: str) -> Json:
    """A filterable table; a ``severity`` column is coloured (every table here lists alerts)."""
    field_config: Json = {
        "defaults": {"custom": {"align": "auto", "filterable": True}, "thresholds": thresholds(None)},
        "overrides": [_severity_colours()],
    }
    options: Json = {"cellHeight": "sm", "showHeader": True, "footer": {"show": False}}
    return _panel("table", title, description, field_config, options, sql, "table")


def _panel(
    kind: str,
    title: str,
    description: str,
    field_config: Json,
    options: Json,
    sql: str,
    fmt: str = "time_series",
) -> Json:
    """Every panel reads the peakwatch data source with one SQL query."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": field_config,
        "options": options,
        "targets": [target(sql, fmt=fmt)],
    }


# --------------------------------------------------------------------------------------- variables


def query_variable(name: str, label: str, query: str, *, multi: bool) -> Json:
    """A variable filled by SQL; a multi-value one offers "All" and starts there."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": query,
        "refresh": 1,
        "multi": multi,
        "includeAll": multi,
        "sort": 0,
        "current": {"text": ["All"], "value": ["$__all"]} if multi else {},
        "options": [],
        "hide": 0,
    }


def site_variable(kind: str, label: str) -> Json:
    """One site of one kind (retired sites are not offered)."""
    query = (
        "SELECT id AS __value, name || ' (' || id || ')' AS __text FROM sites "
        f"WHERE kind = '{kind}' AND retired_at IS NULL ORDER BY name"
    )
    return query_variable("site", label, query, multi=False)


def period_variable() -> Json:
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


def dashboard(uid: str, title: str, description: str, variables: list[Json], grid: Grid) -> Json:
    """The dashboard around the panels: tags, links to the other peakwatch dashboards, time range."""
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
