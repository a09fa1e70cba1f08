"""Meters of a site and whether each is reporting, for finding the one that went quiet."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SiteDep, StoreDep, now_ms
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.meter_health import STALE_AFTER_MS, meter_health
from api.schemas.meters import MeterPublic

router = APIRouter(prefix="/sites/{site_id}/meters", tags=["meters"])


@router.get(
    "",
    response_model=list[MeterPublic],
    summary="Meters of a site with last reading and status",
    description=f"`status` is `stale` when a meter has not been heard from for {STALE_AFTER_MS // 1000} s "
    "(wall clock), `never` before its first reading.",
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def list_meters(site: SiteDep, store: StoreDep) -> list[MeterPublic]:
    now = now_ms()
    return [
        MeterPublic.from_status(s, meter_health(s.last_seen_ms, now))
        for s in await store.meter_statuses(site.id)
    ]
