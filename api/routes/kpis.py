"""KPI windows of a site: the latest closed one, and series over a time range."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from api.deps import MAX_RANGE_WINDOWS, KpiRangeDep, SettingsDep, SiteDep, StoreDep
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.schemas import ErrorPublic, KpiWindowPublic

DEFAULT_SERIES_LIMIT: Final = 1440
MAX_SERIES_LIMIT: Final = 10_000

router = APIRouter(prefix="/sites/{site_id}/kpis", tags=["kpis"])


@router.get(
    "/latest",
    response_model=KpiWindowPublic,
    summary="The most recent closed KPI window",
    responses={
        status.HTTP_404_NOT_FOUND: {
            "model": ErrorPublic,
            "description": "Unknown site, or no window has closed yet for it (the message says which).",
        },
        **DATABASE_DOWN,
    },
)
async def latest_kpis(site: SiteDep, store: StoreDep, settings: SettingsDep) -> KpiWindowPublic:
    window = await store.latest_kpis(site.id)
    if window is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no closed KPI window yet for site {site.id!r}; a {settings.window_ms / 1000:g} s "
            f"window closes {settings.allowed_lateness_ms / 1000:g} s after its end once readings for it "
            "have arrived",
        )
    return KpiWindowPublic.from_window(window)


@router.get(
    "",
    response_model=list[KpiWindowPublic],
    summary="KPI windows over a time range",
    description=(
        "Windows with `from <= window_start < to`, oldest first. Without `from`/`to`: the last hour. "
        f"The range may span at most {MAX_RANGE_WINDOWS} windows (31 days of 1-minute windows). "
        'When `limit` cuts the series, the response carries `Link: <...>; rel="next"` (same query, '
        "`from` set past the last window returned)."
    ),
    responses={
        status.HTTP_200_OK: {
            "headers": {
                "Link": {
                    "description": '`<url>; rel="next"` when `limit` cut the series.',
                    "schema": {"type": "string"},
                }
            }
        },
        **UNKNOWN_SITE,
        **DATABASE_DOWN,
    },
)
async def kpi_series(
    site: SiteDep,
    store: StoreDep,
    time_range: KpiRangeDep,
    request: Request,
    response: Response,
    limit: Annotated[
        int, Query(ge=1, le=MAX_SERIES_LIMIT, description="Maximum windows returned.")
    ] = DEFAULT_SERIES_LIMIT,
) -> list[KpiWindowPublic]:
    windows = await store.kpi_series(site.id, time_range.from_ms, time_range.to_ms, limit=limit)
    if len(windows) >= limit:
        # One window per start instant (while window_ms is unchanged): resume just after the last one.
        next_from_ms = windows[-1].start_ms + 1
        next_url = request.url.include_query_params(**{"from": next_from_ms, "to": time_range.to_ms})
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return [KpiWindowPublic.from_window(w) for w in windows]
