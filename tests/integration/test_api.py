"""The HTTP API against a real, migrated PostgreSQL store (httpx ASGI transport, no server).

Data is seeded through the store's own write path (``sync_registry``, ``write(ProcessedBatch)``), so
these tests also pin the read models the API builds on. Site ids carry a per-test suffix so the tests
hold whether or not the database is shared with other tests.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from api import ComponentStatus, HealthProbe, create_app
from peakwatch.config import Registry, Settings
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.kpis import WindowInputs, minute_components, window_kpis
from peakwatch.domain.models import (
    AlertChange,
    Carrier,
    DeadLetter,
    KpiWindow,
    Meter,
    MeterState,
    ProcessedBatch,
    Role,
    Site,
    SiteKind,
)
from peakwatch.domain.periods import Period
from peakwatch.store import Store
from peakwatch.store.restate import save_windows
from tests.support import bearer

pytestmark = pytest.mark.integration

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
JUNE_1_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z
HUNAN_2023 = 0.4976


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Sites:
    dc: str
    park: str
    empty: str
    registry: Registry


def build_registry(suffix: str) -> Sites:
    dc, park, empty = f"dc-{suffix}", f"park-{suffix}", f"empty-{suffix}"
    sites = [
        Site(id=dc, name="API data centre", kind=SiteKind.DATA_CENTRE),
        Site(id=park, name="API park", kind=SiteKind.PARK, grid_factor="grid.cn.central.2023"),
        Site(id=empty, name="No data yet", kind=SiteKind.DATA_CENTRE, timezone="UTC"),
    ]
    meters = [
        Meter(
            id="facility",
            site_id=dc,
            carrier=Carrier.ELECTRICITY,
            role=Role.FACILITY_TOTAL,
            register_max=999_999.99,
        ),
        Meter(id="it", site_id=dc, carrier=Carrier.ELECTRICITY, role=Role.IT_LOAD),
        Meter(id="cooling", site_id=dc, carrier=Carrier.ELECTRICITY, role=Role.COOLING),
        Meter(id="grid-in", site_id=park, carrier=Carrier.ELECTRICITY, role=Role.GRID_IMPORT),
        Meter(id="boiler-gas", site_id=park, carrier=Carrier.NATURAL_GAS, role=Role.BOILER, unit="m3"),
    ]
    return Sites(dc, park, empty, Registry(sites, meters))


def kpi_window(
    site_id: str, start_ms: int, *, facility_kwh: float, it_kwh: float, flags: tuple[str, ...] = ()
) -> KpiWindow:
    """A data-centre window fed by the grid only, computed by hand from the two energies."""
    emissions = facility_kwh * HUNAN_2023
    kgce = facility_kwh * 0.1229
    return KpiWindow(
        site_id=site_id,
        start_ms=start_ms,
        end_ms=start_ms + MIN,
        electricity_kwh=facility_kwh,
        facility_kwh=facility_kwh,
        it_kwh=it_kwh,
        renewable_generation_kwh=0.0,
        renewable_consumed_kwh=0.0,
        grid_import_kwh=0.0,
        grid_export_kwh=0.0,
        electricity_kgce=kgce,
        total_kgce=kgce,
        emissions_kg=emissions,
        electricity_emissions_kg=emissions,
        pue=facility_kwh / it_kwh,
        electrification_rate=1.0,
        carbon_intensity_kg_per_kwh=HUNAN_2023,
        green_power_share=0.0,
        completeness=2 / 3,
        flags=flags,
        interim=True,
    )


def five_windows(site_id: str) -> list[KpiWindow]:
    """Minutes 0..4 of 2024-06-01, facility 100..104 kWh."""
    return [kpi_window(site_id, JUNE_1_MS + i * MIN, facility_kwh=100.0 + i, it_kwh=100.0) for i in range(5)]


@pytest.fixture
async def sites(store: Store) -> Sites:
    seeded = build_registry(uuid.uuid4().hex[:8])
    await store.sync_registry(seeded.registry)
    return seeded


def make_client(
    app_store: Store, registry: Registry, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    app = create_app(app_store, registry, Settings(window_ms=MIN, allowed_lateness_ms=10_000), **kwargs)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://peakwatch.test", headers=headers
    )


@pytest.fixture
async def client(store: Store, sites: Sites) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(store, sites.registry, await bearer(store)) as c:
        yield c


# ------------------------------------------------------------------------------------------ health


def probe_of(*components: ComponentStatus) -> HealthProbe:
    def probe() -> Sequence[ComponentStatus]:
        return list(components)

    return probe


async def async_probe() -> Sequence[ComponentStatus]:
    return [ComponentStatus(name="processor", ok=True, detail="last write 0.4 s ago")]


def broken_probe() -> Sequence[ComponentStatus]:
    raise RuntimeError("probe exploded")


@pytest.mark.parametrize(
    ("probe", "status", "components"),
    [
        (None, "ok", []),
        (probe_of(ComponentStatus(name="mqtt", ok=True, detail="connected")), "ok", [("mqtt", True)]),
        (
            probe_of(
                ComponentStatus(name="mqtt", ok=False, detail="connected=False"),
                ComponentStatus(name="bus", ok=True, detail="lag=0"),
            ),
            "degraded",
            [("mqtt", False), ("bus", True)],
        ),
        (async_probe, "ok", [("processor", True)]),
        (broken_probe, "degraded", [("health_probe", False)]),
    ],
)
async def test_healthz_reports_database_and_components(
    store: Store, sites: Sites, probe: HealthProbe | None, status: str, components: list[tuple[str, bool]]
) -> None:
    async with make_client(store, sites.registry, health=probe) as c:
        response = await c.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == status
    assert body["database"]["name"] == "database"
    assert body["database"]["ok"] is True
    assert [(x["name"], x["ok"]) for x in body["components"]] == components
    if probe is broken_probe:
        assert "probe exploded" in body["components"][0]["detail"]


async def test_readyz_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["ready"] is True


async def test_database_down_is_degraded_and_not_ready(database_url: str, sites: Sites) -> None:
    closed = await Store.connect(database_url)
    await closed.close()
    probe = probe_of(ComponentStatus(name="bus", ok=True))
    # a well-formed token: checking it needs the database, which is the outage the client must see
    token = {"Authorization": "Bearer pwt_0123456789abcdef_" + "x" * 40}
    async with make_client(closed, sites.registry, token, health=probe) as c:
        health = await c.get("/healthz")
        ready = await c.get("/readyz")
        data = await c.get("/api/v1/sites")
    # liveness stays 200 (restarting would not bring the database back), and says what is wrong
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["database"]["ok"] is False
    assert health.json()["components"] == [{"name": "bus", "ok": True, "detail": ""}]
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    # a data route on a dead database is an outage (503, retry later), not a server bug (500)
    assert data.status_code == 503
    assert data.json()["detail"] == "database unavailable; retry later"  # no host or port: in the log
    assert data.headers["retry-after"] == "5"


# ------------------------------------------------------------------------------------------ sites


async def test_list_sites(client: httpx.AsyncClient, sites: Sites) -> None:
    response = await client.get("/api/v1/sites")
    assert response.status_code == 200
    by_id = {s["id"]: s for s in response.json()}
    assert by_id[sites.dc] == {
        "id": sites.dc,
        "name": "API data centre",
        "kind": "data_centre",
        "timezone": "Asia/Shanghai",
        "factor_set": "default",
        "grid_factor_id": "grid.cn.hunan.2023",  # the default set's grid slot
        "pue_category": None,  # the registry states none: "not stated", no category assumed
        "labels": {},
    }
    assert by_id[sites.park]["kind"] == "park"
    assert by_id[sites.park]["grid_factor_id"] == "grid.cn.central.2023"  # the site's own choice
    assert by_id[sites.empty]["timezone"] == "UTC"


async def test_site_detail_with_meters_and_grid_factor(client: httpx.AsyncClient, sites: Sites) -> None:
    response = await client.get(f"/api/v1/sites/{sites.park}")
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "park"
    assert body["timezone"] == "Asia/Shanghai"
    assert body["meters_count"] == 2
    assert body["meters_by_status"] == {"ok": 0, "stale": 0, "never": 2}
    factor = body["grid_factor"]
    assert factor["id"] == "grid.cn.central.2023"
    assert factor["value"] == 0.5271
    assert factor["unit"] == "kgCO2/kWh"
    assert factor["data_year"] == 2023
    assert "MEE/NBS" in factor["source"]
    assert factor["status"] == "verified"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sites/{x}",
        "/api/v1/sites/{x}/kpis/latest",
        "/api/v1/sites/{x}/kpis",
        "/api/v1/sites/{x}/kpis?period=1d",
        "/api/v1/sites/{x}/kpis/1h/1717200000000/revisions",
        "/api/v1/sites/{x}/meters",
        "/api/v1/sites/{x}/green-instruments",
        "/api/v1/sites/{x}/value-added",
        "/api/v1/sites/{x}/targets",
        "/api/v1/sites/{x}/targets/progress",
        "/api/v1/alerts?site_id={x}",
    ],
)
async def test_unknown_site_is_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path.format(x="no-such-site"))
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown site 'no-such-site'"}


# ------------------------------------------------------------------------------------------ KPIs


async def test_latest_kpis_404_until_a_window_closes(client: httpx.AsyncClient, sites: Sites) -> None:
    response = await client.get(f"/api/v1/sites/{sites.empty}/kpis/latest")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"no closed 1m KPI window yet for site '{sites.empty}'; a 60 s window closes 10 s after its end "
        "once readings for it have arrived"
    )
    response = await client.get(f"/api/v1/sites/{sites.empty}/kpis/latest", params={"period": "1mo"})
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"no closed 1mo KPI window yet for site '{sites.empty}'; a 1mo window is stored once every minute "
        "in it has closed"
    )


async def test_latest_kpis_is_the_later_of_two_windows(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    later = kpi_window(sites.dc, JUNE_1_MS + MIN, facility_kwh=1350.0, it_kwh=1000.0, flags=("reset",))
    earlier = kpi_window(sites.dc, JUNE_1_MS, facility_kwh=1200.0, it_kwh=1000.0)
    await store.write(ProcessedBatch(kpi_windows=[later, earlier]))

    response = await client.get(f"/api/v1/sites/{sites.dc}/kpis/latest")
    assert response.status_code == 200
    body = response.json()
    assert body["window_start"] == "2024-06-01T00:01:00Z"
    assert body["window_end"] == "2024-06-01T00:02:00Z"
    assert body["window_start_ms"] == JUNE_1_MS + MIN
    assert body["window_end_ms"] == JUNE_1_MS + 2 * MIN
    assert body["pue"] == 1.35
    assert body["facility_kwh"] == 1350.0
    assert body["it_kwh"] == 1000.0
    assert body["electricity_kwh"] == 1350.0
    assert body["emissions_kg"] == pytest.approx(671.76)  # 1350 kWh x 0.4976
    assert body["carbon_intensity_kg_per_kwh"] == HUNAN_2023
    assert body["electrification_rate"] == 1.0
    assert body["green_power_share"] == 0.0
    assert body["electricity_kgce"] == pytest.approx(165.915)  # 1350 x 0.1229
    assert body["completeness"] == pytest.approx(2 / 3)
    assert body["flags"] == ["reset"]
    assert body["period"] == "1m"
    assert body["pue_category"] is None  # not stated in the registry
    assert body["revision"] == 0
    assert body["max_demand_kw"] is None
    assert body["emissions_market_kg"] is None  # needs monthly inputs
    assert body["interim"] is True
    assert "ISO/IEC 30134-2" in body["interim_note"]
    assert "1-minute window (1m)" in body["interim_note"]


async def test_kpi_series_range_is_from_inclusive_to_exclusive(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    await store.write(ProcessedBatch(kpi_windows=five_windows(sites.dc)))
    path = f"/api/v1/sites/{sites.dc}/kpis"

    # epoch ms: windows starting at minutes 1, 2, 3 (4 is excluded: to is exclusive)
    response = await client.get(path, params={"from": JUNE_1_MS + MIN, "to": JUNE_1_MS + 4 * MIN})
    assert response.status_code == 200
    assert [w["window_start_ms"] for w in response.json()] == [JUNE_1_MS + i * MIN for i in (1, 2, 3)]
    assert [w["facility_kwh"] for w in response.json()] == [101.0, 102.0, 103.0]
    assert "link" not in response.headers

    # the same instants as RFC 3339 in China Standard Time
    cst = {"from": "2024-06-01T08:01:00+08:00", "to": "2024-06-01T00:04:00Z"}
    response = await client.get(path, params=cst)
    assert [w["window_start_ms"] for w in response.json()] == [JUNE_1_MS + i * MIN for i in (1, 2, 3)]


async def test_kpi_series_limit_links_to_the_next_page(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    await store.write(ProcessedBatch(kpi_windows=five_windows(sites.dc)))
    path = f"/api/v1/sites/{sites.dc}/kpis"

    seen: list[int] = []
    url: str | None = f"{path}?from={JUNE_1_MS}&to={JUNE_1_MS + HOUR}&limit=2"
    pages = 0
    while url is not None:
        response = await client.get(url)
        assert response.status_code == 200
        seen += [w["window_start_ms"] for w in response.json()]
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else None
        pages += 1
    assert seen == [JUNE_1_MS + i * MIN for i in range(5)]
    assert pages == 3  # 2 + 2 + 1


async def test_kpi_series_defaults_to_the_last_hour(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    now = now_ms()
    recent = now - now % MIN - 30 * MIN
    old = recent - 2 * HOUR
    await store.write(
        ProcessedBatch(
            kpi_windows=[
                kpi_window(sites.dc, recent, facility_kwh=10.0, it_kwh=8.0),
                kpi_window(sites.dc, old, facility_kwh=10.0, it_kwh=8.0),
            ]
        )
    )
    response = await client.get(f"/api/v1/sites/{sites.dc}/kpis")
    assert response.status_code == 200
    assert [w["window_start_ms"] for w in response.json()] == [recent]


@pytest.mark.parametrize(
    ("params", "loc", "message_part"),
    [
        ({"from": JUNE_1_MS + MIN, "to": JUNE_1_MS + MIN}, "from", "must be before to"),
        ({"from": JUNE_1_MS + 2 * MIN, "to": JUNE_1_MS}, "from", "must be before to"),
        ({"from": "2024-06-01T00:00:00", "to": JUNE_1_MS + HOUR}, "from", "no UTC offset"),
        ({"from": JUNE_1_MS, "to": "2024-06-01T01:00:00"}, "to", "no UTC offset"),
        ({"from": "last tuesday"}, "from", "neither RFC 3339"),
        ({"from": "1717200000", "to": JUNE_1_MS}, "from", "epoch seconds"),
        # an unencoded '+' arrives as a space
        ({"from": "2024-06-01T08:00:00 08:00", "to": JUNE_1_MS + HOUR}, "from", "%2B"),
        ({"from": JUNE_1_MS, "to": JUNE_1_MS + 32 * 24 * HOUR}, "to", "longer than the maximum 31 days"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"limit": "many"}, "limit", "valid integer"),
    ],
)
async def test_kpi_series_refuses_bad_ranges(
    client: httpx.AsyncClient, sites: Sites, params: dict[str, Any], loc: str, message_part: str
) -> None:
    response = await client.get(f"/api/v1/sites/{sites.dc}/kpis", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", loc]
    assert message_part in error["msg"]


async def test_kpi_series_reports_every_bad_parameter(client: httpx.AsyncClient, sites: Sites) -> None:
    response = await client.get(f"/api/v1/sites/{sites.dc}/kpis", params={"from": "soon", "to": "later"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", "from"], ["query", "to"]]


async def test_kpi_series_accepts_exactly_31_days(client: httpx.AsyncClient, sites: Sites) -> None:
    response = await client.get(
        f"/api/v1/sites/{sites.dc}/kpis", params={"from": JUNE_1_MS, "to": JUNE_1_MS + 31 * 24 * HOUR}
    )
    assert response.status_code == 200
    assert response.json() == []


def period_window(
    sites: Sites, period: Period, start_ms: int, end_ms: int, *, facility_kwh: float, it_kwh: float
) -> KpiWindow:
    """A data-centre window of any period, computed from components as the processor does."""
    meters = [m for m in sites.registry.site_meters(sites.dc)]
    components = minute_components(meters, {"facility": facility_kwh, "it": it_kwh, "cooling": 0.0})
    inputs = WindowInputs(
        kind=SiteKind.DATA_CENTRE, factors=FactorLibrary().resolve("default"), period=period
    )
    return window_kpis(sites.dc, start_ms, end_ms, components, inputs)


CST_JUNE_1_MS = JUNE_1_MS - 8 * HOUR  # 2024-06-01T00:00:00+08:00


async def test_kpi_series_of_days(store: Store, client: httpx.AsyncClient, sites: Sites) -> None:
    days = [
        period_window(
            sites,
            Period.DAY,
            CST_JUNE_1_MS + i * DAY,
            CST_JUNE_1_MS + (i + 1) * DAY,
            facility_kwh=f,
            it_kwh=1000.0,
        )
        for i, f in enumerate((1200.0, 1300.0, 1250.0))
    ]
    minute = kpi_window(sites.dc, JUNE_1_MS, facility_kwh=20.0, it_kwh=16.0)
    await store.write(ProcessedBatch(kpi_windows=[*days, minute]))
    path = f"/api/v1/sites/{sites.dc}/kpis"
    local_days = {"from": "2024-06-01T00:00:00+08:00", "to": "2024-06-04T00:00:00+08:00"}

    response = await client.get(path, params={**local_days, "period": "1d"})
    assert response.status_code == 200
    body = response.json()
    assert [w["window_start"] for w in body] == [
        "2024-05-31T16:00:00Z",
        "2024-06-01T16:00:00Z",
        "2024-06-02T16:00:00Z",
    ]
    assert [w["period"] for w in body] == ["1d"] * 3
    assert [w["facility_kwh"] for w in body] == [1200.0, 1300.0, 1250.0]
    assert [w["pue"] for w in body] == [1.2, 1.3, 1.25]
    first = body[0]
    assert first["window_end_ms"] - first["window_start_ms"] == DAY
    assert first["emissions_kg"] == pytest.approx(1200 * HUNAN_2023)
    assert first["components"]["facility_kwh"] == 1200.0
    assert first["factors_used"]["grid"] == "grid.cn.hunan.2023@1"
    assert first["gb40879_grade"] == "1"  # 1.2 <= 1.20
    assert first["completeness"] == 1.0
    assert "1-day window (1d)" in first["interim_note"]

    # the default period is 1m: the same range holds only the minute window
    minutes = (await client.get(path, params=local_days)).json()
    assert [(w["period"], w["facility_kwh"]) for w in minutes] == [("1m", 20.0)]

    latest = await client.get(f"{path}/latest", params={"period": "1d"})
    assert latest.json()["window_start"] == "2024-06-02T16:00:00Z"


@pytest.mark.parametrize(
    ("params", "status", "message_part"),
    [
        ({"period": "1d", "from": JUNE_1_MS, "to": JUNE_1_MS + 400 * DAY}, 200, ""),
        ({"period": "1h", "from": JUNE_1_MS, "to": JUNE_1_MS + 1861 * DAY}, 422, "maximum 1860 days"),
        ({"period": "15m", "from": JUNE_1_MS, "to": JUNE_1_MS + 466 * DAY}, 422, "maximum 465 days"),
        ({"period": "2h"}, 422, "'1m', '15m', '1h', '1d', '1mo' or '12mo'"),
    ],
)
async def test_kpi_series_range_scales_with_the_period(
    client: httpx.AsyncClient, sites: Sites, params: dict[str, Any], status: int, message_part: str
) -> None:
    response = await client.get(f"/api/v1/sites/{sites.dc}/kpis", params=params)
    assert response.status_code == status
    if status == 422:
        [error] = response.json()["detail"]
        assert message_part in error["msg"]
    else:
        assert response.json() == []


async def test_kpi_revisions(store: Store, client: httpx.AsyncClient, sites: Sites) -> None:
    hour = period_window(sites, Period.HOUR, JUNE_1_MS, JUNE_1_MS + HOUR, facility_kwh=100.0, it_kwh=80.0)
    await store.write(ProcessedBatch(kpi_windows=[hour]))
    restated = period_window(sites, Period.HOUR, JUNE_1_MS, JUNE_1_MS + HOUR, facility_kwh=110.0, it_kwh=80.0)
    async with store.transaction("restating") as conn:
        assert await save_windows(conn, [restated], "late_data", "3 late readings") == 1

    path = f"/api/v1/sites/{sites.dc}/kpis/1h/2024-06-01T08:00:00+08:00/revisions"
    response = await client.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current"]["facility_kwh"] == 110.0
    assert body["current"]["pue"] == 1.375
    assert body["current"]["revision"] == 1
    [earlier] = body["revisions"]
    assert (earlier["revision"], earlier["reason"], earlier["detail"]) == (0, "late_data", "3 late readings")
    assert earlier["causes"] == [{"request_id": None, "reason": "late_data", "detail": "3 late readings"}]
    assert earlier["previous"]["facility_kwh"] == 100.0
    assert earlier["previous"]["pue"] == 1.25
    assert earlier["previous"]["revision"] == 0
    assert earlier["replaced_at"].endswith("Z")

    # epoch ms address the same window
    by_ms = await client.get(f"/api/v1/sites/{sites.dc}/kpis/1h/{JUNE_1_MS}/revisions")
    assert by_ms.json() == body


@pytest.mark.parametrize(
    ("path", "status", "message_part"),
    [
        ("1h/2024-06-01T08:30:00+08:00", 422, "the window containing it starts at 2024-06-01T00:00:00Z"),
        # a day starts at local midnight: 00:00Z is 08:00 in Asia/Shanghai
        ("1d/2024-06-01T00:00:00Z", 422, "not the start of a 1d window in Asia/Shanghai"),
        ("1h/yesterday", 422, "neither RFC 3339"),
        ("2h/1717200000000", 422, "'1m', '15m', '1h', '1d', '1mo' or '12mo'"),
        ("1h/1717200000000", 404, "no 1h KPI window starting at 1717200000000 ms"),
    ],
)
async def test_kpi_revisions_refusals(
    client: httpx.AsyncClient, sites: Sites, path: str, status: int, message_part: str
) -> None:
    response = await client.get(f"/api/v1/sites/{sites.dc}/kpis/{path}/revisions")
    assert response.status_code == status
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(e["msg"] for e in detail)
    assert message_part in text


# ------------------------------------------------------------------------------------------ meters


async def test_meters_last_seen_and_status(store: Store, client: httpx.AsyncClient, sites: Sites) -> None:
    now = now_ms()
    await store.write(
        ProcessedBatch(
            meter_states=[
                MeterState(
                    site_id=sites.dc,
                    meter_id="facility",
                    last_ts_ms=JUNE_1_MS,
                    last_value=1234.5,
                    last_seen_ms=now - 1_000,
                ),
                MeterState(
                    site_id=sites.dc,
                    meter_id="it",
                    last_ts_ms=JUNE_1_MS - MIN,
                    last_value=800.0,
                    last_seen_ms=now - 10 * MIN,
                ),
            ]
        )
    )
    response = await client.get(f"/api/v1/sites/{sites.dc}/meters")
    assert response.status_code == 200
    by_id = {m["id"]: m for m in response.json()}
    assert set(by_id) == {"facility", "it", "cooling"}

    facility = by_id["facility"]
    assert facility["status"] == "ok"
    assert facility["carrier"] == "electricity"
    assert facility["role"] == "facility_total"
    assert facility["register"] == "cumulative"
    assert facility["unit"] == "kWh"
    assert facility["register_max"] == 999_999.99
    assert facility["last_seen_ms"] == now - 1_000
    assert facility["last_seen"].endswith("Z")
    assert facility["last_reading_ts"] == "2024-06-01T00:00:00Z"
    assert facility["last_reading_ts_ms"] == JUNE_1_MS
    assert facility["last_value"] == 1234.5

    assert by_id["it"]["status"] == "stale"
    assert by_id["it"]["last_seen_ms"] == now - 10 * MIN
    assert by_id["cooling"]["status"] == "never"
    assert by_id["cooling"]["last_seen"] is None
    assert by_id["cooling"]["last_reading_ts"] is None

    detail = (await client.get(f"/api/v1/sites/{sites.dc}")).json()
    assert detail["meters_count"] == 3
    assert detail["meters_by_status"] == {"ok": 1, "stale": 1, "never": 1}


# ------------------------------------------------------------------------------------------ alerts


def alert(site_id: str, state: str, *, rule: str, at_ms: int, value: float) -> AlertChange:
    return AlertChange(
        fingerprint=f"{rule}/{site_id}",
        rule=rule,
        site_id=site_id,
        state=state,
        severity="critical",
        summary=f"{rule} breached",
        value=value,
        started_ms=JUNE_1_MS,
        at_ms=at_ms,
    )


async def test_alerts_filtered_by_site_and_state(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    await store.write(
        ProcessedBatch(
            alerts=[
                alert(sites.dc, "firing", rule="pue_high", at_ms=JUNE_1_MS + 5 * MIN, value=1.6),
                alert(sites.dc, "pending", rule="completeness_low", at_ms=JUNE_1_MS + MIN, value=0.5),
                alert(sites.park, "firing", rule="carbon_high", at_ms=JUNE_1_MS + 5 * MIN, value=0.6),
            ]
        )
    )
    await store.write(
        ProcessedBatch(
            alerts=[
                alert(sites.park, "resolved", rule="carbon_high", at_ms=JUNE_1_MS + 9 * MIN, value=0.4),
            ]
        )
    )

    response = await client.get("/api/v1/alerts", params={"site_id": sites.dc})
    assert response.status_code == 200
    assert sorted(a["rule"] for a in response.json()) == ["completeness_low", "pue_high"]

    response = await client.get("/api/v1/alerts", params={"site_id": sites.dc, "state": "firing"})
    [firing] = response.json()
    assert firing["rule"] == "pue_high"
    assert firing["state"] == "firing"
    assert firing["severity"] == "critical"
    assert firing["summary"] == "pue_high breached"
    assert firing["value"] == 1.6
    assert firing["started_at"] == "2024-06-01T00:00:00Z"
    assert firing["started_ms"] == JUNE_1_MS
    assert firing["fired_ms"] is not None
    assert firing["resolved_at"] is None

    response = await client.get("/api/v1/alerts", params={"site_id": sites.park, "state": "resolved"})
    [resolved] = response.json()
    assert resolved["rule"] == "carbon_high"
    assert resolved["resolved_ms"] == JUNE_1_MS + 9 * MIN
    assert resolved["resolved_at"] == "2024-06-01T00:09:00Z"

    response = await client.get("/api/v1/alerts", params={"site_id": sites.park, "state": "pending"})
    assert response.json() == []

    response = await client.get("/api/v1/alerts", params={"site_id": sites.dc, "limit": 1})
    assert len(response.json()) == 1


@pytest.mark.parametrize(
    "params", [{"state": "exploded"}, {"state": "inactive"}, {"limit": 0}, {"limit": 1001}]
)
async def test_alerts_refuse_bad_filters(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await client.get("/api/v1/alerts", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", next(iter(params))]


# ------------------------------------------------------------------------------------------ dead letters


async def test_dead_letters_text_binary_and_truncated(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    reason = f"test_{uuid.uuid4().hex[:8]}"
    binary = bytes([0x08, 0x96, 0x01, 0xFF, 0xFE, 0x00])
    big = b'{"ts": 1, "pad": "' + b"x" * 5000 + b'"}'
    await store.write(
        ProcessedBatch(
            dead_letters=[
                DeadLetter(
                    received_ms=JUNE_1_MS + 1,
                    source="telemetry/x/y",
                    reason=reason,
                    detail="not JSON",
                    payload=b"{not json",
                    site_id=sites.dc,
                    meter_id="facility",
                ),
                DeadLetter(
                    received_ms=JUNE_1_MS + 2,
                    source="spBv1.0/g/DDATA/n",
                    reason=reason,
                    detail="protobuf",
                    payload=binary,
                ),
                DeadLetter(
                    received_ms=JUNE_1_MS + 3,
                    source="telemetry/x/y",
                    reason=reason,
                    detail="too big",
                    payload=big,
                ),
                DeadLetter(
                    received_ms=JUNE_1_MS + 4,
                    source="telemetry/x/y",
                    reason=f"{reason}_other",
                    detail="",
                    payload=b"{}",
                ),
            ]
        )
    )

    response = await client.get("/api/v1/dead-letters", params={"reason": reason})
    assert response.status_code == 200
    rows = response.json()
    assert [r["detail"] for r in rows] == ["too big", "protobuf", "not JSON"]  # newest first

    truncated, protobuf, text = rows
    assert text["payload"] == "{not json"
    assert text["payload_encoding"] == "utf-8"
    assert text["payload_truncated"] is False
    assert text["payload_size_bytes"] == 9
    assert (text["site_id"], text["meter_id"], text["source"]) == (sites.dc, "facility", "telemetry/x/y")
    assert text["received_at"] == "2024-06-01T00:00:00.001000Z"
    assert text["received_ms"] == JUNE_1_MS + 1

    assert protobuf["payload_encoding"] == "base64"
    assert base64.b64decode(protobuf["payload"]) == binary
    assert protobuf["site_id"] is None

    assert truncated["payload_truncated"] is True
    assert truncated["payload_size_bytes"] == len(big)
    assert truncated["payload"] == big[:4096].decode()

    response = await client.get("/api/v1/dead-letters", params={"reason": reason, "limit": 1})
    assert [r["detail"] for r in response.json()] == ["too big"]


# ------------------------------------------------------------------------------------------ metrics, docs


async def test_metrics_exposes_the_given_registry(store: Store, sites: Sites) -> None:
    registry = CollectorRegistry()
    counter = Counter("peakwatch_test_readings", "Readings accepted.", registry=registry)
    counter.inc(3)
    async with make_client(store, sites.registry, metrics_registry=registry) as c:
        response = await c.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "peakwatch_test_readings_total 3.0" in response.text


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    schema = await client.get("/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/sites/{site_id}/kpis/latest" in schema.json()["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
