"""The live alert stream over a real uvicorn server and a real PostgreSQL: snapshot, then one event per
committed change (acknowledgements included), only in the caller's scope; keepalives; the end of a
stream when the API stops, the credentials go, or the client is too slow.

Changes are written through the store's own paths (``write(ProcessedBatch)``, ``acknowledge_alert``),
which NOTIFY at commit as the processor's and the API's writes do. Every wait is on the stream itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

import api.stream
from api import create_app
from api.stream import AlertBroadcaster, ChangeTracker, close_streams
from peakwatch.config import Settings
from peakwatch.domain.access import AccessRole
from peakwatch.domain.models import AlertChange, ProcessedBatch
from peakwatch.store import Store
from peakwatch.store.records import AlertRecord
from tests.integration.test_api import Sites, build_registry
from tests.support import bearer, eventually

pytestmark = pytest.mark.integration

T0 = 1_717_200_000_000
WAIT_S = 20.0
"""No event takes this long; a missing one fails the test instead of hanging it."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ------------------------------------------------------------------------------------------ a real server


class _Server(uvicorn.Server):
    """Without signal handlers: the test session owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Served:
    url: str
    app: FastAPI


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[Served]:
    """``app`` on uvicorn on a socket bound beforehand: clients may connect at once (the kernel queues
    them until uvicorn accepts), so there is nothing to poll for."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        await close_streams(app)  # before uvicorn's exit, which waits for open responses
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@pytest.fixture
async def sites(store: Store) -> Sites:
    seeded = build_registry(uuid.uuid4().hex[:8])
    await store.sync_registry(seeded.registry)
    return seeded


@pytest.fixture
async def served(store: Store, sites: Sites) -> AsyncIterator[Served]:
    async with serve(create_app(store, sites.registry, Settings())) as running:
        yield running


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=WAIT_S) as client:
        yield client


# ------------------------------------------------------------------------------------------ reading SSE


@dataclass
class Event:
    event: str
    data: Any


class Stream:
    """Reads events off an open response; ``comments`` collects ``: ...`` lines as they pass."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self) -> Event | None:
        """The next event, ``None`` when the server ended the stream."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(WAIT_S):
            async for line in self._lines:
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line == "":
                    if "event" in fields:
                        return Event(fields["event"], json.loads(fields["data"]))
                    fields.clear()  # a block of only retry: or comments
                else:
                    name, _, value = line.partition(": ")
                    fields[name] = value
        return None

    async def alert(self) -> dict[str, Any]:
        event = await self.next()
        assert event is not None, "the stream ended"
        assert event.event == "alert", event
        data: dict[str, Any] = event.data
        return data

    async def comment(self, text: str) -> None:
        """Read until a comment starting with ``text`` has passed (events in between must not come)."""
        async with asyncio.timeout(WAIT_S):
            async for line in self._lines:
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    if line[1:].strip().startswith(text):
                        return
                else:
                    assert not line.startswith(("event", "data")), line
        raise AssertionError(f"the stream ended before {text!r}")


