"""Who may call what (docs/security.md, "API access"): every route answers 401 without valid
credentials and 403 below its role or outside the caller's sites; logins are throttled; every change
is in the audit log, with secrets replaced; secrets never reach the logs.

The route matrix is built from the app's own routes, so a new route is covered the day it is added.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api import create_app
from peakwatch.accounts import new_credential
from peakwatch.config import Registry, Settings
from peakwatch.domain.access import AccessRole, CredentialKind
from peakwatch.domain.models import AlertChange, DeadLetter, ProcessedBatch
from peakwatch.store import Store
from tests.integration.test_api import Sites, build_registry
from tests.support import api_routes, bearer

OPEN = {"/healthz", "/readyz", "/metrics", "/api/v1/auth/login"}
SELF_SERVICE = {
    "/api/v1/auth/logout",
    "/api/v1/auth/password",
    "/api/v1/auth/me",
    "/api/v1/tokens",
    "/api/v1/tokens/{credential_id}",  # one's own; another's is 404 (test_tokens_never_exceed_their_user)
}
"""Any authenticated principal may use these for itself (the handlers check whose token it is)."""
STREAMS = {"/api/v1/alerts/stream"}
"""Never end on their own, so not called with valid credentials here (the ASGI transport would wait for
the end): tests/integration/test_api_alert_stream.py checks their roles and scope over a real server."""
OPERATOR_CHANGES = {
    "/api/v1/alerts/{alert_id}/acknowledge",
    "/api/v1/silences",
    "/api/v1/silences/{silence_id}",
}
"""What an operator may change: alerts' handling, not configuration."""
GLOBAL = {"/api/v1/users", "/api/v1/users/{name}", "/api/v1/users/{name}/reset-password", "/api/v1/audit"}
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def sites(store: Store) -> Sites:
    seeded = build_registry(uuid.uuid4().hex[:8])
    await store.sync_registry(seeded.registry)
    return seeded


@pytest.fixture
async def app_client(store: Store, sites: Sites) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, sites.registry, Settings(), metrics_registry=CollectorRegistry())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://peakwatch.test"
    ) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


def routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    app = client.app  # type: ignore[attr-defined]
    return sorted((method, r.path) for r in api_routes(app) for method in (r.methods or set()) - {"HEAD"})


