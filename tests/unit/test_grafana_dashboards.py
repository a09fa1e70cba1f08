"""The shipped Grafana dashboards are well-formed, and the committed JSON files are what the code renders.

The SQL itself runs against a real database in tests/integration/test_grafana_sql.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.grafana.dashboards import (
    ALERTS_UID,
    DATASOURCE,
    DC_UID,
    PARK_UID,
    SCHEMA_VERSION,
    dashboards,
    render,
    rendered_files,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "grafana" / "dashboards"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
PANEL_TYPES = {"timeseries", "stat", "table"}
GRAFANA_GLOBALS = {"__interval", "__interval_ms"}

ALL = dashboards()


def by_uid(uid: str) -> dict[str, Any]:
    [dashboard] = [d for d in ALL if d["uid"] == uid]
    return dashboard


def panel_ids(dashboard: dict[str, Any]) -> list[str]:
    return [f"{dashboard['uid']}/{p['id']}" for p in dashboard["panels"]]


def test_uids_and_titles_are_stable() -> None:
    assert [(d["uid"], d["title"]) for d in ALL] == [
        (PARK_UID, "peakwatch — park"),
        (DC_UID, "peakwatch — data centre"),
        (ALERTS_UID, "peakwatch — alerts"),
    ]
    assert (PARK_UID, DC_UID, ALERTS_UID) == ("pw-park", "pw-dc", "pw-alerts")


def test_building_twice_gives_the_same_dashboards() -> None:
    assert dashboards() == ALL
    assert [render(d) for d in dashboards()] == [render(d) for d in ALL]


@pytest.mark.parametrize("dashboard", ALL, ids=lambda d: d["uid"])
def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == SCHEMA_VERSION == 39
    assert "id" not in dashboard  # Grafana assigns ids; a fixed one would clash across instances
    assert dashboard["tags"] == ["peakwatch"]
    assert dashboard["panels"]
    assert json.loads(render(dashboard)) == dashboard  # JSON-serialisable, nothing lost


@pytest.mark.parametrize("dashboard", ALL, ids=lambda d: d["uid"])
def test_panels_are_complete_and_ids_unique(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and i > 0 for i in ids)
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles)), "titles name the panels in the SQL test"
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES
        assert (
            panel["datasource"] == DATASOURCE == {"type": "grafana-postgresql-datasource", "uid": "peakwatch"}
        )
        assert panel["description"]
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert min(grid["w"], grid["h"], grid["x"]) >= 0
        assert grid["x"] + grid["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) > 0
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            assert target["rawQuery"] is True
            assert target["rawSql"].lstrip().upper().startswith("SELECT")
            assert target["format"] in {"time_series", "table"}


@pytest.mark.parametrize("dashboard", ALL, ids=lambda d: d["uid"])
def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


@pytest.mark.parametrize("dashboard", ALL, ids=lambda d: d["uid"])
def test_every_variable_used_exists_and_every_variable_is_used(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            sql = target["rawSql"]
            for match in re.finditer(r"\$(\w+)(\()?", sql):
                name, is_macro = match.group(1), match.group(2)
                if name.startswith("__"):
                    assert is_macro or name in GRAFANA_GLOBALS, f"{panel['title']}: ${name}"
                else:
                    used.add(name)
    assert used <= defined, f"undefined variables: {used - defined}"
    assert defined <= used, f"variables no panel uses: {defined - used}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE


def test_single_site_dashboards_pick_one_site_of_their_kind() -> None:
    for uid, kind in ((PARK_UID, "park"), (DC_UID, "data_centre")):
        [site] = [v for v in by_uid(uid)["templating"]["list"] if v["name"] == "site"]
        assert f"kind = '{kind}'" in site["query"]
        assert (site["multi"], site["includeAll"]) == (False, False)
        # a single value is inserted unquoted by Grafana: every use must be inside quotes
        for panel in by_uid(uid)["panels"]:
            for target in panel["targets"]:
                assert "$site" not in target["rawSql"].replace("'$site'", "")


def test_alerts_dashboard_filters_many_sites() -> None:
    variables = {v["name"]: v for v in by_uid(ALERTS_UID)["templating"]["list"]}
    assert (variables["site"]["multi"], variables["site"]["includeAll"]) == (True, True)
    for panel in by_uid(ALERTS_UID)["panels"]:
        assert "site_id IN ($site)" in panel["targets"][0]["rawSql"]


def test_pue_panel_draws_the_13_and_15_lines() -> None:
    [pue] = [p for p in by_uid(DC_UID)["panels"] if p["title"] == "PUE"]
    defaults = pue["fieldConfig"]["defaults"]
    assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None, 1.3, 1.5]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert pue["type"] == "timeseries"


def test_expected_panels_are_there() -> None:
    titles = {d["uid"]: {p["title"] for p in d["panels"]} for d in ALL}
    assert {"Micro-grid power flows", "Electrification rate", "Carbon intensity", "Green-power share"} <= (
        titles[PARK_UID]
    )
    assert {"Demand", "Open alerts"} <= titles[PARK_UID] & titles[DC_UID]
    assert {"PUE", "PUE (latest window)", "PUE (12 months, reference)"} <= titles[DC_UID]
    assert {"Open alerts", "Alerts fired over time"} <= titles[ALERTS_UID]


def test_committed_files_equal_the_generated_ones() -> None:
    """`peakwatch grafana export` regenerates deploy/grafana/dashboards; run it after changing the code."""
    committed = {p.name: p.read_text(encoding="utf-8") for p in COMMITTED.glob("*.json")}
    assert committed == rendered_files()


def test_provisioning_points_at_the_datasource_and_the_files() -> None:
    datasources = yaml.safe_load(
        (PROVISIONING / "datasources" / "peakwatch.yaml").read_text(encoding="utf-8")
    )
    [source] = datasources["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE["uid"], DATASOURCE["type"])
    assert source["jsonData"]["timescaledb"] is False  # $__timeGroup as the SQL test expands it
    assert "${" in source["secureJsonData"]["password"]  # never a literal password
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "peakwatch.yaml").read_text(encoding="utf-8"))
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/peakwatch"