@contextlib.asynccontextmanager
async def stream(
    http: httpx.AsyncClient, headers: dict[str, str], query: str = ""
) -> AsyncIterator[tuple[Stream, list[dict[str, Any]]]]:
    """An open stream and its snapshot."""
    async with http.stream("GET", f"/api/v1/alerts/stream{query}", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        reader = Stream(response)
        first = await reader.next()
        assert first is not None
        assert first.event == "snapshot"
        yield reader, first.data


def change(site_id: str, state: str, *, rule: str = "pue_high", at_ms: int = T0 + 60_000) -> AlertChange:
    return AlertChange(
        fingerprint=f"{rule}/{site_id}",
        rule=rule,
        site_id=site_id,
        state=state,
        severity="critical",
        summary=f"{rule} {state}",
        value=1.6,
        started_ms=T0,
        at_ms=at_ms,
        labels={"alertname": rule, "site": site_id, "severity": "critical"},
    )


async def write(store: Store, *changes: AlertChange) -> None:
    await store.write(ProcessedBatch(alerts=list(changes)))


async def open_alert(store: Store, site_id: str, rule: str = "pue_high") -> int:
    await write(store, change(site_id, "firing", rule=rule))
    alerts = await store.list_alerts(site_id=site_id, state="firing")
    return next(a.id for a in alerts if a.rule == rule)


# ------------------------------------------------------------------------------------------ the stream


async def test_snapshot_then_every_change_of_the_callers_sites(
    store: Store, http: httpx.AsyncClient, sites: Sites
) -> None:
    dc_alert = await open_alert(store, sites.dc)
    await open_alert(store, sites.park)
    await write(
        store, change(sites.dc, "pending", rule="closed"), change(sites.dc, "inactive", rule="closed")
    )
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    async with stream(http, viewer) as (events, snapshot):
        assert [(a["id"], a["state"]) for a in snapshot] == [(dc_alert, "firing")]  # open alerts only
        assert snapshot[0]["labels"] == {"alertname": "pue_high", "site": sites.dc, "severity": "critical"}
        assert snapshot[0]["started_at"] == "2024-06-01T00:00:00Z"
        # a new alert at the site
        await write(store, change(sites.dc, "pending", rule="cue_high"))
        opened = await events.alert()
        assert (opened["rule"], opened["state"], opened["site_id"]) == ("cue_high", "pending", sites.dc)
        # an acknowledgement does not change updated_at, and is sent all the same
        acked = await store.acknowledge_alert(dc_alert, "ops-1", now_ms())
        assert acked is not None
        event = await events.alert()
        assert (event["id"], event["acknowledged_by"]) == (dc_alert, "ops-1")
        assert event["updated_ms"] == snapshot[0]["updated_ms"]
        # another site's change is not sent: the next event is this site's resolution
        await write(store, change(sites.park, "resolved", at_ms=T0 + 120_000))
        await write(store, change(sites.dc, "resolved", at_ms=T0 + 180_000))
        resolved = await events.alert()
        assert (resolved["id"], resolved["state"], resolved["resolved_ms"]) == (
            dc_alert,
            "resolved",
            T0 + 180_000,
        )
        # an alert opened and closed between two wake-ups is still reported, closed
        await write(
            store, change(sites.dc, "pending", rule="wue_high"), change(sites.dc, "inactive", rule="wue_high")
        )
        closed = await events.alert()
        assert (closed["rule"], closed["state"]) == ("wue_high", "inactive")


async def test_a_closing_with_an_old_event_time_is_sent(store: Store, sites: Sites) -> None:
    """``updated_at`` is the processor's event time (a replayed window carries an old one): an alert
    that closes is found because it left the open alerts, not by its ``updated_at``."""
    broadcaster = AlertBroadcaster(store, recent=1)  # the most recently updated alert is another one
    try:
        await write(store, change(sites.dc, "firing", rule="recent", at_ms=T0 + 3_600_000))
        late = await open_alert(store, sites.dc)  # updated at T0 + 1 min
        subscription = await broadcaster.subscribe(lambda alert: True)
        await write(store, change(sites.dc, "resolved", at_ms=T0 + 90_000))
        resolved = await subscription.next(WAIT_S)
        assert resolved is not None
        assert (resolved.id, resolved.state, resolved.updated_ms) == (late, "resolved", T0 + 90_000)
    finally:
        await broadcaster.close()


async def test_site_filter_and_scope(store: Store, http: httpx.AsyncClient, sites: Sites) -> None:
    dc_alert = await open_alert(store, sites.dc)
    park_alert = await open_alert(store, sites.park)
    admin = await bearer(store)
    async with stream(http, admin) as (everything, snapshot):
        assert {a["id"] for a in snapshot} == {dc_alert, park_alert}
        async with stream(http, admin, f"?site_id={sites.park}") as (park_only, park_snapshot):
            assert [a["id"] for a in park_snapshot] == [park_alert]
            await store.acknowledge_alert(dc_alert, "ops", now_ms())
            await store.acknowledge_alert(park_alert, "ops", now_ms())
            seen = {(await everything.alert())["id"], (await everything.alert())["id"]}
            assert seen == {dc_alert, park_alert}
            assert (await park_only.alert())["id"] == park_alert
    viewer = await bearer(store, AccessRole.VIEWER, (sites.dc,))
    outside = await http.get(f"/api/v1/alerts/stream?site_id={sites.park}", headers=viewer)
    assert outside.status_code == 403
    assert outside.json()["detail"] == f"site {sites.park!r} is outside your scope"
    unknown = await http.get("/api/v1/alerts/stream?site_id=nowhere", headers=admin)
    assert unknown.status_code == 404
    anonymous = await http.get("/api/v1/alerts/stream")
    assert anonymous.status_code == 401


async def test_keepalive_comments(
    store: Store, http: httpx.AsyncClient, sites: Sites, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.stream, "KEEPALIVE_S", 0.05)
    async with stream(http, await bearer(store)) as (events, _):
        await events.comment("keepalive")
        await events.comment("keepalive")
        assert events.comments[:2] == ["keepalive", "keepalive"]


async def test_the_stream_ends_when_the_credentials_go(
    store: Store, http: httpx.AsyncClient, sites: Sites, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.stream, "RECHECK_S", 0.0)  # check after every event
    admin = await bearer(store)
    made = await http.post("/api/v1/tokens", headers=admin, json={"name": "wallboard", "role": "viewer"})
    token = made.json()["token"]
    async with stream(http, {"Authorization": f"Bearer {token}"}) as (events, _):
        await open_alert(store, sites.dc)
        assert (await events.alert())["site_id"] == sites.dc  # still valid: the stream goes on
        revoked = await http.delete(f"/api/v1/tokens/{made.json()['credential']['id']}", headers=admin)
        assert revoked.status_code == 204
        await open_alert(store, sites.dc, rule="cue_high")
        await events.alert()  # sent, then the check finds the token revoked
        assert await events.next() is None
        assert events.comments[-1] == "closing: the credentials are no longer valid"


async def test_streams_end_when_the_api_stops_and_when_clients_go(store: Store, sites: Sites) -> None:
    app = create_app(store, sites.registry, Settings())
    broadcaster = app.state.alert_stream
    assert isinstance(broadcaster, AlertBroadcaster)
    admin = await bearer(store)
    async with serve(app) as running, httpx.AsyncClient(base_url=running.url, timeout=WAIT_S) as http:
        async with stream(http, admin):
            assert broadcaster.subscribers == 1
        await eventually(lambda: broadcaster.subscribers == 0, "the server noticed the client left")
        async with stream(http, admin) as (events, _):
            await close_streams(app)
            assert await events.next() is None
            assert events.comments[-1] == "closing: the API is shutting down"
        refused = await http.get("/api/v1/alerts/stream", headers=admin)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"


async def test_a_client_too_far_behind_is_disconnected(store: Store, sites: Sites) -> None:
    broadcaster = AlertBroadcaster(store, queue_size=2)
    try:
        slow = await broadcaster.subscribe(lambda alert: True)
        other_site = await broadcaster.subscribe(lambda alert: alert.site_id == sites.park)
        await write(store, *(change(sites.dc, "firing", rule=f"rule_{i}") for i in range(3)))
        assert await slow.next(WAIT_S) is None  # what was queued is dropped with the client
        assert slow.reason == "more than 2 events behind"
        assert broadcaster.subscribers == 1
        await write(store, change(sites.park, "firing"))
        park = await other_site.next(WAIT_S)  # the others are not held back
        assert park is not None
        assert park.site_id == sites.park
    finally:
        await broadcaster.close()


async def test_changes_made_while_the_connection_was_lost_are_sent(
    store: Store,
    sites: Sites,
    database_url: str,
    pg_admin: asyncpg.Connection[asyncpg.Record],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.stream, "RETRY_MIN_S", 0.01)
    broadcaster = AlertBroadcaster(store)
    try:
        subscription = await broadcaster.subscribe(lambda alert: True)
        alert_id = await open_alert(store, sites.dc)
        opened = await subscription.next(WAIT_S)
        assert opened is not None
        assert opened.id == alert_id
        killed = await pg_admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND query LIKE 'LISTEN %'",
            urlsplit(database_url).path.lstrip("/"),
        )
        assert killed == 1
        await store.acknowledge_alert(alert_id, "ops", now_ms())  # perhaps before the reconnection
        acked = await subscription.next(WAIT_S)
        assert acked is not None
        assert (acked.id, acked.acknowledged_by) == (alert_id, "ops")
    finally:
        await broadcaster.close()


