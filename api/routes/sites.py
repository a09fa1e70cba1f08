"""Sites as stored (mirrored from the YAML registry), with the factors their carbon KPIs use."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter

from api.auth import PrincipalDep
from api.deps import FactorLibraryDep, SiteDep, StoreDep, grid_factor_id, now_ms
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.meter_health import meter_health
from api.schemas.factors import FactorPublic
from api.schemas.sites import MeterCountsPublic, SiteDetailPublic, SitePublic

router = APIRouter(prefix="/sites", tags=["sites"])


@router.get("", response_model=list[SitePublic], summary="List sites", responses={**DATABASE_DOWN})
async def list_sites(store: StoreDep, library: FactorLibraryDep, principal: PrincipalDep) -> list[SitePublic]:
    """Only the sites in the caller's scope."""
    sites = [s for s in await store.list_sites() if principal.sees(s.id)]
    return [SitePublic.from_site(s, grid_factor_id(library, s)) for s in sites]


@router.get(
    "/{site_id}",
    response_model=SiteDetailPublic,
    summary="One site, its meters and grid factor",
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def get_site(site: SiteDep, store: StoreDep, library: FactorLibraryDep) -> SiteDetailPublic:
    statuses = await store.meter_statuses(site.id)
    now = now_ms()
    counts = Counter(meter_health(s.last_seen_ms, now) for s in statuses)
    factor_id = grid_factor_id(library, site)
    factor = library.get(factor_id) if factor_id is not None and factor_id in library else None
    return SiteDetailPublic(
        **SitePublic.from_site(site, factor_id).model_dump(),
        meters_count=len(statuses),
        meters_by_status=MeterCountsPublic(ok=counts["ok"], stale=counts["stale"], never=counts["never"]),
        grid_factor=None if factor is None else FactorPublic.from_factor(factor),
    )
