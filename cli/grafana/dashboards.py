"""The dashboards peakwatch ships and their JSON text: what ``export`` writes, ``push`` uploads and the
tests compare with the committed files in deploy/grafana/dashboards/."""

from __future__ import annotations

import json

from cli.grafana.alerts import ALERTS_UID, alerts_dashboard
from cli.grafana.data_centre import DC_UID, data_centre_dashboard
from cli.grafana.panels import DATASOURCE, SCHEMA_VERSION, Json
from cli.grafana.park import PARK_UID, park_dashboard

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
