"""CSV download of KPI series (``GET /api/v1/sites/{site_id}/kpis.csv``) against a real, migrated
PostgreSQL store: the same windows and values as the JSON route, the whole range (no ``limit``),
column selection, refusals, site scope, and the file's headers."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.routes.kpis import CSV_FIELDS, content_disposition, kpi_window_chunks
from peakwatch.domain.access import AccessRole
from peakwatch.domain.models import ProcessedBatch
from peakwatch.domain.periods import Period
from peakwatch.store import Store
from tests.integration.test_api import (
    CST_JUNE_1_MS,
    DAY,
    HOUR,
    JUNE_1_MS,
    MIN,
    Sites,
    build_registry,
    five_windows,
    kpi_window,
    make_client,
    period_window,
)
from tests.support import bearer

pytestmark = pytest.mark.integration

CSV_TYPE = "text/csv; charset=utf-8"
BOM = b"\xef\xbb\xbf"


@pytest.fixture
async def sites(store: Store) -> Sites:
    seeded = build_registry(uuid.uuid4().hex[:8])
    await store.sync_registry(seeded.registry)
    return seeded


@pytest.fixture
async def client(store: Store, sites: Sites) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(store, sites.registry, await bearer(store)) as c:
        yield c


def parse(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CSV_TYPE
    assert not response.content.startswith(BOM)
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


def header(response: httpx.Response) -> list[str]:
    return next(csv.reader(io.StringIO(response.text, newline="")))


def same_value(cell: str, value: Any) -> bool:
    """A CSV cell carries exactly the JSON value: empty for null, the float read back unchanged."""
    return cell == "" if value is None else float(cell) == value


# ------------------------------------------------------------------------------------------ values


async def test_minutes_equal_the_json_route(store: Store, client: httpx.AsyncClient, sites: Sites) -> None:
    await store.write(ProcessedBatch(kpi_windows=five_windows(sites.dc)))
    params = {"from": JUNE_1_MS + MIN, "to": JUNE_1_MS + 4 * MIN}  # minutes 1, 2, 3
    path = f"/api/v1/sites/{sites.dc}/kpis"

    csv_response = await client.get(f"{path}.csv", params=params)
    rows = parse(csv_response)
    windows = (await client.get(path, params=params)).json()

    assert header(csv_response) == ["window_start", "window_end", "status", *CSV_FIELDS]
    assert csv_response.text.endswith("\r\n")
    assert len(rows) == len(windows) == 3
    for row, window in zip(rows, windows, strict=True):
        for field in CSV_FIELDS:
            assert same_value(row[field], window[field]), (field, row[field], window[field])
    # hand-checked: Asia/Shanghai local time, repr precision (no rounding), empty cells for nulls
    first = rows[0]
    assert first["window_start"] == "2024-06-01T08:01:00+08:00"
    assert first["window_end"] == "2024-06-01T08:02:00+08:00"
    assert [r["status"] for r in rows] == ["closed"] * 3  # 1m windows are never open
    assert first["facility_kwh"] == "101.0"
    assert first["pue"] == "1.01"  # 101 / 100
    assert first["completeness"] == "0.6666666666666666"  # 2 / 3, all 16 digits
    assert first["carbon_intensity_kg_per_kwh"] == "0.4976"
    assert first["revision"] == "0"
    assert first["max_demand_kw"] == ""  # null for 1m windows
    assert first["emissions_market_kg"] == ""  # needs monthly inputs


async def test_days_are_in_the_site_time_zone(store: Store, client: httpx.AsyncClient, sites: Sites) -> None:
    days = [
        period_window(
            sites,
            Period.DAY,
            CST_JUNE_1_MS + i * DAY,
            CST_JUNE_1_MS + (i + 1) * DAY,
            facility_kwh=f,
            it_kwh=1000.0,
        )
        for i, f in enumerate((1200.0, 1300.0))
    ]
    await store.write(ProcessedBatch(kpi_windows=days))
    params = {"period": "1d", "from": "2024-06-01T00:00:00+08:00", "to": "2024-06-03T00:00:00+08:00"}
    path = f"/api/v1/sites/{sites.dc}/kpis"

    rows = parse(await client.get(f"{path}.csv", params=params))
    windows = (await client.get(path, params=params)).json()

    assert [(r["window_start"], r["window_end"]) for r in rows] == [
        ("2024-06-01T00:00:00+08:00", "2024-06-02T00:00:00+08:00"),
        ("2024-06-02T00:00:00+08:00", "2024-06-03T00:00:00+08:00"),
    ]
    assert [r["pue"] for r in rows] == ["1.2", "1.3"]
    for row, window in zip(rows, windows, strict=True):
        assert all(same_value(row[f], window[f]) for f in CSV_FIELDS)


async def test_an_empty_range_is_the_header_alone(client: httpx.AsyncClient, sites: Sites) -> None:
    response = await client.get(
        f"/api/v1/sites/{sites.empty}/kpis.csv", params={"from": JUNE_1_MS, "to": JUNE_1_MS + HOUR}
    )
    assert parse(response) == []
    assert response.text == ",".join(["window_start", "window_end", "status", *CSV_FIELDS]) + "\r\n"


# ------------------------------------------------------------------------------------------ fields


async def test_fields_select_and_order_the_columns(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    await store.write(ProcessedBatch(kpi_windows=five_windows(sites.dc)))
    path = f"/api/v1/sites/{sites.dc}/kpis.csv"
    params = {"from": JUNE_1_MS, "to": JUNE_1_MS + 2 * MIN}

    response = await client.get(path, params={**params, "fields": "pue,carbon_intensity_kg_per_kwh"})
    assert response.text == (
        "window_start,window_end,status,pue,carbon_intensity_kg_per_kwh\r\n"
        "2024-06-01T08:00:00+08:00,2024-06-01T08:01:00+08:00,closed,1.0,0.4976\r\n"
        "2024-06-01T08:01:00+08:00,2024-06-01T08:02:00+08:00,closed,1.01,0.4976\r\n"
    )
    # the caller's order, spaces and repeats forgiven
    response = await client.get(path, params={**params, "fields": " it_kwh , facility_kwh,it_kwh"})
    assert header(response) == ["window_start", "window_end", "status", "it_kwh", "facility_kwh"]
    assert [r["facility_kwh"] for r in parse(response)] == ["100.0", "101.0"]


@pytest.mark.parametrize(
    ("fields", "message_part"),
    [
        ("pue,watts", "unknown field(s) 'watts'"),
        ("flags", "unknown field(s) 'flags'"),  # text, not a number: never exported
        ("window_start_ms", "unknown field(s) 'window_start_ms'"),
        (",", "no field named"),
        ("", "no field named"),
    ],
)
async def test_unknown_fields_are_refused_with_the_known_ones(
    client: httpx.AsyncClient, sites: Sites, fields: str, message_part: str
) -> None:
    response = await client.get(f"/api/v1/sites/{sites.dc}/kpis.csv", params={"fields": fields})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "fields"]
    assert message_part in error["msg"]
    assert "known fields: electricity_kwh, facility_kwh" in error["msg"]
    assert ", pue, " in error["msg"]


@pytest.mark.parametrize(
    ("params", "loc", "message_part"),
    [
        ({"from": JUNE_1_MS, "to": JUNE_1_MS + 31 * DAY + 1}, "to", "longer than the maximum 31 days"),
        ({"period": "1h", "from": JUNE_1_MS, "to": JUNE_1_MS + 1861 * DAY}, "to", "maximum 1860 days"),
        ({"from": "2024-06-01T00:00:00", "to": JUNE_1_MS + HOUR}, "from", "no UTC offset"),
        ({"from": JUNE_1_MS + MIN, "to": JUNE_1_MS}, "from", "must be before to"),
        ({"period": "2h"}, "period", "'1m', '15m', '1h', '1d', '1mo' or '12mo'"),
        ({"excel": "maybe"}, "excel", "valid boolean"),
    ],
)
async def test_bad_ranges_are_refused_like_the_json_route(
    client: httpx.AsyncClient, sites: Sites, params: dict[str, Any], loc: str, message_part: str
) -> None:
    response = await client.get(f"/api/v1/sites/{sites.dc}/kpis.csv", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", loc]
    assert message_part in error["msg"]


# ------------------------------------------------------------------------------------------ whole range


async def test_the_whole_range_with_no_limit_cut(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    """1500 minutes: more than the JSON route's default page (1440), all in the file."""
    count = 1500
    minutes = [
        kpi_window(sites.dc, JUNE_1_MS + i * MIN, facility_kwh=float(i), it_kwh=1.0) for i in range(count)
    ]
    await store.write(ProcessedBatch(kpi_windows=minutes))
    params = {"from": JUNE_1_MS, "to": JUNE_1_MS + 31 * DAY}  # exactly the longest range

    rows = parse(
        await client.get(f"/api/v1/sites/{sites.dc}/kpis.csv", params={**params, "fields": "facility_kwh"})
    )
    page = await client.get(f"/api/v1/sites/{sites.dc}/kpis", params=params)

    assert len(page.json()) == 1440
    assert "link" in page.headers
    assert len(rows) == count
    assert rows[-1]["window_start"] == "2024-06-02T08:59:00+08:00"  # 1499 min = 24 h 59 min after 08:00
    assert [float(r["facility_kwh"]) for r in rows] == [
        float(i) for i in range(count)
    ]  # in order, none twice


