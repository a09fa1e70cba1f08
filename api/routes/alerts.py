"""Alerts raised by the threshold rules, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import StoreDep, unknown_site
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.schemas import AlertPublic, AlertStateName

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get(
    "",
    response_model=list[AlertPublic],
    summary="List alerts, newest first",
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def list_alerts(
    store: StoreDep,
    site_id: Annotated[str | None, Query(description="Only this site (404 if unknown).")] = None,
    state: Annotated[AlertStateName | None, Query(description="Only alerts in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertPublic]:
    if site_id is not None and await store.get_site(site_id) is None:
        raise unknown_site(site_id)
    return [
        AlertPublic.from_record(a) for a in await store.list_alerts(site_id=site_id, state=state, limit=limit)
    ]
