"""Dead letters through the API on a real PostgreSQL: counted, filtered, paged by key, counted by
reason and site, within the caller's scope (docs/api.md, "Dead letters").

2,500 letters are written in a time range of their own (a random base instant), five per millisecond
so that the key's tie-break on ``id`` is exercised, with reasons, sites and meters by residue of the
letter's number ``i`` (0..2499), so every expected count is arithmetic written in the test:

* reason A when ``i % 5 < 3`` (1,500), else B (1,000);
* site dc when ``i % 4`` is 0 (meter ``facility``) or 2 (meter ``it``): 1,250; park when 1: 625;
  no site when 3: 625.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from peakwatch.domain.access import AccessRole
from peakwatch.domain.models import DeadLetter, ProcessedBatch
from peakwatch.store import Store
from tests.integration.test_api import Sites, build_registry, make_client
from tests.support import bearer

pytestmark = pytest.mark.integration

N = 2_500
URL = "/api/v1/dead-letters"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Letters:
    base_ms: int
    reason_a: str
    reason_b: str
    sites: Sites

    @property
    def whole_range(self) -> dict[str, int]:
        return {"from": self.base_ms, "to": self.base_ms + N // 5 * 1000}


def site_of(i: int, sites: Sites) -> tuple[str | None, str | None]:
    return {0: (sites.dc, "facility"), 1: (sites.park, "grid-in"), 2: (sites.dc, "it"), 3: (None, None)}[
        i % 4
    ]


@pytest.fixture
async def sites(store: Store) -> Sites:
    seeded = build_registry(uuid.uuid4().hex[:8])
    await store.sync_registry(seeded.registry)
    return seeded


@pytest.fixture
async def letters(store: Store, sites: Sites) -> Letters:
    suffix = uuid.uuid4().hex[:8]
    # a range no other test writes in: 2030 plus a random number of days
    seeded = Letters(
        1_900_000_000_000 + random.randrange(10_000) * 86_400_000, f"a_{suffix}", f"b_{suffix}", sites
    )
    batch = []
    for i in range(N):
        site, meter = site_of(i, sites)
        batch.append(
            DeadLetter(
                received_ms=seeded.base_ms + i // 5 * 1000,
                source=f"telemetry/{site or 'nowhere'}/{meter or 'x'}",
                reason=seeded.reason_a if i % 5 < 3 else seeded.reason_b,
                detail=f"letter {i}",
                payload=b"{}",
                site_id=site,
                meter_id=meter,
            )
        )
    await store.write(ProcessedBatch(dead_letters=batch))
    return seeded


@pytest.fixture
async def admin(store: Store, sites: Sites) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(store, sites.registry, await bearer(store)) as c:
        yield c


async def all_pages(
    client: httpx.AsyncClient, params: dict[str, str | int]
) -> tuple[list[dict[str, Any]], list[int]]:
    """Every letter, following Link headers; and the X-Total-Count of each page."""
    rows: list[dict[str, Any]] = []
    totals: list[int] = []
    response = await client.get(URL, params=params)
    while True:
        assert response.status_code == 200, response.text
        rows += response.json()
        totals.append(int(response.headers["x-total-count"]))
        if "link" not in response.headers:
            return rows, totals
        assert len(totals) < 10, "the Link headers do not end"
        response = await client.get(response.links["next"]["url"])


async def test_paging_2500_letters_by_1000_yields_each_once_in_order(
    store: Store, letters: Letters, admin: httpx.AsyncClient
) -> None:
    params: dict[str, str | int] = {**letters.whole_range, "limit": 1000}
    first = await admin.get(URL, params=params)
    assert first.status_code == 200
    assert first.headers["x-total-count"] == str(N)
    assert len(first.json()) == 1000
    # a letter arriving while a client pages is newer than its cursor: never shown in a later page
    newest = letters.base_ms + N // 5 * 1000 - 1
    await store.write(
        ProcessedBatch(
            dead_letters=[
                DeadLetter(
                    received_ms=newest, source="t", reason=letters.reason_b, detail="late", payload=b""
                )
            ]
        )
    )
    rows = first.json()
    totals = [N]
    response = await admin.get(first.links["next"]["url"])
    while True:
        assert response.status_code == 200, response.text
        rows += response.json()
        totals.append(int(response.headers["x-total-count"]))
        if "link" not in response.headers:
            break
        response = await admin.get(response.links["next"]["url"])

    assert totals == [N, N + 1, N + 1]  # pages of 1000, 1000, 500; the total counts the new letter
    assert [r["detail"] for r in rows] == [f"letter {i}" for i in _newest_first()]
    assert len({r["id"] for r in rows}) == N


def _newest_first() -> list[int]:
    """Letters were written in order, so within one millisecond the larger ``i`` has the larger id."""
    return sorted(range(N), key=lambda i: (i // 5, i), reverse=True)


async def test_filters_combine(letters: Letters, admin: httpx.AsyncClient) -> None:
    sites = letters.sites
    # i in [500, 1500) (milliseconds 100..299), reason A (i % 5 < 3), site dc meter facility (i % 4 == 0):
    # residues mod 20 with i % 4 == 0 are 0, 4, 8, 12, 16, of which 0, 12, 16 have i % 5 < 3: 3 in 20,
    # so 1000 * 3 / 20 = 150 letters
    params: dict[str, str | int] = {
        "reason": letters.reason_a,
        "site_id": sites.dc,
        "meter_id": "facility",
        "from": letters.base_ms + 100_000,
        "to": letters.base_ms + 300_000,
        "limit": 100,
    }
    rows, totals = await all_pages(admin, params)
    assert totals == [150, 150]
    expected = [i for i in _newest_first() if 500 <= i < 1500 and i % 20 in (0, 12, 16)]
    assert [r["detail"] for r in rows] == [f"letter {i}" for i in expected]
    # the same instants as RFC 3339 with an offset
    as_text = {
        **params,
        "from": _rfc3339(letters.base_ms + 100_000),
        "to": _rfc3339(letters.base_ms + 300_000),
    }
    response = await admin.get(URL, params=as_text)
    assert response.headers["x-total-count"] == "150"
    # one source (a topic): dc's meter it, i % 4 == 2, i.e. 625 letters over the whole range
    topic = await admin.get(
        URL, params={**letters.whole_range, "source": f"telemetry/{sites.dc}/it", "limit": 1}
    )
    assert topic.headers["x-total-count"] == "625"


def _rfc3339(ms: int) -> str:
    """The instant in China Standard Time, e.g. ``2030-03-17T23:33:20+08:00``."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).astimezone(SHANGHAI).isoformat()