def concrete(path: str, site: str) -> str:
    values = {
        "site_id": site,
        "meter_id": "facility",
        "month": "2024-06",
        "period": "1m",
        "window_start": "2024-06-01T00:00:00Z",
        "target_id": "1",
        "factor_id": "grid.cn.hunan.2023",
        "credential_id": "0123456789abcdef",
        "name": "nobody",
        "device_id": "dev-x",
        "alert_id": "1",
        "silence_id": "1",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


async def call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if method in {"POST", "PUT", "PATCH"}:
        kwargs["json"] = {}
    response = await client.request(method, path, **kwargs)
    return response.status_code


# ------------------------------------------------------------------------------------------ the matrix


async def test_every_route_needs_credentials(app_client: httpx.AsyncClient, sites: Sites) -> None:
    bad = {"Authorization": "Bearer pwt_0123456789abcdef_" + "x" * 40}
    malformed = {"Authorization": "Bearer not-a-token"}
    unexpected: dict[str, int] = {}
    for method, path in routes(app_client):
        if path in OPEN:
            continue
        url = concrete(path, sites.dc)
        for headers in ({}, bad, malformed):
            status = await call(app_client, method, url, headers)
            if status != 401:
                unexpected[f"{method} {path} {headers}"] = status
    assert unexpected == {}


async def test_viewer_reads_its_sites_only_and_changes_nothing(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    unexpected: dict[str, int] = {}
    for method, path in routes(app_client):
        if path in OPEN or path in SELF_SERVICE or path in STREAMS:
            continue
        inside = await call(app_client, method, concrete(path, sites.dc), viewer)
        outside = await call(app_client, method, concrete(path, sites.park), viewer)
        if method != "GET" or path in GLOBAL or path.startswith("/api/v1/devices"):
            expected_inside = 403  # a change, or a global resource
        else:
            expected_inside = None  # allowed: 200, 404 or 422 depending on the data
        if expected_inside is not None and inside != expected_inside:
            unexpected[f"{method} {path} (own site)"] = inside
        if expected_inside is None and inside in (401, 403):
            unexpected[f"{method} {path} (own site)"] = inside
        if "{site_id}" in path and outside != 403:
            unexpected[f"{method} {path} (other site)"] = outside
    assert unexpected == {}


async def test_operator_acknowledges_but_changes_no_configuration(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    operator = await bearer(store, AccessRole.OPERATOR, (sites.dc,))
    unexpected: dict[str, int] = {}
    for method, path in routes(app_client):
        if method == "GET" or path in OPEN or path in SELF_SERVICE:
            continue
        status = await call(app_client, method, concrete(path, sites.dc), operator)
        allowed = path in OPERATOR_CHANGES
        if allowed and status in (401, 403):
            unexpected[f"{method} {path}"] = status
        if not allowed and status != 403:
            unexpected[f"{method} {path}"] = status
    assert unexpected == {}


async def test_site_admin_changes_its_sites_only(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store, AccessRole.ADMIN, (sites.dc,))
    unexpected: dict[str, int] = {}
    for method, path in routes(app_client):
        if path in OPEN or path in SELF_SERVICE or path in STREAMS:
            continue
        inside = await call(app_client, method, concrete(path, sites.dc), admin)
        outside = await call(app_client, method, concrete(path, sites.park), admin)
        global_only = path in GLOBAL or (path == "/api/v1/factors" and method == "POST")
        if global_only and inside != 403:
            unexpected[f"{method} {path}"] = inside
        if not global_only and inside in (401, 403):
            unexpected[f"{method} {path} (own site)"] = inside
        if "{site_id}" in path and outside != 403:
            unexpected[f"{method} {path} (other site)"] = outside
    assert unexpected == {}


async def test_global_admin_is_refused_nothing(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store)
    refused = {
        f"{method} {path}": status
        for method, path in routes(app_client)
        if path not in STREAMS
        and (status := await call(app_client, method, concrete(path, sites.dc), admin)) in (401, 403)
    }
    assert refused == {}


# ------------------------------------------------------------------------------------------ scoped lists


async def test_lists_show_only_the_sites_in_scope(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    for site in (sites.dc, sites.park):
        await _write_alert(store, site)
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    listed = (await app_client.get("/api/v1/sites", headers=viewer)).json()
    assert [s["id"] for s in listed] == [sites.dc]
    alerts = (await app_client.get("/api/v1/alerts", headers=viewer)).json()
    assert {a["site_id"] for a in alerts} == {sites.dc}
    assert (await app_client.get(f"/api/v1/alerts?site_id={sites.park}", headers=viewer)).status_code == 403
    everyone = (await app_client.get("/api/v1/alerts", headers=await bearer(store))).json()
    assert {sites.dc, sites.park} <= {a["site_id"] for a in everyone}


def _alert(site_id: str) -> AlertChange:
    return AlertChange(
        fingerprint=f"pue_high/{site_id}",
        rule="pue_high",
        site_id=site_id,
        state="firing",
        severity="critical",
        summary="PUE above 1.5",
        value=1.6,
        started_ms=1_717_200_000_000,
        at_ms=1_717_200_060_000,
    )


async def _write_alert(store: Store, site_id: str) -> int:
    await store.write(ProcessedBatch(alerts=[_alert(site_id)]))
    alerts = await store.list_alerts(site_id=site_id)
    return alerts[0].id


# ------------------------------------------------------------------------------------------ acknowledgement


async def test_viewer_cannot_acknowledge_and_operator_acknowledgement_is_recorded(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    alert_id = await _write_alert(store, sites.dc)
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    refused = await app_client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=viewer)
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]
    outsider = await bearer(store, AccessRole.OPERATOR, (sites.park,))
    hidden = await app_client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=outsider)
    assert hidden.status_code == 404  # an alert of a site outside the scope does not exist for you
    operator = await bearer(store, AccessRole.OPERATOR, (sites.dc,), user=f"op-{uuid.uuid4().hex[:6]}")
    done = await app_client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=operator)
    assert done.status_code == 200
    body = done.json()
    assert body["acknowledged_by"].startswith("op-")
    assert body["acknowledged_ms"] is not None
    log = (await app_client.get("/api/v1/audit", headers=await bearer(store))).json()
    entry = next(e for e in log if e["action"] == "POST /api/v1/alerts/{alert_id}/acknowledge")
    assert entry["actor"] == body["acknowledged_by"]
    assert entry["target"] == f"alert_id={alert_id}"
    assert entry["via"].startswith("token:")


# ------------------------------------------------------------------------------------------ login


async def _user(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/users", headers=admin, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_login_session_cookie_and_logout(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store)
    name = f"ops-{uuid.uuid4().hex[:6]}"
    created = await _user(app_client, admin, name=name, role="operator", sites=[sites.dc], password=PASSWORD)
    assert created["one_time_password"] is None
    login = await app_client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200
    session = login.json()
    assert session["token"].startswith("pws_")
    assert session["principal"] == {
        "user": name,
        "role": "operator",
        "sites": [sites.dc],
        "via": session["principal"]["via"],
        "must_change_password": False,
    }
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    # the cookie alone authenticates the dashboard (httpx keeps it in the client's jar)
    me = await app_client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json()["user"] == name
    # a change made with the cookie must come from our own page: another port or subdomain of the same
    # site (which SameSite=Strict lets through) or no origin at all is refused
    for headers in (
        {"origin": "http://peakwatch.test:3000"},
        {"origin": "http://grafana.peakwatch.test"},
        {"sec-fetch-site": "same-site"},
        {},
    ):
        refused = await app_client.post("/api/v1/auth/logout", headers=headers)
        assert refused.status_code == 403, headers
        assert "cross-origin request refused" in refused.json()["detail"]
    same = {"origin": "http://peakwatch.test"}
    assert (await app_client.post("/api/v1/auth/logout", headers=same)).status_code == 204
    app_client.cookies.clear()
    again = await app_client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {session['token']}"})
    assert again.status_code == 401
    assert again.json()["detail"] == "session revoked"


async def test_login_is_throttled_per_user(store: Store, app_client: httpx.AsyncClient) -> None:
    admin = await bearer(store)
    name = f"slow-{uuid.uuid4().hex[:6]}"
    await _user(app_client, admin, name=name, role="viewer", password=PASSWORD)
    statuses = []
    for _ in range(6):
        response = await app_client.post(
            "/api/v1/auth/login", json={"username": name, "password": "guess" * 3}
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    assert int(response.headers["retry-after"]) > 0
    # even the right password waits: the throttle does not tell a guesser when it hit
    right = await app_client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert right.status_code == 429
    unknown = await app_client.post("/api/v1/auth/login", json={"username": "ghost", "password": "x"})
    assert unknown.status_code in (401, 429)  # the client address is throttled too
    assert "invalid user name or password" in unknown.text or "too many" in unknown.text


async def test_one_time_password_must_be_changed_first(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store)
    name = f"new-{uuid.uuid4().hex[:6]}"
    created = await _user(app_client, admin, name=name, role="viewer")
    one_time = created["one_time_password"]
    assert created["user"]["must_change_password"] is True
    assert len(one_time) >= 20
    session = (
        await app_client.post("/api/v1/auth/login", json={"username": name, "password": one_time})
    ).json()
    app_client.cookies.clear()
    headers = {"Authorization": f"Bearer {session['token']}"}
    blocked = await app_client.get("/api/v1/sites", headers=headers)
    assert blocked.status_code == 403
    assert "one-time password" in blocked.json()["detail"]
    weak = await app_client.post(
        "/api/v1/auth/password", headers=headers, json={"current_password": one_time, "new_password": "short"}
    )
    assert weak.status_code == 422
    changed = await app_client.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"current_password": one_time, "new_password": PASSWORD},
    )
    assert changed.status_code == 204
    assert (await app_client.get("/api/v1/sites", headers=headers)).status_code == 200


# ------------------------------------------------------------------------------------------ tokens


async def test_tokens_never_exceed_their_user(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    too_high = await app_client.post("/api/v1/tokens", headers=viewer, json={"name": "x", "role": "admin"})
    assert too_high.status_code == 422
    assert "above your own" in too_high.text
    too_wide = await app_client.post(
        "/api/v1/tokens", headers=viewer, json={"name": "x", "sites": [sites.park]}
    )
    assert too_wide.status_code == 422
    assert sites.park in too_wide.text
    made = await app_client.post("/api/v1/tokens", headers=viewer, json={"name": "grafana"})
    assert made.status_code == 201
    token = made.json()["token"]
    grafana = {"Authorization": f"Bearer {token}"}
    assert (await app_client.get(f"/api/v1/sites/{sites.dc}", headers=grafana)).status_code == 200
    listed = (await app_client.get("/api/v1/tokens", headers=viewer)).json()
    assert token not in str(listed)  # the secret is shown once, never listed
    credential_id = made.json()["credential"]["id"]
    assert (await app_client.delete(f"/api/v1/tokens/{credential_id}", headers=viewer)).status_code == 204
    assert (await app_client.get("/api/v1/auth/me", headers=grafana)).status_code == 401


async def test_demoted_or_disabled_users_lose_their_tokens_rights(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store)
    name = f"ex-{uuid.uuid4().hex[:6]}"
    await _user(app_client, admin, name=name, role="admin", password=PASSWORD)
    credential, token = new_credential(
        CredentialKind.TOKEN,
        user_name=name,
        name="script",
        role=AccessRole.ADMIN,
        sites=None,
        now_ms=1_700_000_000_000,
        ttl_ms=None,
    )
    await store.access.add_credential(credential)
    script = {"Authorization": f"Bearer {token}"}
    demote = await app_client.patch(f"/api/v1/users/{name}", headers=admin, json={"role": "viewer"})
    assert demote.status_code == 200
    me = (await app_client.get("/api/v1/auth/me", headers=script)).json()
    assert me["role"] == "viewer"
    disable = await app_client.patch(f"/api/v1/users/{name}", headers=admin, json={"disabled": True})
    assert disable.status_code == 200
    assert (await app_client.get("/api/v1/auth/me", headers=script)).status_code == 401


async def test_expired_token_is_refused(store: Store, app_client: httpx.AsyncClient) -> None:
    name = f"old-{uuid.uuid4().hex[:6]}"
    await bearer(store, AccessRole.VIEWER, user=name)
    credential, token = new_credential(
        CredentialKind.TOKEN,
        user_name=name,
        name="expired",
        role=AccessRole.VIEWER,
        sites=None,
        now_ms=1_600_000_000_000,
        ttl_ms=1000,
    )
    await store.access.add_credential(credential)
    response = await app_client.get("/api/v1/sites", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["detail"] == "token expired"


# ------------------------------------------------------------------------------------------ users, audit


async def test_the_last_global_admin_cannot_be_removed(store: Store, app_client: httpx.AsyncClient) -> None:
    for user in await store.access.list_users():  # this test's database: only its own admin remains
        await store.access.delete_user(user.name)
    name = f"root-{uuid.uuid4().hex[:6]}"
    admin = await bearer(store, user=name)
    for response in (
        await app_client.delete(f"/api/v1/users/{name}", headers=admin),
        await app_client.patch(f"/api/v1/users/{name}", headers=admin, json={"role": "operator"}),
        await app_client.patch(f"/api/v1/users/{name}", headers=admin, json={"disabled": True}),
    ):
        assert response.status_code == 409
        assert "last admin" in response.json()["detail"]


async def test_changes_are_audited_with_secrets_replaced(
    store: Store, app_client: httpx.AsyncClient, sites: Sites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await bearer(store, user=f"auditor-{uuid.uuid4().hex[:6]}")
    secret_password = "s3cret-" + uuid.uuid4().hex
    name = f"aud-{uuid.uuid4().hex[:6]}"
    await _user(app_client, admin, name=name, role="viewer", sites=[sites.dc], password=secret_password)
    await app_client.post(
        "/api/v1/auth/login", json={"username": name, "password": "wrong " + secret_password}
    )
    login = await app_client.post("/api/v1/auth/login", json={"username": name, "password": secret_password})
    token = login.json()["token"]
    device = await app_client.post(
        "/api/v1/devices", headers=admin, json={"id": "meter-7", "site_id": sites.dc}
    )
    assert device.status_code == 201
    device_secret = device.json()["secret"]
    target = await app_client.post(
        f"/api/v1/sites/{sites.dc}/targets",
        headers=admin,
        json={"kpi": "pue", "kind": "at_most", "value": 1.3, "year": 2026},
    )
    assert target.status_code == 201, target.text
    log = (await app_client.get("/api/v1/audit?limit=20", headers=admin)).json()
    actions = [e["action"] for e in log]
    assert actions[:4] == [
        "POST /api/v1/sites/{site_id}/targets",
        "POST /api/v1/devices",
        "login",
        "POST /api/v1/users",
    ]
    created_user = log[3]
    assert created_user["detail"]["body"]["password"] == "***"
    assert created_user["detail"]["body"]["name"] == name
    assert log[0]["site_id"] == sites.dc
    assert log[0]["detail"]["body"]["kpi"] == "pue"
    assert log[2]["actor"] == name
    everything = str(log) + caplog.text
    for secret in (secret_password, token, device_secret):
        assert secret not in everything
    assert "failed login for user" in caplog.text  # the failure is logged, without the password


# ------------------------------------------------------------------------------------------ devices


async def test_devices_through_the_api(store: Store, app_client: httpx.AsyncClient, sites: Sites) -> None:
    site_admin = await bearer(store, AccessRole.ADMIN, (sites.dc,))
    made = await app_client.post(
        "/api/v1/devices",
        headers=site_admin,
        json={"id": "gw-1", "site_id": sites.dc, "meters": ["facility"]},
    )
    assert made.status_code == 201
    assert made.json()["device"]["topics"] == [f"telemetry/{sites.dc}/facility"]
    other = await app_client.post(
        "/api/v1/devices", headers=site_admin, json={"id": "gw-2", "site_id": sites.park}
    )
    assert other.status_code == 403
    collector = await app_client.post(
        "/api/v1/devices", headers=site_admin, json={"id": "c1", "kind": "collector"}
    )
    assert collector.status_code == 403
    unknown_meter = await app_client.post(
        "/api/v1/devices", headers=site_admin, json={"id": "gw-3", "site_id": sites.dc, "meters": ["nope"]}
    )
    assert unknown_meter.status_code == 422
    rotated = await app_client.post("/api/v1/devices/gw-1/rotate", headers=site_admin)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != made.json()["secret"]
    park_admin = await bearer(store, AccessRole.ADMIN, (sites.park,))
    assert (await app_client.post("/api/v1/devices/gw-1/revoke", headers=park_admin)).status_code == 404
    revoked = await app_client.post("/api/v1/devices/gw-1/revoke", headers=site_admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_ms"] is not None
    stored = {d.id: d for d in await store.devices.list()}
    assert stored["gw-1"].revoked_ms is not None


# ------------------------------------------------------------------------------------------ review findings


async def test_guesses_sent_at_once_are_throttled(store: Store, app_client: httpx.AsyncClient) -> None:
    name = f"burst-{uuid.uuid4().hex[:6]}"
    await _user(app_client, await bearer(store), name=name, role="viewer", password=PASSWORD)
    answers = await asyncio.gather(
        *(
            app_client.post("/api/v1/auth/login", json={"username": name, "password": f"guess {i:08d}"})
            for i in range(20)
        )
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * 5 + [429] * 15


async def test_a_change_is_audited_whatever_its_query_carries(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    admin = await bearer(store)
    name = f"nul-{uuid.uuid4().hex[:6]}"
    await _user(app_client, admin, name=name, role="viewer", password=PASSWORD)
    changed = await app_client.patch(f"/api/v1/users/{name}?x=%00", headers=admin, json={"role": "operator"})
    assert changed.status_code == 200
    entry = (await app_client.get("/api/v1/audit?limit=1", headers=admin)).json()[0]
    assert entry["action"] == "PATCH /api/v1/users/{name}"
    assert entry["outcome"] == "ok"
    assert entry["detail"]["query"] == {"x": "\\u0000"}
    refused = await app_client.post(f"/api/v1/sites/{sites.dc}/targets", headers=admin, json={"kpi": "pue"})
    assert refused.status_code == 422
    entry = (await app_client.get("/api/v1/audit?limit=1", headers=admin)).json()[0]
    assert entry["outcome"] == "refused: 422 invalid input"
    assert entry["site_id"] == sites.dc


async def test_admins_demoting_each_other_at_once_leave_one(
    store: Store, app_client: httpx.AsyncClient
) -> None:
    for user in await store.access.list_users():
        await store.access.delete_user(user.name)
    names = [f"a-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    tokens = [await bearer(store, user=n) for n in names]
    answers = await asyncio.gather(
        *(
            app_client.patch(f"/api/v1/users/{n}", headers=t, json={"role": "viewer"})
            for n, t in zip(names, tokens, strict=True)
        )
    )
    assert sorted(r.status_code for r in answers) == [200, 409]
    assert len([u for u in await store.access.list_users() if u.role is AccessRole.ADMIN]) == 1


async def test_a_token_made_with_an_expiring_one_expires_no_later(
    store: Store, app_client: httpx.AsyncClient
) -> None:
    name = f"short-{uuid.uuid4().hex[:6]}"
    await bearer(store, AccessRole.VIEWER, user=name)
    now = int(time.time() * 1000)
    credential, token = new_credential(
        CredentialKind.TOKEN,
        user_name=name,
        name="short",
        role=AccessRole.VIEWER,
        sites=None,
        now_ms=now,
        ttl_ms=60_000,
    )
    await store.access.add_credential(credential)
    made = await app_client.post(
        "/api/v1/tokens",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "forever", "expires_in_days": None},
    )
    assert made.status_code == 201
    assert made.json()["credential"]["expires_ms"] == credential.expires_ms


async def test_dead_letters_of_no_site_only_for_admins_of_every_site(
    store: Store, app_client: httpx.AsyncClient, sites: Sites
) -> None:
    letter = DeadLetter(
        received_ms=1_717_200_000_000, source="telemetry/x", reason="unknown_site", detail="?", payload=b"{}"
    )
    await store.write(ProcessedBatch(dead_letters=[letter]))
    for role, seen in ((AccessRole.VIEWER, False), (AccessRole.OPERATOR, False), (AccessRole.ADMIN, True)):
        listed = (await app_client.get("/api/v1/dead-letters", headers=await bearer(store, role))).json()
        assert any(d["source"] == "telemetry/x" for d in listed) is seen, role


async def test_a_duplicate_made_at_the_same_moment_is_a_conflict(
    store: Store, app_client: httpx.AsyncClient
) -> None:
    admin = await bearer(store)
    name = f"dup-{uuid.uuid4().hex[:6]}"
    answers = await asyncio.gather(
        *(
            app_client.post("/api/v1/users", headers=admin, json={"name": name, "role": "viewer"})
            for _ in range(3)
        )
    )
    assert sorted(r.status_code for r in answers) == [201, 409, 409]


async def test_rules_and_alert_filters(store: Store, sites: Sites) -> None:
    registry = Registry.from_text(
        f"""
sites:
  - {{id: {sites.dc}, name: DC, kind: data_centre, labels: {{class: new-large}}}}
rules:
  - {{name: pue_high, kpi: pue, op: ">", threshold: 1.5, recover: 1.45, min_it_kw: 50}}
  - {{name: silent, silent_for: 5m, meter_roles: [it_load], severity: critical}}
  - {{name: pue_new_large, kpi: pue, op: ">", threshold: 1.3, site_labels: {{class: new-large}}}}
"""
    )
    await store.sync_registry(registry)
    app = create_app(store, registry, Settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        viewer = await bearer(store, AccessRole.VIEWER)
        rules = (await client.get("/api/v1/rules", headers=viewer)).json()
        assert [(r["name"], r["kind"]) for r in rules] == [
            ("pue_high", "threshold"),
            ("pue_new_large", "threshold"),
            ("silent", "staleness"),
        ]
        assert rules[1]["site_labels"] == {"class": "new-large"}
        site = (await client.get(f"/api/v1/sites/{sites.dc}", headers=viewer)).json()
        assert site["labels"] == {"class": "new-large"}
        assert rules[0]["recover_threshold"] == 1.45
        assert rules[2]["silent_ms"] == 300_000
        await _write_alert(store, sites.dc)  # severity critical
        critical = (await client.get("/api/v1/alerts?severity=critical", headers=viewer)).json()
        warning = (await client.get("/api/v1/alerts?severity=warning", headers=viewer)).json()
        assert {a["site_id"] for a in critical} == {sites.dc}
        assert all(a["severity"] == "warning" for a in warning)
