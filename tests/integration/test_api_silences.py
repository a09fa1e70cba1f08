"""Silences and the delivery log through the API, on a real migrated PostgreSQL (httpx ASGI transport).

A user whose scope is not every site only sees, makes and ends silences naming one of their sites
(``site="<id>"``), and only sees deliveries about their sites; every change is audited.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from peakwatch.domain.access import AccessRole
from peakwatch.domain.routing import MatchOp
from peakwatch.store import Store
from peakwatch.store.notify import silence_of
from peakwatch.store.records import Delivery
from tests.integration.test_api import Sites, build_registry, make_client
from tests.support import bearer

pytestmark = pytest.mark.integration

HOUR = 3_600_000
DAY = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def sites(store: Store) -> Sites:
    seeded = build_registry(uuid.uuid4().hex[:8])
    await store.sync_registry(seeded.registry)
    return seeded


@pytest.fixture
async def client(store: Store, sites: Sites) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(store, sites.registry) as c:
        yield c


@pytest.fixture
async def admin(store: Store) -> dict[str, str]:
    return await bearer(store)


async def _silence(
    client: httpx.AsyncClient, headers: dict[str, str], *matchers: str, **body: Any
) -> httpx.Response:
    return await client.post("/api/v1/silences", headers=headers, json={"matchers": list(matchers), **body})


async def _made(
    client: httpx.AsyncClient, headers: dict[str, str], *matchers: str, **body: Any
) -> dict[str, Any]:
    response = await _silence(client, headers, *matchers, **{"duration": "2h", **body})
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def _last_audit(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    entries = (await client.get("/api/v1/audit?limit=1", headers=admin)).json()
    entry: dict[str, Any] = entries[0]
    return entry


# ------------------------------------------------------------------------------------------ making


async def test_an_operator_silences_its_site_and_the_change_is_audited(
    store: Store, client: httpx.AsyncClient, sites: Sites, admin: dict[str, str]
) -> None:
    name = f"op-{uuid.uuid4().hex[:6]}"
    operator = await bearer(store, AccessRole.OPERATOR, (sites.dc,), user=name)
    before = now_ms()
    response = await _silence(
        client,
        operator,
        f"site = {sites.dc}",
        "alertname=~pue_.*",
        duration="2h",
        comment="chiller maintenance",
    )
    after = now_ms()
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["matchers"] == [f'site="{sites.dc}"', 'alertname=~"pue_.*"']  # canonical text
    assert made["state"] == "active"
    assert made["created_by"] == name
    assert made["comment"] == "chiller maintenance"
    assert made["expired_by"] is None
    assert before <= made["starts_ms"] <= after
    assert made["ends_ms"] - made["starts_ms"] == 2 * HOUR
    assert made["created_ms"] == made["starts_ms"]  # starts defaults to the moment it is made
    assert made["starts_at"].endswith("Z")
    entry = await _last_audit(client, admin)
    assert entry["action"] == "POST /api/v1/silences"
    assert entry["actor"] == name
    assert entry["site_id"] == sites.dc
    assert entry["outcome"] == "ok"
    assert entry["detail"]["body"]["comment"] == "chiller maintenance"
    # what the notifier reads back is the same silence
    stored = [s for s in await store.notify.silences(now_ms=now_ms()) if s.id == made["id"]]
    routing = silence_of(stored[0])
    assert [(m.name, m.op, m.value) for m in routing.matchers] == [
        ("site", MatchOp.EQ, sites.dc),
        ("alertname", MatchOp.RE, "pue_.*"),
    ]
    assert (routing.starts_ms, routing.ends_ms) == (made["starts_ms"], made["ends_ms"])


async def test_explicit_times_and_a_silence_that_starts_later(
    store: Store, client: httpx.AsyncClient, sites: Sites, admin: dict[str, str]
) -> None:
    starts = now_ms() + DAY
    made = await _made(
        client,
        admin,
        f'site="{sites.park}"',
        starts_at=str(starts),
        ends_at=str(starts + HOUR),
        duration=None,
    )
    assert made["state"] == "pending"
    assert (made["starts_ms"], made["ends_ms"]) == (starts, starts + HOUR)
    rfc = await _made(
        client,
        admin,
        "severity=critical",
        starts_at="2099-01-01T00:00:00Z",
        ends_at="2099-01-01T10:00:00+08:00",
        duration=None,
    )
    assert (rfc["starts_ms"], rfc["ends_ms"]) == (4_070_908_800_000, 4_070_908_800_000 + 2 * HOUR)
    assert rfc["starts_at"] == "2099-01-01T00:00:00Z"
    assert rfc["state"] == "pending"
    assert (
        await _silence(client, admin, "severity=critical", starts_at=now_ms() - HOUR, duration="3h")
    ).json()["state"] == "active"


async def test_a_scoped_operator_cannot_silence_other_sites(
    store: Store, client: httpx.AsyncClient, sites: Sites, admin: dict[str, str]
) -> None:
    operator = await bearer(store, AccessRole.OPERATOR, (sites.dc,))
    for matchers in (
        [f'site="{sites.park}"'],  # another site
        ["alertname=pue_high"],  # every site
        [f'site!="{sites.park}"'],  # every site but one is not one of yours
        [f'site=~"{sites.dc}"'],  # a regex does not name a site
    ):
        refused = await _silence(client, operator, *matchers, duration="1h")
        assert refused.status_code == 403, matchers
        assert refused.json()["detail"] == 'a silence must name one of your sites with site="..."'
    entry = await _last_audit(client, admin)
    assert entry["action"] == "POST /api/v1/silences"
    assert entry["outcome"].startswith("refused: 403")
    assert entry["site_id"] is None
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    assert (await _silence(client, viewer, f'site="{sites.dc}"', duration="1h")).status_code == 403
    assert await store.notify.silences(now_ms=now_ms()) == []


async def test_invalid_silences_are_refused_with_the_reason(
    client: httpx.AsyncClient, sites: Sites, admin: dict[str, str]
) -> None:
    site = f'site="{sites.dc}"'
    now = now_ms()
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"matchers": ["site=~(unclosed"], "duration": "1h"}, "matchers", "invalid regular expression"),
        ({"matchers": ["9site=x"], "duration": "1h"}, "matchers", "invalid matcher"),
        ({"matchers": [], "duration": "1h"}, "matchers", "at least 1"),
        ({"matchers": [site] * 21, "duration": "1h"}, "matchers", "at most 20"),
        ({"matchers": ["a=" + "x" * 999], "duration": "1h"}, "matchers", "at most 1000"),
        (
            {"matchers": [site], "ends_at": now + HOUR, "duration": "1h"},
            "ends_at",
            "either ends_at or duration",
        ),
        ({"matchers": [site]}, "ends_at", "either ends_at or duration"),
        ({"matchers": [site], "duration": "soon"}, "duration", "invalid duration"),
        ({"matchers": [site], "duration": "0s"}, "duration", "positive"),
        ({"matchers": [site], "duration": "91d"}, "duration", "at most 90 days"),
        (
            {"matchers": [site], "starts_at": now + 2 * HOUR, "ends_at": now + HOUR},
            "ends_at",
            "after starts_at",
        ),
        (
            {"matchers": [site], "starts_at": now - 2 * HOUR, "ends_at": now - HOUR},
            "ends_at",
            "in the future",
        ),
        ({"matchers": [site], "ends_at": "tomorrow"}, "ends_at", "neither RFC 3339"),
        ({"matchers": [site], "ends_at": "2030-01-01T00:00:00"}, "ends_at", "no UTC offset"),
        ({"matchers": [site], "duration": "1h", "comment": "x" * 501}, "comment", "at most 500"),
        ({"matchers": [site], "duration": "1h", "creator": "me"}, "creator", "Extra inputs"),
    ]
    for body, field, message in cases:
        response = await client.post("/api/v1/silences", headers=admin, json=body)
        assert response.status_code == 422, body
        errors = response.json()["detail"]
        assert any(e["loc"][:2] == ["body", field] and message in e["msg"] for e in errors), (body, errors)
    entry = await _last_audit(client, admin)
    assert entry["outcome"] == "refused: 422 invalid input"
    nul = await _silence(client, admin, site, duration="1h", comment="a\u0000b")  # PostgreSQL text has no NUL
    assert nul.status_code == 422
    assert (await client.get("/api/v1/silences", headers=admin)).json() == []


# ------------------------------------------------------------------------------------------ listing


async def test_lists_show_the_silences_of_the_callers_sites(
    store: Store, client: httpx.AsyncClient, sites: Sites, admin: dict[str, str]
) -> None:
    dc = await _made(client, admin, f'site="{sites.dc}"')
    park = await _made(client, admin, f'site="{sites.park}"', "severity=critical")
    everywhere = await _made(client, admin, "alertname=meter_silent")
    both = await _made(client, admin, f'site="{sites.dc}"', f'site="{sites.park}"')
    listed = (await client.get("/api/v1/silences", headers=admin)).json()
    assert [s["id"] for s in listed] == [both["id"], everywhere["id"], park["id"], dc["id"]]  # newest first
    for role in (AccessRole.VIEWER, AccessRole.OPERATOR):
        scoped = await bearer(store, role, (sites.dc,))
        seen = (await client.get("/api/v1/silences", headers=scoped)).json()
        assert [s["id"] for s in seen] == [both["id"], dc["id"]], role
    park_viewer = await bearer(store, AccessRole.VIEWER, (sites.park,))
    seen = (await client.get("/api/v1/silences?limit=1", headers=park_viewer)).json()
    assert [s["id"] for s in seen] == [both["id"]]


# ------------------------------------------------------------------------------------------ expiring


async def test_expiring_ends_a_silence_once(
    store: Store, client: httpx.AsyncClient, sites: Sites, admin: dict[str, str]
) -> None:
    made = await _made(client, admin, f'site="{sites.dc}"', duration="4h")
    outsider = await bearer(store, AccessRole.OPERATOR, (sites.park,))
    hidden = await client.delete(f"/api/v1/silences/{made['id']}", headers=outsider)
    assert hidden.status_code == 404  # a silence of another site does not exist for you
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    assert (await client.delete(f"/api/v1/silences/{made['id']}", headers=viewer)).status_code == 403
    name = f"op-{uuid.uuid4().hex[:6]}"
    operator = await bearer(store, AccessRole.OPERATOR, (sites.dc,), user=name)
    before = now_ms()
    ended = await client.delete(f"/api/v1/silences/{made['id']}", headers=operator)
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert body["state"] == "expired"
    assert body["expired_by"] == name
    assert before <= body["ends_ms"] <= now_ms()
    entry = await _last_audit(client, admin)
    assert entry["action"] == "DELETE /api/v1/silences/{silence_id}"
    assert entry["target"] == f"silence_id={made['id']}"
    assert entry["site_id"] == sites.dc
    assert entry["outcome"] == "ok"
    again = await client.delete(f"/api/v1/silences/{made['id']}", headers=operator)
    assert again.status_code == 409
    assert again.json()["detail"] == f"silence {made['id']} has already ended"
    assert (await client.get("/api/v1/silences", headers=operator)).json() == []
    with_expired = (await client.get("/api/v1/silences?include_expired=true", headers=operator)).json()
    assert [(s["id"], s["state"]) for s in with_expired] == [(made["id"], "expired")]
    unknown = await client.delete("/api/v1/silences/999999", headers=admin)
    assert unknown.status_code == 404


async def test_a_silence_expired_before_it_starts_is_expired(
    store: Store, client: httpx.AsyncClient, sites: Sites, admin: dict[str, str]
) -> None:
    starts = now_ms() + DAY
    made = await _made(client, admin, f'site="{sites.dc}"', starts_at=starts, duration="1h")
    ended = await client.delete(f"/api/v1/silences/{made['id']}", headers=admin)
    assert ended.status_code == 200
    assert ended.json()["state"] == "expired"
    assert ended.json()["ends_ms"] == starts  # ends as it starts: it never mutes
    assert (await client.delete(f"/api/v1/silences/{made['id']}", headers=admin)).status_code == 409
    assert (await client.get("/api/v1/silences", headers=admin)).json() == []


# ------------------------------------------------------------------------------------------ deliveries


def _delivery(at_ms: int, alert_ids: list[int], site_ids: list[str], **fields: Any) -> Delivery:
    values: dict[str, Any] = {
        "receiver": "oncall",
        "channel": "oncall/webhook",
        "group_key": '{}:{alertname="pue_high"}',
        "status": "firing",
        "outcome": "sent",
        "detail": "HTTP 200",
        "attempt": 1,
        "escalation": 0,
        "repeat": False,
        **fields,
    }
    return Delivery(at_ms=at_ms, alert_ids=alert_ids, site_ids=site_ids, **values)


async def test_the_delivery_log_shows_the_callers_sites(
    store: Store, client: httpx.AsyncClient, sites: Sites, admin: dict[str, str]
) -> None:
    at = 1_717_200_000_000
    await store.notify.record_delivery(_delivery(at, [1], [sites.dc]))
    await store.notify.record_delivery(_delivery(at + 1000, [2], [sites.park]))
    await store.notify.record_delivery(_delivery(at + 2000, [1, 2], [sites.dc, sites.park]))
    await store.notify.record_delivery(
        _delivery(at + 3000, [1], [sites.dc], outcome="failed", detail="HTTP 503", attempt=2, repeat=True)
    )
    everything = (await client.get("/api/v1/notifications", headers=admin)).json()
    assert [d["at_ms"] for d in everything] == [at + 3000, at + 2000, at + 1000, at]  # newest first
    assert everything[0] == {
        "id": everything[0]["id"],
        "at": "2024-06-01T00:00:03Z",
        "at_ms": at + 3000,
        "receiver": "oncall",
        "channel": "oncall/webhook",
        "group_key": '{}:{alertname="pue_high"}',
        "status": "firing",
        "outcome": "failed",
        "detail": "HTTP 503",
        "attempt": 2,
        "escalation": 0,
        "repeat": True,
        "alert_ids": [1],
        "site_ids": [sites.dc],
    }
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    seen = (await client.get("/api/v1/notifications", headers=viewer)).json()
    assert [d["at_ms"] for d in seen] == [at + 3000, at]  # a message about both sites is not all yours
    about_2 = (await client.get("/api/v1/notifications?alert_id=2", headers=admin)).json()
    assert [d["at_ms"] for d in about_2] == [at + 2000, at + 1000]
    one = (await client.get("/api/v1/notifications?limit=1", headers=admin)).json()
    assert [d["at_ms"] for d in one] == [at + 3000]
    assert (await client.get("/api/v1/notifications?limit=0", headers=admin)).status_code == 422