async def test_counts_by_reason_and_site(letters: Letters, admin: httpx.AsyncClient) -> None:
    sites = letters.sites
    response = await admin.get(f"{URL}/counts", params=letters.whole_range)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == N
    assert body["from_ms"] == letters.base_ms
    assert body["by_reason"] == [
        {"reason": letters.reason_a, "count": 1500},
        {"reason": letters.reason_b, "count": 1000},
    ]
    assert body["by_site"] == [
        {"site_id": sites.dc, "count": 1250},
        # 625 each: no site sorts first among equals
        {"site_id": None, "count": 625},
        {"site_id": sites.park, "count": 625},
    ]
    # (site, A): dc is i even with i % 5 < 3: residues 0, 2, 6 of 10 -> 750; park i % 4 == 1: residues
    # 1, 5, 17 of 20 -> 375; no site i % 4 == 3: residues 7, 11, 15 of 20 -> 375; B is the rest of each
    groups = {(g["site_id"], g["reason"]): g["count"] for g in body["groups"]}
    a, b = letters.reason_a, letters.reason_b
    assert groups == {
        (sites.dc, a): 750,
        (sites.dc, b): 500,
        (sites.park, a): 375,
        (sites.park, b): 250,
        (None, a): 375,
        (None, b): 250,
    }
    # filtered: reason B in milliseconds 0..99 (i < 500): 2 of every 5 -> 200
    narrow = await admin.get(
        f"{URL}/counts",
        params={"from": letters.base_ms, "to": letters.base_ms + 100_000, "reason": b},
    )
    assert narrow.json()["by_reason"] == [{"reason": b, "count": 200}]


@pytest.mark.parametrize(
    ("role", "scope", "visible"),
    [
        (AccessRole.ADMIN, None, {"dc": 1250, "park": 625, None: 625}),
        (AccessRole.OPERATOR, None, {"dc": 1250, "park": 625}),  # no-site letters: admins of every site
        (AccessRole.VIEWER, ("dc",), {"dc": 1250}),
        (AccessRole.ADMIN, ("park",), {"park": 625}),
    ],
)
async def test_scope(
    store: Store,
    letters: Letters,
    role: AccessRole,
    scope: tuple[str, ...] | None,
    visible: dict[str | None, int],
) -> None:
    sites = letters.sites
    names = {"dc": sites.dc, "park": sites.park, None: None}
    site_ids = None if scope is None else tuple(names[s] for s in scope)
    headers = await bearer(store, role, site_ids)
    async with make_client(store, sites.registry, headers) as client:
        rows, totals = await all_pages(client, {**letters.whole_range, "limit": 1000})
        counts = (await client.get(f"{URL}/counts", params=letters.whole_range)).json()
        outside = await client.get(URL, params={"site_id": sites.park if scope == ("dc",) else sites.dc})
    expected = {names[k]: n for k, n in visible.items()}
    assert totals[0] == sum(expected.values())
    seen: dict[str | None, int] = {}
    for r in rows:
        seen[r["site_id"]] = seen.get(r["site_id"], 0) + 1
    assert seen == expected
    assert {s["site_id"]: s["count"] for s in counts["by_site"]} == expected
    assert outside.status_code == (200 if scope is None else 403)


@pytest.mark.parametrize(
    ("params", "where", "message"),
    [
        ({"offset": "1000"}, "offset", "page with cursor"),
        ({"before_id": "5"}, "before_id", "page with cursor"),
        ({"cursor": "12"}, "cursor", "Link header"),
        ({"cursor": "1717200000000.9999999999999999999"}, "cursor", "Link header"),  # over bigint
        ({"from": "2024-06-01T00:00:00"}, "from", "no UTC offset"),
        ({"from": "1717200000001", "to": "1717200000000"}, "from", "must be before"),
        ({"limit": "1001"}, "limit", "less than or equal to 1000"),
    ],
)
async def test_refusals_name_the_parameter(
    admin: httpx.AsyncClient, params: dict[str, str], where: str, message: str
) -> None:
    response = await admin.get(URL, params=params)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", where]
    assert message in error["msg"]


async def test_counts_refuse_paging_parameters(admin: httpx.AsyncClient) -> None:
    response = await admin.get(f"{URL}/counts", params={"limit": "5"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]
