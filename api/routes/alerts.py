"""Alerts raised by the threshold rules, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status

from api.auth import OPERATOR, PrincipalDep, audit_site, scope_of
from api.deps import RegistryDep, StoreDep, now_ms, unknown_site
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.schemas import AlertPublic, AlertStateName, ErrorPublic, RulePublic

router = APIRouter(prefix="/alerts", tags=["alerts"])
rules_router = APIRouter(prefix="/rules", tags=["alerts"])


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
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertPublic]:
    scope = scope_of(principal, site_id)
    if site_id is not None and await store.get_site(site_id) is None:
        raise unknown_site(site_id)
    alerts = await store.list_alerts(
        site_id=site_id, state=state, limit=limit, site_ids=scope, severity=severity
    )
    return [AlertPublic.from_record(a) for a in alerts]


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


@rules_router.get(
    "",
    response_model=list[RulePublic],
    summary="The alert rules the registry configures",
    description="Threshold rules (on closed KPI windows) and staleness rules (on the clock); "
    "docs/alerting.md explains each field.",
)
async def list_rules(registry: RegistryDep, principal: PrincipalDep) -> list[RulePublic]:
    """A rule scoped to named sites is shown only with the sites in the caller's scope (and not at all
    when none is)."""
    rules = [RulePublic.from_threshold(r) for r in registry.rules]
    rules += [RulePublic.from_staleness(r) for r in registry.staleness_rules]
    shown = []
    for rule in rules:
        if rule.site_ids:
            visible = principal.visible(rule.site_ids)
            if not visible:
                continue
            rule = rule.model_copy(update={"site_ids": visible})
        shown.append(rule)
    return shown