# ------------------------------------------------------------------------------------------ the tracker


def record(
    alert_id: int, state: str = "firing", *, updated_ms: int = T0, acked_ms: int | None = None
) -> AlertRecord:
    return AlertRecord(
        id=alert_id,
        fingerprint=f"f{alert_id}",
        rule="pue_high",
        site_id="dc",
        state=state,
        severity="critical",
        summary="",
        value=None,
        started_ms=T0,
        fired_ms=T0,
        resolved_ms=None if state in ("pending", "firing") else updated_ms,
        updated_ms=updated_ms,
        acknowledged_ms=acked_ms,
    )


def test_the_tracker_sends_what_differs_from_what_it_sent() -> None:
    tracker = ChangeTracker()
    a, b = record(1), record(2, updated_ms=T0 + 1)
    assert tracker.update([b, a], [a, b]) == [a, b]  # oldest update first
    assert tracker.update([b, a], [a, b]) == []
    acked = record(1, acked_ms=T0 + 5)
    assert tracker.update([b, a], [acked, b]) == [acked]  # same updated_ms, acknowledged
    # b closed with an event time older than every row in "recent": read again by id
    assert tracker.to_reread([acked], [acked]) == {2}
    closed_b = record(2, "resolved", updated_ms=T0 - 60_000)
    assert tracker.update([acked], [acked], [closed_b]) == [closed_b]
    assert tracker.to_reread([acked], [acked]) == set()  # closed rows are final: not read again
    # b was open in "recent" (read first) and closed before the open alerts were read
    c = record(3)
    assert tracker.to_reread([c], []) == {1, 3}
    assert tracker.to_reread([record(3, "resolved")], [acked]) == set()
