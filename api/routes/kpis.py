"""KPI windows of a site for every period: the latest closed one, series over a time range, and the
revision history of one window (the values it had before each restatement)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from api.deps import MAX_RANGE_WINDOWS, KpiRangeDep, PeriodDep, SettingsDep, SiteDep, StoreDep, invalid_path
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.schemas import ErrorPublic, KpiHistoryPublic, KpiRevisionPublic, KpiWindowPublic
from api.timestamps import TimestampError, datetime_from_ms, parse_timestamp_ms
from peakwatch.domain.periods import Period, window_start

DEFAULT_SERIES_LIMIT: Final = 1440
MAX_SERIES_LIMIT: Final = 10_000

router = APIRouter(prefix="/sites/{site_id}/kpis", tags=["kpis"])


@router.get(
    "/latest",
    response_model=KpiWindowPublic,
    summary="The most recent closed KPI window of a period",
    responses={
        status.HTTP_404_NOT_FOUND: {
            "model": ErrorPublic,
            "description": "Unknown site, or no window of the period has closed yet for it (the message "
            "says which).",
        },
        **DATABASE_DOWN,
    },
)
async def latest_kpis(
    site: SiteDep, store: StoreDep, settings: SettingsDep, period: PeriodDep
) -> KpiWindowPublic:
    window = await store.latest_kpis(site.id, period=period.value)
    if window is None:
        if period is Period.MINUTE:
            hint = (
                f"a {settings.window_ms / 1000:g} s window closes {settings.allowed_lateness_ms / 1000:g} s "
                "after its end once readings for it have arrived"
            )
        else:
            hint = f"a {period.value} window is stored once every minute in it has closed"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no closed {period.value} KPI window yet for site {site.id!r}; {hint}",
        )
    return KpiWindowPublic.from_window(window, site)


@router.get(
    "",
    response_model=list[KpiWindowPublic],
    summary="KPI windows of a period over a time range",
    description=(
        "Windows of `period` with `from <= window_start < to`, oldest first. Without `from`/`to`: the "
        f"last 60 windows' worth of time (1 h of 1m windows). The range may span at most {MAX_RANGE_WINDOWS} "
        "windows of the period (31 days of 1-minute windows). "
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
    windows = await store.kpi_series(
        site.id, time_range.from_ms, time_range.to_ms, limit=limit, period=time_range.period.value
    )
    if len(windows) >= limit:
        # One window per start instant and period: resume just after the last one.
        next_from_ms = windows[-1].start_ms + 1
        next_url = request.url.include_query_params(**{"from": next_from_ms, "to": time_range.to_ms})
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return [KpiWindowPublic.from_window(w, site) for w in windows]


@router.get(
    "/{period}/{window_start}/revisions",
    response_model=KpiHistoryPublic,
    summary="A window's current values and every earlier revision",
    description=(
        "A window is restated when late data, a meter replacement, a factor revision or a monthly input "
        "changes it; the values it had before are kept with the reason. `window_start` must be the start "
        "of a window of `period` in the site's time zone."
    ),
    responses={
        status.HTTP_404_NOT_FOUND: {
            "model": ErrorPublic,
            "description": "Unknown site, or no such window stored.",
        },
        **DATABASE_DOWN,
    },
)
async def kpi_revisions(
    site: SiteDep,
    store: StoreDep,
    period: Annotated[Period, Path(description="1m, 15m, 1h, 1d, 1mo or 12mo.")],
    window_start_: Annotated[
        str,
        Path(
            alias="window_start",
            description="Start of the window: RFC 3339 with an offset or epoch milliseconds.",
            examples=["2025-03-01T00:00:00+08:00"],
        ),
    ],
) -> KpiHistoryPublic:
    try:
        start_ms = parse_timestamp_ms(window_start_)
    except TimestampError as exc:
        raise invalid_path("window_start", str(exc), window_start_) from None
    # a rolling 12-month window starts where a month starts (window_start(YEAR) is the one *ending* there)
    aligned = window_start(Period.MONTH if period is Period.YEAR else period, start_ms, site.timezone)
    if aligned != start_ms:
        raise invalid_path(
            "window_start",
            f"{datetime_from_ms(start_ms):%Y-%m-%dT%H:%M:%S.%fZ} is not the start of a {period.value} window "
            f"in {site.timezone}; the window containing it starts at "
            f"{datetime_from_ms(aligned):%Y-%m-%dT%H:%M:%SZ} ({aligned} ms)",
            window_start_,
        )
    found = await store.kpi_series(site.id, start_ms, start_ms + 1, limit=1, period=period.value)
    if not found:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no {period.value} KPI window starting at {start_ms} ms for site {site.id!r}",
        )
    revisions = await store.kpi_revisions(site.id, period.value, start_ms)
    return KpiHistoryPublic(
        current=KpiWindowPublic.from_window(found[0], site),
        revisions=[KpiRevisionPublic.from_revision(r, site) for r in revisions],
    )
