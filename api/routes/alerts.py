"""Alerts raised by the threshold rules, newest first, and their live stream (Server-Sent Events)."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from api.auth import OPERATOR, SESSION_COOKIE, PrincipalDep, audit_site, authenticate, scope_of
from api.deps import LimitQuery, StoreDep, now_ms, unknown_site
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.schemas.alerts import AlertPublic, AlertStateName
from api.schemas.common import ErrorPublic
from api.stream import KEEPALIVE_S, EventStreamResponse, alert_broadcaster, alert_events
from peakwatch.domain.access import Principal
from peakwatch.errors import StoreError
from peakwatch.store import Store
from peakwatch.store.records import AlertRecord

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get(
    "",
    response_model=list[AlertPublic],
    summary="List alerts, newest first",
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def list_alerts(
    store: StoreDep,
    principal: PrincipalDep,
    site_id: Annotated[str | None, Query(description="Only this site (404 if unknown).")] = None,
    state: Annotated[AlertStateName | None, Query(description="Only alerts in this state.")] = None,
    severity: Annotated[
        str | None, Query(max_length=50, description="Only this severity.", examples=["critical"])
    ] = None,
    limit: LimitQuery = 100,
) -> list[AlertPublic]:
    scope = scope_of(principal, site_id)
    if site_id is not None and await store.get_site(site_id) is None:
        raise unknown_site(site_id)
    alerts = await store.list_alerts(
        site_id=site_id, state=state, limit=limit, site_ids=scope, severity=severity
    )
    return [AlertPublic.from_record(a) for a in alerts]


_STREAM_DOC: Final = f"""A stream of `text/event-stream` (Server-Sent Events) that stays open:

* first `event: snapshot` with `data:` the JSON list of the open (pending and firing) alerts;
* then `event: alert` with `data:` one alert (the same fields as `GET /alerts`) each time one changes:
  opened, fired, acknowledged, resolved;
* a `: keepalive` comment every {KEEPALIVE_S:g} s while nothing happens.

Only alerts of sites in your scope (and of `site_id` when given) are sent. A reconnection starts with a
new snapshot, which replaces what the client knew, so nothing is missed across it.

Credentials: a browser's `EventSource` sends the dashboard's session cookie by itself (same origin);
scripts send a bearer token, e.g. `curl -N -H "Authorization: Bearer pwt_…" …/api/v1/alerts/stream`.
The stream ends when the credentials are revoked, expire or change scope (checked every minute), when
the client falls too far behind, and when the API stops; clients reconnect."""


def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """One kind of event: its name, and its data (JSON text) described by ``contentSchema``."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            "retry": {"type": "integer", "minimum": 0},
        },
    }


_ALERT_REF: Final = {"$ref": "#/components/schemas/AlertPublic"}
_EVENT_SCHEMA: Final = {
    "oneOf": [_event("snapshot", {"type": "array", "items": _ALERT_REF}), _event("alert", _ALERT_REF)]
}
"""Each event, as OpenAPI 3.2's ``itemSchema`` of a sequential media type describes it (as FastAPI's own
Server-Sent-Events routes do)."""


@router.get(
    "/stream",
    # documentation only (the handler returns an EventStreamResponse): a class without a media type
    # keeps the error responses documented as JSON, which they are
    response_class=Response,
    status_code=status.HTTP_200_OK,
    summary="Live alerts: a snapshot, then every change (Server-Sent Events)",
    description=_STREAM_DOC,
    responses={
        status.HTTP_200_OK: {
            "description": "The event stream (never ends on its own).",
            "content": {
                "text/event-stream": {
                    "itemSchema": _EVENT_SCHEMA,
                    "example": 'event: snapshot\ndata: [{"id": 7, "state": "firing", …}]\n\n'
                    'event: alert\ndata: {"id": 7, "state": "firing", "acknowledged_by": "ops", …}\n\n'
                    ": keepalive\n\n",
                }
            },
        },
        **UNKNOWN_SITE,
        **DATABASE_DOWN,
    },
)
async def stream_alerts(
    request: Request,
    store: StoreDep,
    principal: PrincipalDep,
    site_id: Annotated[
        str | None, Query(max_length=100, description="Only this site (404 if unknown).")
    ] = None,
) -> EventStreamResponse:
    scope_of(principal, site_id)
    if site_id is not None and await store.get_site(site_id) is None:
        raise unknown_site(site_id)
    accepts = functools.partial(_streamed, principal, site_id)
    broadcaster = alert_broadcaster(request)
    # Subscribed before the snapshot is read: a change committed in between is sent (perhaps twice),
    # never lost.
    subscription = await broadcaster.subscribe(accepts)
    close = functools.partial(broadcaster.unsubscribe, subscription)
    try:
        snapshot = [a for a in await store.load_open_alerts() if accepts(a)]
    except BaseException:
        close()
        raise
    snapshot.sort(key=lambda a: (a.updated_ms, a.id), reverse=True)
    token = _presented_token(request)
    events = alert_events(
        subscription,
        snapshot,
        still_allowed=functools.partial(_still_allowed, store, token, principal),
        on_close=close,
    )
    return EventStreamResponse(events, on_close=close)


def _streamed(principal: Principal, site_id: str | None, alert: AlertRecord) -> bool:
    return principal.sees(alert.site_id) and (site_id is None or alert.site_id == site_id)


def _presented_token(request: Request) -> str:
    """The token ``current_principal`` accepted: the bearer token, else the session cookie."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(SESSION_COOKIE, "")


async def _still_allowed(store: Store, token: str, principal: Principal) -> bool:
    """Whether the stream's credentials still give the rights it was opened with. A database outage is
    not a refusal: the stream stays (it gets nothing to send meanwhile anyway)."""
    try:
        again = await authenticate(store, token, now_ms())
    except HTTPException:
        return False
    except StoreError:
        return True
    return again.sites == principal.sites and not again.must_change_password


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertPublic,
    dependencies=[OPERATOR],
    summary="Acknowledge an open alert (operators and admins); records who and when",
    responses={
        status.HTTP_404_NOT_FOUND: {
            "model": ErrorPublic,
            "description": "No open alert with this id at a site in your scope.",
        },
        **DATABASE_DOWN,
    },
)
async def acknowledge_alert(
    alert_id: Annotated[int, Path(ge=1, le=2**62)], store: StoreDep, principal: PrincipalDep, request: Request
) -> AlertPublic:
    alert = await store.get_alert(alert_id)
    if alert is None or not principal.sees(alert.site_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no alert {alert_id} in your scope")
    audit_site(request, alert.site_id)
    acknowledged = await store.acknowledge_alert(alert_id, principal.user_name, now_ms())
    if acknowledged is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"alert {alert_id} is {alert.state}: only open alerts are acknowledged",
        )
    return AlertPublic.from_record(acknowledged)
