"""Every Grafana panel's SQL, run against a real migrated PostgreSQL with Grafana's macros expanded.

Grafana does two things to a panel's ``rawSql`` before PostgreSQL sees it: the frontend interpolates the
template variables (``$site``, ``$period``, ``$__interval``; for SQL data sources single values are
inserted with ``'`` doubled, multi-value and include-all variables as a comma-separated list of quoted
literals), then the data source expands its macros (``$__timeFilter(col)`` …). ``GrafanaSql`` below
does both the way Grafana's PostgreSQL data source does (pkg/tsdb/grafana-postgresql-datasource
macros.go, timescaledb off); a macro or a global variable it does not know fails the test, so no
dashboard ships a query nobody ran. Variables come from the dashboards' own variable queries, run
against the seeded database.

The database is seeded through the store's write path with windows computed by the domain's own
functions from meter amounts, so the expected values below are hand-computed from those amounts.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from cli.grafana.dashboards import ALERTS_UID, DC_UID, PARK_UID, dashboards
from peakwatch.config import Registry
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.kpis import WindowInputs, minute_components, window_kpis
from peakwatch.domain.models import (
    AlertChange,
    Carrier,
    KpiWindow,
    Meter,
    ProcessedBatch,
    Role,
    Site,
    SiteKind,
)
from peakwatch.domain.periods import Period
from peakwatch.store import Store

pytestmark = pytest.mark.integration

MIN_MS = 60_000
T0 = datetime(2024, 6, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
PARK, DC = "park-grafana", "dc-grafana"

# ------------------------------------------------------------------------------ the macro expander

_MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")
_VARIABLE = re.compile(r"\$(\w+)")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class UnknownMacroError(AssertionError):
    """A panel uses a macro or variable this expander (and so this test) does not cover."""


def rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: no fraction when it is zero, ``Z`` for UTC."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def interval_seconds(text: str) -> float:
    """gtime.ParseInterval for the forms Grafana's interval variables take (``1m``, ``20s``, ``1d``)."""
    match = _DURATION.match(text.strip().strip("'"))
    if match is None:
        raise UnknownMacroError(f"interval {text!r} is not a Grafana duration")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def go_number(value: float) -> str:
    """A float64 as Go's ``%v`` prints it for the intervals used here (60 -> ``60``, 0.5 -> ``0.5``)."""
    return str(int(value)) if value == int(value) else repr(value)


@dataclass(frozen=True)
class Variable:
    values: tuple[str, ...]
    quoted: bool
    """multi or includeAll: Grafana inserts quoted literals joined by commas."""


@dataclass(frozen=True)
class GrafanaSql:
    start: datetime
    end: datetime
    interval: str = "1m"
    variables: dict[str, Variable] | None = None

    def interpolate(self, sql: str) -> str:
        """The frontend's step: template and global variables (``$__name(`` is left for the macros)."""
        variables = self.variables or {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("__"):
                if name == "__interval":
                    return self.interval
                if name == "__interval_ms":
                    return str(int(interval_seconds(self.interval) * 1000))
                if sql[match.end() : match.end() + 1] == "(":
                    return match.group(0)  # a macro
                raise UnknownMacroError(f"unknown global variable ${name}")
            if name not in variables:
                raise UnknownMacroError(f"${name} is not a variable of the dashboard")
            variable = variables[name]
            if variable.quoted:
                return ",".join("'" + v.replace("'", "''") + "'" for v in variable.values)
            [value] = variable.values
            return value.replace("'", "''")

        return _VARIABLE.sub(replace, sql)

    def macro(self, name: str, args: list[str]) -> str:
        """The data source's step (macros.go, timescaledb: false)."""
        if name == "timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339(self.start)}' AND '{rfc3339(self.end)}'"
        if name == "timeFrom":
            return f"'{rfc3339(self.start)}'"
        if name == "timeTo":
            return f"'{rfc3339(self.end)}'"
        if name in ("timeGroup", "timeGroupAlias"):
            if len(args) < 2:
                raise UnknownMacroError(f"$__{name} needs a column and an interval")
            seconds = go_number(interval_seconds(args[1]))
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + ' AS "time"' if name == "timeGroupAlias" else group
        if name == "unixEpochFilter":
            start, end = int(self.start.timestamp()), int(self.end.timestamp())
            return f"{args[0]} >= {start} AND {args[0]} <= {end}"
        raise UnknownMacroError(f"unknown macro $__{name}")

    def expand(self, sql: str) -> str:
        interpolated = self.interpolate(sql)
        expanded = _MACRO.sub(
            lambda m: self.macro(m.group(1), [a.strip() for a in m.group(2).split(",") if a.strip()]),
            interpolated,
        )
        if "$" in expanded:
            raise UnknownMacroError(f"left unexpanded: {expanded}")
        return expanded


# --------------------------------------------------------------------------- the expander itself

RANGE = GrafanaSql(T0, T0 + timedelta(hours=6), interval="5m")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("$__timeFilter(ts)", "ts BETWEEN '2024-06-01T00:00:00Z' AND '2024-06-01T06:00:00Z'"),
        ("$__timeFrom() < $__timeTo()", "'2024-06-01T00:00:00Z' < '2024-06-01T06:00:00Z'"),
        ("$__timeGroup(ts, '5m')", "floor(extract(epoch from ts)/300)*300"),
        ("$__timeGroupAlias(ts, $__interval)", 'floor(extract(epoch from ts)/300)*300 AS "time"'),
        ("$__timeGroup(ts, 1h, 0)", "floor(extract(epoch from ts)/3600)*3600"),
        ("$__unixEpochFilter(t)", "t >= 1717200000 AND t <= 1717221600"),
        ("$__interval_ms", "300000"),
    ],
)
def test_expander_matches_grafana(sql: str, expected: str) -> None:
    assert RANGE.expand(sql) == expected


