"""The delivery log: every attempt of the notifier to deliver a message, sent or failed, so "did anyone
get paged?" has an answer without reading the notifier's logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import PrincipalDep, scope_of
from api.deps import LimitQuery, StoreDep
from api.errors import DATABASE_DOWN
from api.schemas.notifications import DeliveryPublic

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get(
    "",
    response_model=list[DeliveryPublic],
    summary="The delivery log, newest first",
    description="A user whose scope is not every site sees the deliveries about their sites only (every "
    "alert of the message at one of them).",
    responses={**DATABASE_DOWN},
)
async def list_deliveries(
    store: StoreDep,
    principal: PrincipalDep,
    alert_id: Annotated[
        int | None, Query(ge=1, le=2**62, description="Only messages that included this alert.")
    ] = None,
    limit: LimitQuery = 100,
) -> list[DeliveryPublic]:
    deliveries = await store.notify.deliveries(site_ids=scope_of(principal), alert_id=alert_id, limit=limit)
    return [DeliveryPublic.from_delivery(d) for d in deliveries]
