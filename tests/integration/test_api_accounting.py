"""Accounting inputs, factor versions, the restatement queue and target tracking through the HTTP API,
against a real migrated PostgreSQL store (a fresh database per test, so queue counts are exact).

Every input write must queue exactly one restatement request, in the same transaction, with the site,
meter, range and reason the accountant needs; the tests read the queue back to check it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from api import create_app
from peakwatch.config import Registry, Settings
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.kpis import WindowInputs, minute_components, window_kpis
from peakwatch.domain.models import (
    Carrier,
    KpiWindow,
    Meter,
    MeterReplacement,
    ProcessedBatch,
    Register,
    Role,
    Site,
    SiteKind,
)
from peakwatch.domain.periods import Period
from peakwatch.errors import ConflictError, StoreError
from peakwatch.store import Store
from tests.support import bearer

pytestmark = pytest.mark.integration

DAY = 86_400_000
CST = ZoneInfo("Asia/Shanghai")
DC, PARK = "dc-acc", "park-acc"
HUNAN_2023 = 0.4976
KGCE_PER_KWH = 0.1229
FACTOR_RESTATE_FROM_MS = 946_684_800_000  # 2000-01-01T00:00:00Z


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=CST).timestamp() * 1000)


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def elec(meter_id: str, role: Role, **kw: Any) -> Meter:
    return Meter(id=meter_id, site_id=DC, carrier=Carrier.ELECTRICITY, role=role, **kw)


DC_METERS = (
    elec("facility", Role.FACILITY_TOTAL, register_max=999_999.99),
    elec("it", Role.IT_LOAD),
    elec("cooling", Role.COOLING),
)
REGISTRY = Registry(
    [
        Site(id=DC, name="Accounting DC", kind=SiteKind.DATA_CENTRE, pue_category="category 2"),
        Site(id=PARK, name="Accounting park", kind=SiteKind.PARK, grid_factor="grid.cn.central.2023"),
    ],
    [
        *DC_METERS,
        elec("main-mwh", Role.OTHER_LOAD, unit="MWh"),
        elec("sub-interval", Role.OTHER_LOAD, register=Register.INTERVAL),
        Meter(id="grid-in", site_id=PARK, carrier=Carrier.ELECTRICITY, role=Role.GRID_IMPORT),
    ],
)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    await store.sync_registry(REGISTRY)
    app = create_app(store, REGISTRY, Settings(window_ms=60_000, allowed_lateness_ms=10_000))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://peakwatch.test", headers=await bearer(store)
    ) as c:
        yield c


async def queue(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/restatements")
    assert response.status_code == 200
    rows: list[dict[str, Any]] = response.json()
    return rows


def assert_422(response: httpx.Response, loc: list[str], message_part: str) -> None:
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][: len(loc)] == loc and message_part in e["msg"] for e in errors), errors


# ------------------------------------------------------------------------------------------ factors


async def test_factor_list_and_history_of_shipped_factor(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/factors")
    assert response.status_code == 200
    by_id = {f["id"]: f for f in response.json()}
    hunan = by_id["grid.cn.hunan.2023"]
    assert (hunan["value"], hunan["unit"], hunan["version"], hunan["ref"]) == (
        HUNAN_2023,
        "kgCO2/kWh",
        1,
        "grid.cn.hunan.2023@1",
    )
    assert hunan["recorded_ms"] is None  # shipped default
    assert by_id["kgce.electricity.equivalent"]["value"] == KGCE_PER_KWH

    history = (await client.get("/api/v1/factors/grid.cn.hunan.2023")).json()
    assert [v["version"] for v in history["versions"]] == [1]
    assert history["factor_sets"] == ["default"]

    missing = await client.get("/api/v1/factors/grid.cn.atlantis.2023")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "unknown factor 'grid.cn.atlantis.2023'"}


async def test_factor_revision_adds_a_version_and_queues_every_site(client: httpx.AsyncClient) -> None:
    body = {
        "id": "grid.cn.hunan.2023",
        "value": 0.5012,
        "unit": "kgCO2/kWh",
        "source": "MEE/NBS corrigendum (test)",
        "data_year": 2023,
        "published": "2026-02-01",
        "status": "verified",
    }
    before = now_ms()
    response = await client.post("/api/v1/factors", json=body)
    after = now_ms()
    assert response.status_code == 201, response.text
    written = response.json()
    factor = written["factor"]
    assert (factor["id"], factor["version"], factor["ref"], factor["value"]) == (
        "grid.cn.hunan.2023",
        2,
        "grid.cn.hunan.2023@2",
        0.5012,
    )
    assert before <= factor["recorded_ms"] <= after
    restatement = written["restatement"]
    assert restatement["site_id"] is None  # a factor may be in any site's set
    assert restatement["meter_id"] is None
    assert restatement["reason"] == "factor_revision"
    assert restatement["from_ms"] == FACTOR_RESTATE_FROM_MS
    assert restatement["from"] == "2000-01-01T00:00:00Z"
    assert before + DAY <= restatement["to_ms"] <= after + DAY
    assert restatement["status"] == "pending"
    assert restatement["detail"] == "factor grid.cn.hunan.2023@2: 0.4976 -> 0.5012 kgCO2/kWh"
    assert [r["id"] for r in await queue(client)] == [restatement["id"]]

    history = (await client.get("/api/v1/factors/grid.cn.hunan.2023")).json()
    assert [(v["version"], v["value"]) for v in history["versions"]] == [(1, HUNAN_2023), (2, 0.5012)]
    assert history["current"]["version"] == 2
    current = {f["id"]: f for f in (await client.get("/api/v1/factors")).json()}
    assert current["grid.cn.hunan.2023"]["value"] == 0.5012
    # the data centre uses the default set's grid slot: its detail shows the new version
    site = (await client.get(f"/api/v1/sites/{DC}")).json()
    assert site["grid_factor_id"] == "grid.cn.hunan.2023"
    assert (site["grid_factor"]["value"], site["grid_factor"]["version"]) == (0.5012, 2)

    # the same body again adds nothing and queues nothing
    again = await client.post("/api/v1/factors", json=body)
    assert again.status_code == 200
    assert again.json()["restatement"] is None
    assert again.json()["factor"]["version"] == 2
    assert len(await queue(client)) == 1

    # a third value is version 3, with its own restatement
    third = await client.post("/api/v1/factors", json={**body, "value": 0.4999})
    assert third.status_code == 201
    assert third.json()["factor"]["version"] == 3
    assert len(await queue(client)) == 2


async def test_new_factor_starts_at_version_1(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/factors",
        json={"id": "grid.cn.hunan.2024", "value": 0.4812, "unit": "kgCO2/kWh", "source": "test"},
    )
    assert response.status_code == 201
    factor = response.json()["factor"]
    assert (factor["version"], factor["status"], factor["data_year"]) == (1, "unverified", None)
    assert response.json()["restatement"]["detail"] == "factor grid.cn.hunan.2024@1: new factor kgCO2/kWh"
    history = (await client.get("/api/v1/factors/grid.cn.hunan.2024")).json()
    assert history["factor_sets"] == []


@pytest.mark.parametrize(
    ("body", "loc", "message_part"),
    [
        ({"unit": "kgCO2/MWh"}, ["body", "unit"], "is in 'kgCO2/kWh', not 'kgCO2/MWh'"),
        ({"value": -0.1}, ["body", "value"], "greater than or equal to 0"),
        ({"id": "bad id!"}, ["body", "id"], "should match pattern"),
        ({"source": ""}, ["body", "source"], "at least 1 character"),
        ({"status": "official"}, ["body", "status"], "'verified', 'single_source' or 'unverified'"),
        ({"colour": "red"}, ["body", "colour"], "Extra inputs are not permitted"),
    ],
)
async def test_factor_refusals(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str], message_part: str
) -> None:
    base = {"id": "grid.cn.hunan.2023", "value": 0.5, "unit": "kgCO2/kWh", "source": "test"}
    response = await client.post("/api/v1/factors", json={**base, **body})
    assert_422(response, loc, message_part)
    assert await queue(client) == []


async def test_factor_sets(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/factor-sets")
    assert response.status_code == 200
    [default] = response.json()
    assert default["name"] == "default"
    assert default["slots"]["grid"] == "grid.cn.hunan.2023"
    assert default["slots"]["grid_residual"] == "grid.cn.national_excl_nonfossil.2023"
    assert default["slots"]["kgce.electricity.equivalent"] == "kgce.electricity.equivalent"


# ------------------------------------------------------------------------------------------ replacements


async def test_meter_replacement_is_stored_and_queues_the_meter(client: httpx.AsyncClient) -> None:
    path = f"/api/v1/sites/{DC}/meters/facility/replacements"
    ts = "2025-03-01T10:30:00+08:00"
    ts_ms = utc_ms(ts)
    response = await client.post(
        path, json={"ts": ts, "old_final": 51234.5, "new_initial": 3.25, "note": "swap"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["replacement"] == {
        "site_id": DC,
        "meter_id": "facility",
        "ts": "2025-03-01T02:30:00Z",
        "ts_ms": ts_ms,
        "old_final": 51234.5,
        "new_initial": 3.25,
        "unit": "kWh",
        "note": "swap",
    }
    restatement = body["restatement"]
    assert (restatement["site_id"], restatement["meter_id"], restatement["reason"]) == (
        DC,
        "facility",
        "meter_replacement",
    )
    assert (restatement["from_ms"], restatement["to_ms"]) == (ts_ms, ts_ms + 1)
    [queued] = await queue(client)
    assert queued == restatement

    listed = await client.get(path)
    assert listed.status_code == 200
    assert listed.json() == [body["replacement"]]

    duplicate = await client.post(path, json={"ts": ts_ms, "old_final": 1.0, "new_initial": 0.0})
    assert duplicate.status_code == 409
    assert "already has a replacement" in duplicate.json()["detail"]
    assert len(await queue(client)) == 1


async def test_replacement_values_are_converted_to_the_canonical_unit(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"/api/v1/sites/{DC}/meters/main-mwh/replacements",
        json={"ts": 1_740_796_200_000, "old_final": 12.5, "new_initial": 0.002},
    )
    assert response.status_code == 201
    replacement = response.json()["replacement"]
    assert replacement["old_final"] == 12_500.0  # 12.5 MWh
    assert replacement["new_initial"] == 2.0  # 0.002 MWh
    assert replacement["unit"] == "kWh"
    assert replacement["ts_ms"] == 1_740_796_200_000


@pytest.mark.parametrize(
    ("meter", "body", "loc", "message_part"),
    [
        ("facility", {"ts": "2025-03-01T10:30:00"}, ["body", "ts"], "no UTC offset"),
        ("facility", {"ts": 1_740_796_200}, ["body", "ts"], "epoch seconds"),
        ("facility", {"ts": "2099-01-01T00:00:00Z"}, ["body", "ts"], "in the future"),
        ("facility", {"ts": "2999-01-01T00:00:00Z"}, ["body", "ts"], "outside 1973..2099"),
        ("facility", {"old_final": -1}, ["body", "old_final"], "greater than or equal to 0"),
        ("facility", {"old_final": 1_000_000}, ["body", "old_final"], "register_max 999999.99 kWh"),
        ("sub-interval", {}, ["path", "meter_id"], "interval register"),
    ],
)
async def test_replacement_refusals(
    client: httpx.AsyncClient, meter: str, body: dict[str, Any], loc: list[str], message_part: str
) -> None:
    base = {"ts": "2025-03-01T10:30:00+08:00", "old_final": 10.0, "new_initial": 0.0}
    response = await client.post(f"/api/v1/sites/{DC}/meters/{meter}/replacements", json={**base, **body})
    assert_422(response, loc, message_part)
    assert await queue(client) == []


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        (f"/api/v1/sites/{DC}/meters/nope/replacements", f"unknown meter 'nope' at site '{DC}'"),
        ("/api/v1/sites/nope/meters/facility/replacements", "unknown site 'nope'"),
    ],
)
async def test_replacement_unknown_meter_or_site(client: httpx.AsyncClient, path: str, detail: str) -> None:
    body = {"ts": "2025-03-01T10:30:00+08:00", "old_final": 10.0, "new_initial": 0.0}
    for response in (await client.post(path, json=body), await client.get(path)):
        assert response.status_code == 404
        assert response.json() == {"detail": detail}


# ------------------------------------------------------------------------------------------ green instruments

MARCH_2025 = (utc_ms("2025-02-28T16:00:00+00:00"), utc_ms("2025-03-31T16:00:00+00:00"))
"""March 2025 in Asia/Shanghai."""


async def test_green_certificates_and_contracts(client: httpx.AsyncClient) -> None:
    path = f"/api/v1/sites/{DC}/green-instruments"
    response = await client.post(
        path, json={"month": "2025-03", "kind": "certificate", "certificates": 120, "reference": "GEC-1"}
    )
    assert response.status_code == 201, response.text
    certificate = response.json()
    assert certificate["instrument"]["kwh"] == 120_000.0  # 120 certificates x 1,000 kWh
    assert (certificate["instrument"]["month"], certificate["instrument"]["kind"]) == (
        "2025-03",
        "certificate",
    )
    assert certificate["instrument"]["reference"] == "GEC-1"
    restatement = certificate["restatement"]
    assert (restatement["site_id"], restatement["meter_id"], restatement["reason"]) == (
        DC,
        None,
        "green_instruments",
    )
    # the site's local month: 2025-03-01T00:00+08:00 .. 2025-04-01T00:00+08:00
    assert (restatement["from_ms"], restatement["to_ms"]) == MARCH_2025
    assert restatement["from"] == "2025-02-28T16:00:00Z"

    contract = await client.post(path, json={"month": "2025-04", "kind": "contract", "kwh": 5000.5})
    assert contract.status_code == 201
    assert contract.json()["instrument"]["kwh"] == 5000.5
    assert contract.json()["restatement"]["from_ms"] == MARCH_2025[1]

    assert [r["id"] for r in await queue(client)] == [
        contract.json()["restatement"]["id"],
        restatement["id"],
    ]
    listed = (await client.get(path)).json()
    assert [(g["month"], g["kwh"]) for g in listed] == [("2025-03", 120_000.0), ("2025-04", 5000.5)]
    march = (await client.get(path, params={"month": "2025-03"})).json()
    assert [g["id"] for g in march] == [certificate["instrument"]["id"]]


@pytest.mark.parametrize(
    ("body", "loc", "message_part"),
    [
        ({"kind": "certificate"}, ["body", "kwh"], "exactly one of kwh and certificates"),
        ({"kind": "certificate", "kwh": 1.0, "certificates": 1}, ["body", "kwh"], "exactly one"),
        (
            {"kind": "contract", "certificates": 3},
            ["body", "certificates"],
            "give a contract's volume in kwh",
        ),
        ({"kind": "certificate", "kwh": 1.0, "month": "2025-13"}, ["body", "month"], "use YYYY-MM"),
        ({"kind": "certificate", "kwh": 1.0, "month": "March"}, ["body", "month"], "use YYYY-MM"),
        ({"kind": "forest", "kwh": 1.0}, ["body", "kind"], "'certificate' or 'contract'"),
        ({"kind": "contract", "kwh": -5}, ["body", "kwh"], "greater than or equal to 0"),
    ],
)
async def test_green_instrument_refusals(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str], message_part: str
) -> None:
    response = await client.post(f"/api/v1/sites/{DC}/green-instruments", json={"month": "2025-03", **body})
    assert_422(response, loc, message_part)
    assert await queue(client) == []


async def test_green_instruments_bad_month_filter_and_unknown_site(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/sites/{DC}/green-instruments", params={"month": "2025-3"})
    assert_422(response, ["query", "month"], "use YYYY-MM")
    response = await client.post(
        "/api/v1/sites/nope/green-instruments", json={"month": "2025-03", "kwh": 1.0}
    )
    assert response.status_code == 404


# ------------------------------------------------------------------------------------------ value added


async def test_value_added_set_read_and_replace(client: httpx.AsyncClient) -> None:
    path = f"/api/v1/sites/{DC}/value-added/2025-03"
    response = await client.put(path, json={"value_cny": 2_500_000})
    assert response.status_code == 200, response.text
    written = response.json()
    assert written["value_added"]["month"] == "2025-03"
    assert written["value_added"]["value_cny"] == 2_500_000.0
    assert written["value_added"]["value_added_10k_cny"] == 250.0
    restatement = written["restatement"]
    assert (restatement["site_id"], restatement["meter_id"], restatement["reason"]) == (
        DC,
        None,
        "value_added",
    )
    assert (restatement["from_ms"], restatement["to_ms"]) == MARCH_2025
    assert written["value_added"]["recorded_ms"] == restatement["requested_ms"]  # one transaction

    stored = (await client.get(path)).json()
    assert stored == written["value_added"]

    again = await client.put(path, json={"value_cny": 2_600_000})
    assert again.status_code == 200
    listed = (await client.get(f"/api/v1/sites/{DC}/value-added")).json()
    assert [(v["month"], v["value_cny"]) for v in listed] == [("2025-03", 2_600_000.0)]
    assert [r["reason"] for r in await queue(client)] == ["value_added", "value_added"]


async def test_value_added_refusals(client: httpx.AsyncClient) -> None:
    assert_422(
        await client.put(f"/api/v1/sites/{DC}/value-added/2025-3", json={"value_cny": 1}),
        ["path", "month"],
        "use YYYY-MM",
    )
    assert_422(
        await client.put(f"/api/v1/sites/{DC}/value-added/2025-03", json={"value_cny": -1}),
        ["body", "value_cny"],
        "greater than or equal to 0",
    )
    missing = await client.get(f"/api/v1/sites/{DC}/value-added/2025-05")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"no value added entered for 2025-05 at site '{DC}'"}
    unknown = await client.put("/api/v1/sites/nope/value-added/2025-03", json={"value_cny": 1})
    assert unknown.status_code == 404
    assert await queue(client) == []


# ------------------------------------------------------------------------------------------ restatement queue


async def test_restatement_queue_filters(store: Store, client: httpx.AsyncClient) -> None:
    ids = {
        "dc": await store.inputs.request_restatement(DC, None, 0, DAY, "late_data", "late batch"),
        "park": await store.inputs.request_restatement(PARK, "grid-in", DAY, 2 * DAY, "manual"),
        "all": await store.inputs.request_restatement(None, None, 0, DAY, "factor_revision"),
    }
    assert [r.id for r in await store.inputs.pending_restatements(10)] == [ids["dc"], ids["park"], ids["all"]]
    await store.inputs.mark_restatement_done([ids["park"]])

    rows = await queue(client)
    assert [r["id"] for r in rows] == [ids["all"], ids["park"], ids["dc"]]  # newest first
    by_id = {r["id"]: r for r in rows}
    assert by_id[ids["park"]]["status"] == "done"
    assert by_id[ids["park"]]["done_ms"] is not None
    assert by_id[ids["dc"]]["status"] == "pending"
    assert by_id[ids["dc"]]["detail"] == "late batch"

    pending = (await client.get("/api/v1/restatements", params={"status": "pending"})).json()
    assert [r["id"] for r in pending] == [ids["all"], ids["dc"]]
    done = (await client.get("/api/v1/restatements", params={"status": "done"})).json()
    assert [r["id"] for r in done] == [ids["park"]]
    # a site's view includes the requests for every site
    dc_rows = (await client.get("/api/v1/restatements", params={"site_id": DC})).json()
    assert [r["id"] for r in dc_rows] == [ids["all"], ids["dc"]]
    limited = (await client.get("/api/v1/restatements", params={"limit": 1})).json()
    assert [r["id"] for r in limited] == [ids["all"]]

    assert (await client.get("/api/v1/restatements", params={"site_id": "nope"})).status_code == 404
    assert_422(await client.get("/api/v1/restatements", params={"status": "stuck"}), ["query", "status"], "")


# ------------------------------------------------------------------------------------------ targets


async def test_target_crud(client: httpx.AsyncClient) -> None:
    path = f"/api/v1/sites/{DC}/targets"
    created = await client.post(path, json={"kpi": "pue", "kind": "at_most", "value": 1.3, "year": 2025})
    assert created.status_code == 201, created.text
    pue = created.json()
    assert pue == {
        "id": pue["id"],
        "site_id": DC,
        "kpi": "pue",
        "kind": "at_most",
        "value": 1.3,
        "year": 2025,
        "baseline_year": None,
        "note": "",
    }
    intensity = (
        await client.post(
            path,
            json={
                "kpi": "energy_intensity_kgce_per_10k_cny",
                "kind": "reduce_by",
                "value": 0.14,
                "year": 2026,
                "baseline_year": 2020,
                "note": "14th FYP",
            },
        )
    ).json()
    assert [t["id"] for t in (await client.get(path)).json()] == [pue["id"], intensity["id"]]
    assert [t["id"] for t in (await client.get(path, params={"year": 2026})).json()] == [intensity["id"]]

    deleted = await client.delete(f"{path}/{pue['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert [t["id"] for t in (await client.get(path)).json()] == [intensity["id"]]
    gone = await client.delete(f"{path}/{pue['id']}")
    assert gone.status_code == 404
    assert gone.json() == {"detail": f"unknown target {pue['id']} at site '{DC}'"}
    # another site's target is not this site's
    other = await client.delete(f"/api/v1/sites/{PARK}/targets/{intensity['id']}")
    assert other.status_code == 404
    assert await queue(client) == []  # targets are not KPI inputs


@pytest.mark.parametrize(
    ("site", "body", "loc", "message_part"),
    [
        (DC, {"kpi": "pues"}, ["body", "kpi"], "unknown kpi 'pues'"),
        (PARK, {"kpi": "pue"}, ["body", "kpi"], "data centres only"),
        (DC, {"kind": "reduce_by", "value": 0.14}, ["body", "baseline_year"], "needs baseline_year"),
        (DC, {"kind": "reduce_by", "value": 14, "baseline_year": 2020}, ["body", "value"], "0.14 for -14%"),
        (DC, {"baseline_year": 2020}, ["body", "baseline_year"], "reduce_by targets only"),
        (DC, {"kind": "at_best"}, ["body", "kind"], "'at_most', 'at_least' or 'reduce_by'"),
        (DC, {"year": 1999}, ["body", "year"], "greater than or equal to 2000"),
    ],
)
async def test_target_refusals(
    client: httpx.AsyncClient, site: str, body: dict[str, Any], loc: list[str], message_part: str
) -> None:
    base = {"kpi": "pue", "kind": "at_most", "value": 1.3, "year": 2025}
    response = await client.post(f"/api/v1/sites/{site}/targets", json={**base, **body})
    assert_422(response, loc, message_part)


def day_window(start_ms: int, facility: float, it: float, cooling: float) -> KpiWindow:
    """A closed local day of the data centre, computed like the processor does (components first)."""
    components = minute_components(DC_METERS, {"facility": facility, "it": it, "cooling": cooling})
    inputs = WindowInputs(
        kind=SiteKind.DATA_CENTRE, factors=FactorLibrary().resolve("default"), period=Period.DAY
    )
    return window_kpis(DC, start_ms, start_ms + DAY, components, inputs)


async def test_target_progress(store: Store, client: httpx.AsyncClient) -> None:
    # 2024: day A (10 Mar) facility 1200 / IT 1000, day B (1 Jul) 1400 / 1000; 2023: one day 3000 / 2000
    await store.write(
        ProcessedBatch(
            kpi_windows=[
                day_window(local_ms(2024, 3, 10), 1200.0, 1000.0, 150.0),
                day_window(local_ms(2024, 7, 1), 1400.0, 1000.0, 200.0),
                day_window(local_ms(2023, 5, 5), 3000.0, 2000.0, 300.0),
            ]
        )
    )
    for month in ("01", "02", "03", "04", "05", "06", "08"):  # July missing: value added stops at June
        assert (
            await client.put(f"/api/v1/sites/{DC}/value-added/2024-{month}", json={"value_cny": 100_000})
        ).status_code == 200
    green = {"month": "2024-07", "kind": "contract", "kwh": 400}
    assert (await client.post(f"/api/v1/sites/{DC}/green-instruments", json=green)).status_code == 201
    targets = [
        {"kpi": "pue", "kind": "at_most", "value": 1.3, "year": 2024},
        {"kpi": "emissions_kg", "kind": "reduce_by", "value": 0.1, "year": 2024, "baseline_year": 2023},
        {"kpi": "energy_intensity_kgce_per_10k_cny", "kind": "at_most", "value": 3.0, "year": 2024},
        {"kpi": "green_power_share_market", "kind": "at_least", "value": 0.15, "year": 2024},
        {"kpi": "wue_l_per_kwh", "kind": "at_most", "value": 1.8, "year": 2024},
        {"kpi": "pue", "kind": "at_most", "value": 1.25, "year": 2099},
    ]
    for t in targets:
        assert (await client.post(f"/api/v1/sites/{DC}/targets", json=t)).status_code == 201

    response = await client.get(f"/api/v1/sites/{DC}/targets/progress", params={"year": 2024})
    assert response.status_code == 200, response.text
    by_kpi = {p["target"]["kpi"]: p for p in response.json()}
    assert list(by_kpi) == [t["kpi"] for t in targets[:5]]
    year_2024 = {
        "from": "2023-12-31T16:00:00Z",
        "from_ms": local_ms(2024, 1, 1),
        "to": "2024-12-31T16:00:00Z",
    }

    # PUE = (1200 + 1400) / (1000 + 1000) = 1.3 over the whole (past) year: met, exactly on the line
    pue = by_kpi["pue"]
    assert (pue["current"], pue["projection"], pue["target_value"], pue["status"]) == (1.3, 1.3, 1.3, "met")
    assert (pue["elapsed_share"], pue["interim"]) == (1.0, False)
    # each test day holds one minute of the three metered meters; the site has 5 meters x 366 days
    assert pue["completeness"] == pytest.approx(6 / (5 * 366 * 1440))
    assert pue["year_to_date"] == {**year_2024, "to_ms": local_ms(2025, 1, 1)}
    assert pue["baseline_span"] is None

    # emissions 2600 x 0.4976 = 1293.76 kg against 2023's 3000 x 0.4976 = 1492.8 kg reduced by 10%: 1343.52
    emissions = by_kpi["emissions_kg"]
    assert emissions["current"] == pytest.approx(1293.76)
    assert emissions["projection"] == pytest.approx(1293.76)
    assert emissions["baseline"] == pytest.approx(1492.8)
    assert emissions["target_value"] == pytest.approx(1343.52)
    assert emissions["status"] == "met"
    assert emissions["baseline_span"]["from_ms"] == local_ms(2023, 1, 1)
    assert emissions["baseline_span"]["to_ms"] == local_ms(2024, 1, 1)

    # value added entered Jan..Jun only: span 1 Jan .. 1 Jul holds day A alone;
    # 1200 x 0.1229 = 147.48 kgce / (6 x 100,000 CNY = 60 x 10k CNY) = 2.458 kgce per 10k CNY
    intensity = by_kpi["energy_intensity_kgce_per_10k_cny"]
    assert intensity["current"] == pytest.approx(2.458)
    assert intensity["projection"] == pytest.approx(2.458)  # a ratio: not scaled
    assert intensity["year_to_date"]["to_ms"] == local_ms(2024, 7, 1)
    assert intensity["elapsed_share"] == pytest.approx(182 / 366)  # Jan..Jun of a leap year
    assert (intensity["status"], intensity["interim"]) == ("on_track", True)

    # market-based green share: 400 kWh of contracts over 2600 kWh purchased = 0.153846...
    share = by_kpi["green_power_share_market"]
    assert share["current"] == pytest.approx(400 / 2600)
    assert share["status"] == "met"

    # no water metered: WUE cannot be computed
    wue = by_kpi["wue_l_per_kwh"]
    assert (wue["current"], wue["projection"], wue["status"]) == (None, None, "no_data")

    future = (await client.get(f"/api/v1/sites/{DC}/targets/progress", params={"year": 2099})).json()
    [pue_2099] = future
    assert (pue_2099["status"], pue_2099["elapsed_share"], pue_2099["current"]) == ("no_data", 0.0, None)

    assert (await client.get(f"/api/v1/sites/{DC}/targets/progress", params={"year": 2030})).json() == []
    assert (await client.get("/api/v1/sites/nope/targets/progress")).status_code == 404


async def test_target_progress_uses_the_factor_revision(store: Store, client: httpx.AsyncClient) -> None:
    """Progress reads the library as the processor does: a version added through the API counts."""
    await store.write(ProcessedBatch(kpi_windows=[day_window(local_ms(2024, 3, 10), 1000.0, 800.0, 100.0)]))
    body = {"kpi": "emissions_kg", "kind": "at_most", "value": 600.0, "year": 2024}
    assert (await client.post(f"/api/v1/sites/{DC}/targets", json=body)).status_code == 201
    [before] = (await client.get(f"/api/v1/sites/{DC}/targets/progress", params={"year": 2024})).json()
    assert before["current"] == pytest.approx(497.6)  # 1000 kWh x 0.4976
    assert before["status"] == "met"
    revision = {"id": "grid.cn.hunan.2023", "value": 0.61, "unit": "kgCO2/kWh", "source": "test"}
    assert (await client.post("/api/v1/factors", json=revision)).status_code == 201
    [after] = (await client.get(f"/api/v1/sites/{DC}/targets/progress", params={"year": 2024})).json()
    assert after["current"] == pytest.approx(610.0)
    assert after["status"] == "missed"


# ------------------------------------------------------------------------------------------ the store itself


async def test_inputs_store_reads_and_atomic_writes(store: Store) -> None:
    await store.sync_registry(REGISTRY)
    inputs = store.inputs
    await inputs.add_replacement(
        MeterReplacement(site_id=PARK, meter_id="grid-in", ts_ms=2 * DAY, old_final=9.0, new_initial=1.0)
    )
    await inputs.add_replacement(
        MeterReplacement(site_id=DC, meter_id="it", ts_ms=DAY, old_final=5.0, new_initial=0.0)
    )
    # None matches every site and meter (a restarted processor loads them all), oldest first
    assert [(r.site_id, r.meter_id) for r in await inputs.list_replacements(None, None)] == [
        (DC, "it"),
        (PARK, "grid-in"),
    ]
    assert [r.old_final for r in await inputs.list_replacements(PARK)] == [9.0]

    march = date(2025, 3, 1)
    assert await inputs.green_kwh(DC, march) == 0.0
    await inputs.add_green_instrument(DC, march, "certificate", 1000.0, "a")
    await inputs.add_green_instrument(DC, march, "contract", 250.5, "b")
    await inputs.add_green_instrument(DC, date(2025, 4, 1), "contract", 7.0)
    assert await inputs.green_kwh(DC, march) == 1250.5
    assert await inputs.value_added(DC, march) is None
    await inputs.set_value_added(DC, march, 123.0)
    assert await inputs.value_added(DC, march) == 123.0
    assert len(await inputs.pending_restatements(100)) == 6

    # a write that fails queues nothing: the input and its request share one transaction
    with pytest.raises(StoreError, match="unknown site 'nope'"):
        await inputs.add_green_instrument("nope", march, "contract", 1.0)
    with pytest.raises(ConflictError):
        await inputs.add_replacement(
            MeterReplacement(site_id=DC, meter_id="it", ts_ms=DAY, old_final=6.0, new_initial=0.0)
        )
    assert len(await inputs.pending_restatements(100)) == 6
    with pytest.raises(ValueError, match="first day"):
        await inputs.set_value_added(DC, date(2025, 3, 2), 1.0)
    with pytest.raises(ValueError, match="empty restatement range"):
        await inputs.request_restatement(DC, None, DAY, DAY, "manual")


async def test_factor_versions_never_collide(store: Store) -> None:
    """A caller's version number is raised past the stored ones (an edited YAML may renumber)."""
    base = FactorLibrary().get("grid.cn.hunan.2023")
    await store.inputs.add_factor_version(
        msgspec.structs.replace(base, value=0.5, version=2, recorded_ms=DAY)
    )
    await store.inputs.add_factor_version(msgspec.structs.replace(base, value=0.6, version=2))
    versions = await store.inputs.load_factor_versions()
    assert [(f.version, f.value) for f in versions] == [(2, 0.5), (3, 0.6)]
    assert versions[0].recorded_ms == DAY
    assert versions[1].recorded_ms is not None
    library = FactorLibrary().with_overrides(tuple(versions))
    assert [(f.version, f.value) for f in library.history("grid.cn.hunan.2023")] == [
        (1, HUNAN_2023),
        (2, 0.5),
        (3, 0.6),
    ]
    [first, second] = await store.inputs.list_restatements(10)
    assert (first.reason, second.reason) == ("factor_revision", "factor_revision")