async def test_chunks_resume_after_the_last_window(store: Store, sites: Sites) -> None:
    await store.write(ProcessedBatch(kpi_windows=five_windows(sites.dc)))

    async def starts(chunk: int) -> list[list[int]]:
        chunks = kpi_window_chunks(store, sites.dc, Period.MINUTE, JUNE_1_MS, JUNE_1_MS + HOUR, chunk)
        return [[(w.start_ms - JUNE_1_MS) // MIN for w in c] async for c in chunks]

    assert await starts(2) == [[0, 1], [2, 3], [4]]
    assert await starts(5) == [[0, 1, 2, 3, 4]]  # a full chunk, then an empty query ends it
    assert await starts(100) == [[0, 1, 2, 3, 4]]


# ------------------------------------------------------------------------------------------ file, access


async def test_content_type_filename_and_excel_bom(client: httpx.AsyncClient, sites: Sites) -> None:
    path = f"/api/v1/sites/{sites.dc}/kpis.csv"
    params = {"period": "1h", "from": "2024-06-01T00:00:00+08:00", "to": "2024-06-02T00:00:00+08:00"}

    plain = await client.get(path, params=params)
    assert plain.headers["content-type"] == CSV_TYPE
    name = f"{sites.dc}_1h_20240601T000000+0800_20240602T000000+0800.csv"
    assert plain.headers["content-disposition"] == (
        f"attachment; filename=\"{name}\"; filename*=UTF-8''{name.replace('+', '%2B')}"
    )
    assert plain.content.startswith(b"window_start,")

    excel = await client.get(path, params={**params, "excel": "true"})
    assert excel.content == BOM + plain.content

    # a site on UTC time names its file in UTC
    utc = await client.get(
        f"/api/v1/sites/{sites.empty}/kpis.csv", params={"from": JUNE_1_MS, "to": JUNE_1_MS + HOUR}
    )
    assert (
        f"filename*=UTF-8''{sites.empty}_1m_20240601T000000%2B0000_20240601T010000%2B0000.csv"
        in (utc.headers["content-disposition"])
    )


def test_no_file_name_can_break_the_header() -> None:
    """Quotes, spaces and non-ASCII become ``_`` in the plain name; ``filename*`` keeps them, encoded."""
    assert content_disposition('园区 "A"_1d.csv') == (
        "attachment; filename=\"____A__1d.csv\"; filename*=UTF-8''%E5%9B%AD%E5%8C%BA%20%22A%22_1d.csv"
    )


async def test_credentials_scope_and_unknown_site(store: Store, sites: Sites) -> None:
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    async with make_client(store, sites.registry, viewer) as c:
        inside = await c.get(f"/api/v1/sites/{sites.dc}/kpis.csv")
        outside = await c.get(f"/api/v1/sites/{sites.park}/kpis.csv")
        unseen = await c.get("/api/v1/sites/no-such-site/kpis.csv")
        anonymous = await c.get(f"/api/v1/sites/{sites.dc}/kpis.csv", headers={"Authorization": ""})
    assert inside.status_code == 200
    assert inside.headers["content-type"] == CSV_TYPE
    assert outside.status_code == 403
    assert outside.json()["detail"] == f"site {sites.park!r} is outside your scope"
    assert unseen.status_code == 403  # outside the scope whether or not it exists
    assert anonymous.status_code == 401

    async with make_client(store, sites.registry, await bearer(store)) as admin:
        missing = await admin.get("/api/v1/sites/no-such-site/kpis.csv")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "unknown site 'no-such-site'"