def test_expander_quotes_variables_as_grafana_does() -> None:
    sql = GrafanaSql(
        T0,
        T0,
        variables={"one": Variable(("o'k",), quoted=False), "many": Variable(("a", "b'c"), quoted=True)},
    )
    assert sql.expand("x = '$one' AND y IN ($many)") == "x = 'o''k' AND y IN ('a','b''c')"


@pytest.mark.parametrize(
    "sql", ["$__timeEpoch(ts)", "$__unixEpochNanoFilter(ts)", "$__range_s", "$nosuchvariable"]
)
def test_expander_refuses_what_it_does_not_know(sql: str) -> None:
    with pytest.raises(UnknownMacroError):
        RANGE.expand(sql)


# ----------------------------------------------------------------------------------------- seeding

PARK_MINUTE = {
    "grid-in": 10.0,
    "grid-out": 2.0,
    "pv": 5.0,
    "wind": 1.0,
    "bess-charge": 1.0,
    "bess-discharge": 0.5,
    "process": 13.5,
    "boiler-gas": 1.0,
}
"""kWh (gas m³) per minute. Consumed: 10 − 2 + 5 + 1 + 0.5 − 1 = 13.5 kWh."""
DC_MINUTE = {"facility": 14.0, "it": 10.0, "cooling": 3.0, "lighting": 1.0}
"""PUE 14 ÷ 10 = 1.4; zone hall-1 (IT 10 + cooling 3) pPUE 1.3; hall-2 has no IT: pPUE null."""


def registry() -> Registry:
    sites = [
        Site(id=PARK, name="Grafana park", kind=SiteKind.PARK),
        Site(id=DC, name="Grafana data centre", kind=SiteKind.DATA_CENTRE),
    ]
    e = Carrier.ELECTRICITY
    meters = [
        Meter(id="grid-in", site_id=PARK, carrier=e, role=Role.GRID_IMPORT),
        Meter(id="grid-out", site_id=PARK, carrier=e, role=Role.GRID_EXPORT),
        Meter(id="pv", site_id=PARK, carrier=e, role=Role.PV_GENERATION),
        Meter(id="wind", site_id=PARK, carrier=e, role=Role.WIND_GENERATION),
        Meter(id="bess-charge", site_id=PARK, carrier=e, role=Role.STORAGE_CHARGE),
        Meter(id="bess-discharge", site_id=PARK, carrier=e, role=Role.STORAGE_DISCHARGE),
        Meter(id="process", site_id=PARK, carrier=e, role=Role.PROCESS_LOAD),
        Meter(id="boiler-gas", site_id=PARK, carrier=Carrier.NATURAL_GAS, role=Role.BOILER, unit="m3"),
        Meter(id="facility", site_id=DC, carrier=e, role=Role.FACILITY_TOTAL),
        Meter(id="it", site_id=DC, carrier=e, role=Role.IT_LOAD, zone="hall-1"),
        Meter(id="cooling", site_id=DC, carrier=e, role=Role.COOLING, zone="hall-1"),
        Meter(id="lighting", site_id=DC, carrier=e, role=Role.LIGHTING, zone="hall-2"),
    ]
    return Registry(sites, meters)


