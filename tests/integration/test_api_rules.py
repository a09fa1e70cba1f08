"""Alert rules through the API, on a real migrated PostgreSQL: made, listed, replaced and removed by
admins, validated like the registry file's rules, confined to a site admin's sites, audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from peakwatch.config import Registry, parse_rule
from peakwatch.domain.access import AccessRole
from peakwatch.domain.rules import ThresholdRule
from peakwatch.store import Store
from tests.integration.test_api import Sites, build_registry, make_client
from tests.support import bearer

pytestmark = pytest.mark.integration

FILE_RULE = ThresholdRule(name="pue_retrofit_line", kpi="pue", op=">", threshold=1.5)


@pytest.fixture
async def sites(store: Store) -> Sites:
    seeded = build_registry(uuid.uuid4().hex[:8])
    registry = seeded.registry
    with_rule = Registry(registry.sites.values(), registry.meters.values(), [FILE_RULE])
    await store.sync_registry(with_rule)
    return Sites(seeded.dc, seeded.park, seeded.empty, with_rule)


@pytest.fixture
async def client(store: Store, sites: Sites) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(store, sites.registry) as c:
        yield c


def hall_rule(site: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"pue_hall_{site}",
        "kpi": "pue",
        "op": ">",
        "threshold": 1.4,
        "for": "5m",
        "recover": 1.35,
        "severity": "critical",
        "site_ids": [site],
        "labels": {"team": "hall-b"},
        **extra,
    }


async def test_an_admin_makes_lists_replaces_and_removes_a_rule(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store)
    made = await client.post("/api/v1/rules", headers=admin, json=hall_rule(sites.dc))
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["source"], body["for_ms"], body["recover_threshold"], body["labels"]) == (
        "api",
        300_000,
        1.35,
        {"team": "hall-b"},
    )
    stored = await store.rules.get(f"pue_hall_{sites.dc}")
    assert stored is not None
    assert stored.spec["for"] == "300s"  # kept in its registry form: what the processor reads

    listed = {r["name"]: r["source"] for r in (await client.get("/api/v1/rules", headers=admin)).json()}
    assert listed == {"pue_retrofit_line": "file", f"pue_hall_{sites.dc}": "api"}

    changed = await client.put(
        f"/api/v1/rules/pue_hall_{sites.dc}", headers=admin, json=hall_rule(sites.dc, threshold=1.45)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["threshold"] == 1.45

    removed = await client.delete(f"/api/v1/rules/pue_hall_{sites.dc}", headers=admin)
    assert removed.status_code == 204
    assert await store.rules.list() == []
    audit = (await client.get("/api/v1/audit?limit=3", headers=admin)).json()
    assert [(e["action"], e["site_id"], e["outcome"]) for e in audit] == [
        ("DELETE /api/v1/rules/{name}", sites.dc, "ok"),
        ("PUT /api/v1/rules/{name}", sites.dc, "ok"),
        ("POST /api/v1/rules", sites.dc, "ok"),
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"recover": 1.6}, "recover threshold 1.6 must be at or below the threshold 1.4"),
        ({"kpi": "pue_typo"}, "unknown kpi 'pue_typo'"),
        ({"site_ids": ["nowhere"]}, "unknown sites ['nowhere']"),
        ({"for": "soon"}, "invalid duration 'soon'"),
        ({"silent_for": "5m"}, "a staleness rule (silent_for) takes no kpi, op, threshold, for, recover"),
    ],
)
async def test_a_rule_that_cannot_work_is_refused_with_the_reason(
    store: Store, client: httpx.AsyncClient, sites: Sites, change: dict[str, Any], reason: str
) -> None:
    response = await client.post(
        "/api/v1/rules", headers=await bearer(store), json=hall_rule(sites.dc, **change)
    )
    assert response.status_code == 422
    assert reason in response.text


async def test_names_are_unique_across_the_file_and_the_database(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store)
    assert (await client.post("/api/v1/rules", headers=admin, json=hall_rule(sites.dc))).status_code == 201
    again = await client.post("/api/v1/rules", headers=admin, json=hall_rule(sites.dc))
    assert again.status_code == 409
    file_name = hall_rule(sites.dc, name="pue_retrofit_line")
    assert (await client.post("/api/v1/rules", headers=admin, json=file_name)).status_code == 409
    put_file = await client.put("/api/v1/rules/pue_retrofit_line", headers=admin, json=file_name)
    assert put_file.status_code == 409
    assert (await client.delete("/api/v1/rules/pue_retrofit_line", headers=admin)).status_code == 409
    assert (await client.delete("/api/v1/rules/never_made", headers=admin)).status_code == 404


async def test_a_site_admin_makes_rules_for_its_own_sites_only(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    site_admin = await bearer(store, AccessRole.ADMIN, (sites.dc,))
    everywhere = {k: v for k, v in hall_rule(sites.dc).items() if k != "site_ids"}
    assert (await client.post("/api/v1/rules", headers=site_admin, json=everywhere)).status_code == 403
    theirs = await client.post("/api/v1/rules", headers=site_admin, json=hall_rule(sites.park))
    assert theirs.status_code == 403
    mine = await client.post("/api/v1/rules", headers=site_admin, json=hall_rule(sites.dc))
    assert mine.status_code == 201

    # the park's rule, made by a global admin, is out of their sight and reach
    admin = await bearer(store)
    assert (await client.post("/api/v1/rules", headers=admin, json=hall_rule(sites.park))).status_code == 201
    listed = [r["name"] for r in (await client.get("/api/v1/rules", headers=site_admin)).json()]
    assert f"pue_hall_{sites.park}" not in listed
    assert f"pue_hall_{sites.dc}" in listed
    park_url = f"/api/v1/rules/pue_hall_{sites.park}"
    assert (await client.delete(park_url, headers=site_admin)).status_code == 404
    moved = hall_rule(sites.dc, name=f"pue_hall_{sites.park}")
    assert (await client.put(park_url, headers=site_admin, json=moved)).status_code == 404

    operator = await bearer(store, AccessRole.OPERATOR, (sites.dc,))
    assert (await client.post("/api/v1/rules", headers=operator, json=hall_rule(sites.dc))).status_code == 403


async def test_a_stored_rule_round_trips_to_the_processors_form(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    """What the API stores is what the processor parses: the same rule the API answered with."""

    admin = await bearer(store)
    staleness = {
        "name": "hall_offline",
        "silent_for": "2m",
        "per": "site",
        "site_ids": [sites.dc],
        "severity": "critical",
    }
    made = await client.post("/api/v1/rules", headers=admin, json=staleness)
    assert made.status_code == 201, made.text
    stored = await store.rules.get("hall_offline")
    assert stored is not None
    rule = parse_rule(stored.spec, "stored")
    assert (msgspec.structs.asdict(rule)["silent_ms"], made.json()["per"]) == (120_000, "site")


async def test_a_stored_rule_shadowed_by_the_file_or_unreadable_can_still_be_removed(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    """A rule named like one added to the file later, or stored by an older peakwatch in a form this
    one does not read, is skipped by the processor; an admin can still remove it."""
    admin = await bearer(store)
    await store.rules.create("pue_retrofit_line", {"name": "pue_retrofit_line", "silent_for": "1m"}, "old", 0)
    await store.rules.create("unreadable", {"name": "unreadable", "silent_for": "soon"}, "old", 0)
    assert (await client.delete("/api/v1/rules/unreadable", headers=admin)).status_code == 204
    assert (await client.delete("/api/v1/rules/pue_retrofit_line", headers=admin)).status_code == 204
    assert await store.rules.list() == []
    assert (await client.delete("/api/v1/rules/pue_retrofit_line", headers=admin)).status_code == 409


async def test_long_and_odd_durations_are_stored_exactly(
    store: Store, client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store)
    body = {"name": "fortnight", "silent_for": "14d", "site_ids": [sites.dc]}
    made = await client.post("/api/v1/rules", headers=admin, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["silent_ms"] == 14 * 86_400_000
    assert [r["name"] for r in (await client.get("/api/v1/rules", headers=admin)).json()].count(
        "fortnight"
    ) == 1
    assert (await client.delete("/api/v1/rules/fortnight", headers=admin)).status_code == 204
