"""The alerts dashboard: every site's alerts, filtered by site and severity (both multi-value)."""

from __future__ import annotations

from cli.grafana.panels import (
    ALERT_STEPS,
    HALF,
    OPEN_STATES,
    SEVERITY_ORDER,
    Grid,
    Json,
    dashboard,
    query_variable,
    stat,
    table,
    timeseries,
)

ALERTS_UID = "pw-alerts"

ALERT_FILTER = "site_id IN ($site) AND severity IN ($severity)"

COUNT = {"w": 6, "h": 4}
"""Four counts across the top."""

SITES_QUERY = "SELECT id AS __value, name || ' (' || id || ')' AS __text FROM sites ORDER BY name"
# Every severity the rules know, and any other one already stored.
SEVERITIES_QUERY = (
    "SELECT DISTINCT severity FROM (SELECT severity FROM alerts "
    "UNION ALL SELECT unnest(ARRAY['critical', 'warning', 'info'])) s ORDER BY 1"
)


def alerts_dashboard() -> Json:
    """Every site's alerts: what is open now, what fired over the time range, which rules fire most."""
    grid = Grid()
    grid.row(
        COUNT,
        _count(
            "Firing", f"SELECT count(*) AS firing\nFROM alerts\nWHERE state = 'firing' AND {ALERT_FILTER}"
        ),
        _count(
            "Pending", f"SELECT count(*) AS pending\nFROM alerts\nWHERE state = 'pending' AND {ALERT_FILTER}"
        ),
        _count(
            "Firing, not acknowledged",
            "SELECT count(*) AS unacknowledged\nFROM alerts\n"
            f"WHERE state = 'firing' AND acknowledged_at IS NULL AND {ALERT_FILTER}",
        ),
        _count(
            "Fired in range",
            f'SELECT count(*) AS "fired"\nFROM alerts\nWHERE $__timeFilter(fired_at) AND {ALERT_FILTER}',
            red_from_one=False,
        ),
    )
    grid.add(_fired_over_time(), w=24, h=8)
    grid.add(_open_alerts(), w=24, h=9)
    grid.row(HALF, *_history())
    return dashboard(
        ALERTS_UID,
        "peakwatch — alerts",
        "Alerts of every site: open now, fired over time, by rule, resolved.",
        [
            query_variable("site", "Site", SITES_QUERY, multi=True),
            query_variable("severity", "Severity", SEVERITIES_QUERY, multi=True),
        ],
        grid,
    )


def _count(title: str, sql: str, *, red_from_one: bool = True) -> Json:
    """A count of alerts; one that should be zero turns red from one up."""
    return stat(
        title,
        sql,
        unit="none",
        steps=ALERT_STEPS if red_from_one else None,
        fmt="table",
        description=f"{title} alerts of the selected sites and severities.",
    )


def _fired_over_time() -> Json:
    return timeseries(
        "Alerts fired over time",
        'SELECT $__timeGroupAlias(fired_at, $__interval), severity AS metric, count(*) AS "alerts"\n'
        f"FROM alerts\nWHERE $__timeFilter(fired_at) AND {ALERT_FILTER}\n"
        "GROUP BY 1, 2\nORDER BY 1, 2",
        unit="none",
        bars=True,
        decimals=0,
        description="Alerts that started firing in each interval, by severity.",
    )


def _open_alerts() -> Json:
    return table(
        "Open alerts",
        'SELECT coalesce(fired_at, started_at) AS "since", site_id AS "site", rule, severity, state, '
        "summary, value,\n"
        '       acknowledged_by AS "acknowledged by", acknowledged_at AS "acknowledged at"\n'
        f"FROM alerts\nWHERE {OPEN_STATES} AND {ALERT_FILTER}\n"
        f"ORDER BY {SEVERITY_ORDER}, 1 DESC\nLIMIT 500",
        description="Pending and firing alerts, most severe first; acknowledge them in peakwatch.",
    )


def _history() -> list[Json]:
    """What the time range holds: the rules that fired most, and the alerts resolved."""
    return [
        table(
            "Alerts by rule in range",
            'SELECT rule, severity, count(*) AS "fired", count(DISTINCT site_id) AS "sites",\n'
            '       max(fired_at) AS "last fired"\n'
            f"FROM alerts\nWHERE $__timeFilter(fired_at) AND {ALERT_FILTER}\n"
            "GROUP BY rule, severity\nORDER BY 3 DESC, 1",
            description="Which rules fired most over the time range.",
        ),
        table(
            "Resolved in range",
            'SELECT resolved_at AS "resolved", site_id AS "site", rule, severity, summary,\n'
            '       resolved_at - coalesce(fired_at, started_at) AS "open for"\n'
            f"FROM alerts\nWHERE state = 'resolved' AND $__timeFilter(resolved_at) AND {ALERT_FILTER}\n"
            "ORDER BY 1 DESC\nLIMIT 200",
            description="Alerts resolved over the time range, and how long they were open.",
        ),
    ]