def windows(reg: Registry, site_id: str, kind: SiteKind, per_minute: dict[str, float]) -> list[KpiWindow]:
    """Two hours of minute, quarter-hour and hour windows with the same amounts per minute, and (data
    centre) one 12-month window, computed as the processor and the accountant do."""
    meters = list(reg.site_meters(site_id))
    factors = FactorLibrary().resolve("default")
    out: list[KpiWindow] = []
    for period, minutes, count in (
        (Period.MINUTE, 1, 120),
        (Period.QUARTER_HOUR, 15, 8),
        (Period.HOUR, 60, 2),
    ):
        components = minute_components(meters, {k: v * minutes for k, v in per_minute.items()})
        demand = None if period is not Period.HOUR else 150.0 / 0.25
        inputs = WindowInputs(kind=kind, factors=factors, period=period, max_demand_kw=demand)
        for i in range(count):
            start = T0_MS + i * minutes * MIN_MS
            out.append(window_kpis(site_id, start, start + minutes * MIN_MS, components, inputs))
    if kind is SiteKind.DATA_CENTRE:
        year = minute_components(meters, {k: v * 525_600 for k, v in per_minute.items()})
        inputs = WindowInputs(kind=kind, factors=factors, period=Period.YEAR)
        start = T0_MS - 365 * 86_400_000
        out.append(window_kpis(site_id, start, T0_MS, year, inputs))
    return out


def alert(site_id: str, rule: str, state: str, severity: str, at_min: int) -> AlertChange:
    return AlertChange(
        fingerprint=f"{rule}/{site_id}",
        rule=rule,
        site_id=site_id,
        state=state,
        severity=severity,
        summary=f"{rule} on {site_id}",
        value=1.4,
        started_ms=T0_MS,
        at_ms=T0_MS + at_min * MIN_MS,
    )


@pytest.fixture
async def seeded(store: Store, database_url: str) -> str:
    reg = registry()
    await store.sync_registry(reg)
    await store.write(
        ProcessedBatch(
            kpi_windows=[
                *windows(reg, PARK, SiteKind.PARK, PARK_MINUTE),
                *windows(reg, DC, SiteKind.DATA_CENTRE, DC_MINUTE),
            ],
            alerts=[
                alert(DC, "pue_retrofit_line", "firing", "critical", 10),
                alert(PARK, "completeness_low", "pending", "warning", 15),
                alert(PARK, "carbon_intensity_high", "firing", "warning", 20),
                alert(PARK, "carbon_intensity_high", "resolved", "warning", 50),
                alert(PARK, "grid_import_high", "firing", "warning", 30),
            ],
        )
    )
    firing = [a for a in await store.list_alerts(site_id=DC) if a.state == "firing"]
    await store.acknowledge_alert(firing[0].id, "operator-1", T0_MS + 12 * MIN_MS)
    return database_url


# ------------------------------------------------------------------------------- running the panels

Row = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """A time range, ``$__interval`` and ``$period`` as Grafana would send them."""

    name: str
    start: datetime
    end: datetime
    interval: str
    period: str


SCENARIOS = [
    Scenario("auto-4h", T0 - timedelta(hours=1), T0 + timedelta(hours=3), "1m", "auto"),
    Scenario("auto-2d", T0 - timedelta(days=1), T0 + timedelta(days=1), "15m", "auto"),
    Scenario("auto-20d", T0 - timedelta(days=10), T0 + timedelta(days=10), "1h", "auto"),
    Scenario("auto-90d", T0 - timedelta(days=45), T0 + timedelta(days=45), "6h", "auto"),
    *[
        Scenario(f"{period}-{interval}", T0 - timedelta(hours=1), T0 + timedelta(hours=3), interval, period)
        for period, interval in itertools.product(("1m", "15m", "1h", "1d", "1mo"), ("20s", "1m", "1h"))
    ],
]

SITE_OF = {PARK_UID: PARK, DC_UID: DC}


async def resolve_variables(
    conn: asyncpg.Connection[asyncpg.Record], dashboard: dict[str, Any], scenario: Scenario
) -> dict[str, Variable]:
    """What Grafana would insert for each variable: query variables run against the database (their
    ``__value`` column), the single ``site`` is the seeded site of the dashboard's kind (it must be
    among the query's answers), ``All`` for multi-value ones."""
    resolved: dict[str, Variable] = {}
    base = GrafanaSql(scenario.start, scenario.end, scenario.interval)
    for variable in dashboard["templating"]["list"]:
        quoted = bool(variable.get("multi") or variable.get("includeAll"))
        if variable["type"] == "query":
            rows = await conn.fetch(base.expand(variable["query"]))
            options = tuple(str(r["__value"] if "__value" in r else r[0]) for r in rows)
        elif variable["type"] == "custom":
            options = tuple(v.strip() for v in variable["query"].split(","))
            assert {o["value"] for o in variable["options"]} == set(options)
        else:
            raise UnknownMacroError(f"variable type {variable['type']} is not covered by this test")
        assert options, f"variable {variable['name']} of {dashboard['uid']} has no options"
        if quoted:
            chosen = options
        elif variable["name"] == "site":
            chosen = (SITE_OF[dashboard["uid"]],)
        elif variable["name"] == "period":
            chosen = (scenario.period,)
        else:
            chosen = (options[0],)
        assert set(chosen) <= set(options), f"{chosen} not among {options} ({variable['name']})"
        resolved[variable["name"]] = Variable(chosen, quoted)
    return resolved