@pytest.mark.parametrize(
    ("method", "url", "body", "message_part"),
    [
        ("put", f"/api/v1/sites/{DC}/value-added/0001-01", {"value_cny": 1.0}, "outside 1973..2099"),
        ("put", f"/api/v1/sites/{DC}/value-added/9999-12", {"value_cny": 1.0}, "outside 1973..2099"),
        (
            "post",
            f"/api/v1/sites/{DC}/green-instruments",
            {"month": "2025-03", "kind": "certificate", "certificates": 10**400},
            "less than or equal",
        ),
        (
            "post",
            f"/api/v1/sites/{DC}/green-instruments",
            {"month": "2025-03", "kind": "contract", "kwh": 1e308},
            "less than or equal",
        ),
        ("get", f"/api/v1/sites/{DC}/kpis/1m/99999999999999999/revisions", None, "after 2100"),
        ("get", f"/api/v1/sites/{DC}/kpis?from=99999999999999990&to=99999999999999999", None, "after 2100"),
        (
            "post",
            f"/api/v1/sites/{DC}/meters/facility/replacements",
            {"ts": "0001-01-01T00:00:00+08:00", "old_final": 1, "new_initial": 0},
            "outside 1973..2099",
        ),
    ],
)
async def test_out_of_range_input_is_a_clear_422_not_a_500(
    client: httpx.AsyncClient, method: str, url: str, body: Any, message_part: str
) -> None:
    response = await client.request(method, url, json=body)
    assert response.status_code == 422, response.text
    assert message_part in response.text


async def test_nan_in_a_body_is_a_422(client: httpx.AsyncClient) -> None:
    # Python's JSON parser accepts the bare NaN token; the 422 must still encode
    response = await client.put(
        f"/api/v1/sites/{DC}/value-added/2025-03",
        content=b'{"value_cny": NaN}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "value_cny"]


async def test_twelve_month_revisions_are_addressed_by_their_first_month(
    client: httpx.AsyncClient, store: Store
) -> None:
    # a 12-month window starting 2025-03-01 local: the route accepts a month start, 404 as none is stored
    response = await client.get(f"/api/v1/sites/{DC}/kpis/12mo/2025-03-01T00:00:00+08:00/revisions")
    assert response.status_code == 404
    assert "no 12mo KPI window" in response.text


async def test_a_value_the_database_refuses_is_a_422_not_an_outage(client: httpx.AsyncClient) -> None:
    # PostgreSQL text cannot hold NUL; found by schemathesis (it was a 503 "database unavailable")
    body = {"id": "x.nul", "value": 1.0, "unit": "kg\u0000", "source": "s"}
    response = await client.post("/api/v1/factors", json=body)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"]
    assert "refused a value" in error["msg"]