async def run_panels(database_url: str, scenario: Scenario) -> dict[tuple[str, str], list[Row]]:
    """Every panel's every target under ``scenario``: (dashboard uid, panel title) -> rows. A plain
    connection (no codecs of the store's): values come back as Grafana's driver sees them."""
    results: dict[tuple[str, str], list[Row]] = {}
    conn = await asyncpg.connect(database_url)
    try:
        for dashboard in dashboards():
            variables = await resolve_variables(conn, dashboard, scenario)
            sql = GrafanaSql(scenario.start, scenario.end, scenario.interval, variables)
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    query = sql.expand(target["rawSql"])
                    try:
                        statement = await conn.prepare(query)
                        records = await statement.fetch()
                    except asyncpg.PostgresError as exc:
                        raise AssertionError(
                            f"{dashboard['uid']} / {panel['title']}: {exc}\n{query}"
                        ) from exc
                    columns = [a.name for a in statement.get_attributes()]
                    if target["format"] == "time_series":
                        assert "time" in columns, f"{panel['title']}: a time series needs a time column"
                    results[(dashboard["uid"], panel["title"])] = [dict(r) for r in records]
    finally:
        await conn.close()
    return results


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_every_panel_query_runs(seeded: str, scenario: Scenario) -> None:
    results = await run_panels(seeded, scenario)
    expected = {(d["uid"], p["title"]) for d in dashboards() for p in d["panels"]}
    assert set(results) == expected
    assert len(results) == sum(len(d["panels"]) for d in dashboards())  # titles are unique
    # whatever the period, the alert panels read the same rows
    assert results[(DC_UID, "Open alerts")][0]["rule"] == "pue_retrofit_line"
    assert results[(ALERTS_UID, "Firing")] == [{"firing": 2}]


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


SCENARIO_1M = Scenario("1m", T0 - timedelta(hours=1), T0 + timedelta(hours=3), "1m", "1m")


async def test_data_centre_panels(seeded: str) -> None:
    results = await run_panels(seeded, SCENARIO_1M)
    pue = results[(DC_UID, "PUE")]
    assert len(pue) == 120
    assert list(pue[0]) == ["time", "PUE"]
    assert pue[0]["time"] == T0
    assert all(close(r["PUE"], 1.4) for r in pue)
    ppue = results[(DC_UID, "Partial PUE by zone")]
    assert {(r["metric"], r["pPUE"] is None or round(r["pPUE"], 9)) for r in ppue} == {
        ("hall-1", 1.3),
        ("hall-2", True),  # no IT in hall-2: null, not an error
    }
    [reference] = results[(DC_UID, "PUE (12 months, reference)")]
    assert close(reference["PUE 12 months"], 1.4)
    power = results[(DC_UID, "Facility and IT power")]
    assert len(power) == 120
    assert all(close(r["facility"], 14 * 60) and close(r["IT"], 10 * 60) for r in power)
    [open_alert] = results[(DC_UID, "Open alerts")]
    assert (open_alert["severity"], open_alert["state"], open_alert["since"]) == (
        "critical",
        "firing",
        T0 + timedelta(minutes=10),
    )
    assert open_alert["acknowledged by"] == "operator-1"


async def test_micro_grid_flows_balance(seeded: str) -> None:
    """Per minute: import 10, export 2, PV + wind 6, discharge 0.5, charge 1, load 13.5 kWh; as power
    (× 60): 600, −120, 360, 30, −60, −810 kW; sources and sinks cancel out."""
    expected = {
        "PV + wind": 360.0,
        "storage discharge": 30.0,
        "grid import": 600.0,
        "storage charge": -60.0,
        "grid export": -120.0,
        "site load": -810.0,
    }
    for interval, buckets in (("1m", 120), ("1h", 2)):
        scenario = Scenario("flows", T0 - timedelta(hours=1), T0 + timedelta(hours=3), interval, "1m")
        flows = (await run_panels(seeded, scenario))[(PARK_UID, "Micro-grid power flows")]
        assert len(flows) == buckets
        assert flows[0]["time"] == T0  # a timestamp column: minute windows floored to the interval
        for row in flows:
            assert list(row) == ["time", *expected]
            assert all(close(row[name], value) for name, value in expected.items()), row
            assert close(sum(row[name] for name in expected), 0.0)


async def test_park_kpi_panels(seeded: str) -> None:
    results = await run_panels(seeded, SCENARIO_1M)
    # electricity 13.5 kWh × 0.1229 = 1.65915 kgce; gas 1 m³ × 1.2143 kgce
    rate = results[(PARK_UID, "Electrification rate")]
    assert len(rate) == 120
    assert close(rate[0]["equivalent value"], 1.65915 / (1.65915 + 1.2143))
    # renewables consumed min(6 − 2, 13.5) = 4 of 13.5 kWh
    share = results[(PARK_UID, "Green-power share")]
    assert close(share[0]["on site"], 4 / 13.5)
    assert share[0]["with certificates"] is None  # market-based: months only
    assert results[(PARK_UID, "Electricity in range")] == [{"electricity": pytest.approx(13.5 * 120)}]
    assert [r["rule"] for r in results[(PARK_UID, "Open alerts")]] == ["grid_import_high", "completeness_low"]
    assert results[(PARK_UID, "Open alerts")][0]["since"] == T0 + timedelta(minutes=30)


async def test_park_demand_of_quarter_hours(seeded: str) -> None:
    """15-minute windows: grid import 150 kWh ÷ 0.25 h = 600 kW, consumption 202.5 kWh ÷ 0.25 h = 810."""
    scenario = Scenario("15m", T0 - timedelta(hours=1), T0 + timedelta(hours=3), "15m", "15m")
    demand = (await run_panels(seeded, scenario))[(PARK_UID, "Demand")]
    assert len(demand) == 8
    assert all(close(r["max 15-min demand"], 600.0) for r in demand)
    assert all(close(r["consumption"], 810.0) and close(r["grid import"], 600.0) for r in demand)


async def test_alerts_panels(seeded: str) -> None:
    results = await run_panels(seeded, SCENARIO_1M)
    assert results[(ALERTS_UID, "Firing")] == [{"firing": 2}]
    assert results[(ALERTS_UID, "Pending")] == [{"pending": 1}]
    assert results[(ALERTS_UID, "Firing, not acknowledged")] == [{"unacknowledged": 1}]
    assert results[(ALERTS_UID, "Fired in range")] == [{"fired": 3}]
    open_alerts = results[(ALERTS_UID, "Open alerts")]
    assert [(r["site"], r["rule"], r["state"]) for r in open_alerts] == [
        (DC, "pue_retrofit_line", "firing"),  # critical first, then the newest
        (PARK, "grid_import_high", "firing"),
        (PARK, "completeness_low", "pending"),
    ]
    over_time = results[(ALERTS_UID, "Alerts fired over time")]
    assert [(r["time"], r["metric"], r["alerts"]) for r in over_time] == [
        ((T0 + timedelta(minutes=10)).timestamp(), "critical", 1),
        ((T0 + timedelta(minutes=20)).timestamp(), "warning", 1),
        ((T0 + timedelta(minutes=30)).timestamp(), "warning", 1),
    ]
    [resolved] = results[(ALERTS_UID, "Resolved in range")]
    assert (resolved["rule"], resolved["open for"]) == ("carbon_intensity_high", timedelta(minutes=30))


async def test_day_windows_keep_their_local_day_at_any_interval(seeded: str, store: Store) -> None:
    """A 1d window starts at local midnight (16:00Z for Shanghai): with a 12 h interval, flooring in
    UTC would draw it on the previous day (12:00Z). Day windows are their own bucket."""
    reg = registry()
    meters = list(reg.site_meters(PARK))
    components = minute_components(meters, {k: v * 1440 for k, v in PARK_MINUTE.items()})
    inputs = WindowInputs(kind=SiteKind.PARK, factors=FactorLibrary().resolve("default"), period=Period.DAY)
    starts = [T0 + timedelta(hours=16 + 24 * d) for d in range(2)]  # Shanghai midnights of 2 and 3 June
    days = [
        window_kpis(
            PARK, int(t.timestamp() * 1000), int(t.timestamp() * 1000) + 86_400_000, components, inputs
        )
        for t in starts
    ]
    await store.write(ProcessedBatch(kpi_windows=days))
    scenario = Scenario("days", T0, T0 + timedelta(days=4), "12h", "1d")
    rows = (await run_panels(seeded, scenario))[(PARK_UID, "Micro-grid power flows")]
    assert [row["time"] for row in rows] == starts
