"""KPI windows of a site for every period: the latest one, series over a time range (JSON, or a CSV
download of the whole range), and the revision history of one window (the values it had before each
restatement). Periods in progress (today, this month) are shown as ``open`` windows computed from the
closed minutes (``peakwatch.store.rollups``), after the stored ones, unless ``include_open=false``."""

from __future__ import annotations

import csv
import io
import math
import re
import types
import typing
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from api.deps import (
    MAX_RANGE_WINDOWS,
    FactorLibraryDep,
    KpiRangeDep,
    PeriodDep,
    RegistryDep,
    SettingsDep,
    SiteDep,
    StoreDep,
    invalid_path,
    invalid_query,
    now_ms,
)
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.schemas.common import ErrorPublic
from api.schemas.kpis import KpiHistoryPublic, KpiRevisionPublic, KpiWindowPublic
from peakwatch.config import Registry
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.instants import parse_instant, to_datetime
from peakwatch.domain.models import KpiWindow, Site
from peakwatch.domain.periods import Period, window_start
from peakwatch.errors import InstantError
from peakwatch.store import Store
from peakwatch.store.conn import Conn
from peakwatch.store.rollups import Frontiers, SiteRollup, frontiers

DEFAULT_SERIES_LIMIT: Final = 1440
MAX_SERIES_LIMIT: Final = 10_000

router = APIRouter(prefix="/sites/{site_id}/kpis", tags=["kpis"])

IncludeOpenQuery = Annotated[
    bool,
    Query(
        description="Also return the windows of periods in progress (`status: open`, computed from the "
        "minutes closed so far; never for 1m). `false`: stored (closed) windows only."
    ),
]


class OpenWindows:
    """The windows of a period in progress, computed for one request, with what their progress is
    measured against (the site's closed frontier, and the clock)."""

    def __init__(self, windows: list[KpiWindow], closed_ms: int, now: int) -> None:
        self.windows = windows
        self.at = (closed_ms, now)

    def public(self, w: KpiWindow, site: Site) -> KpiWindowPublic:
        return KpiWindowPublic.from_window(w, site, open_at=self.at)


@dataclass(frozen=True, slots=True)
class OpenPeriods:
    """What computing a site's open windows needs: the routes gather it once from their dependencies."""

    store: Store
    registry: Registry
    library: FactorLibrary
    site: Site

    async def windows(self, period: Period, starts: tuple[int, int] | None = None) -> OpenWindows:
        """The open windows of ``period`` starting in ``[starts)`` (default: the newest only)."""
        async with self.store.transaction("computing the windows of periods in progress") as conn:
            at = await frontiers(conn, self.site.id)
            return await self.within(conn, at, period, starts)

    async def within(
        self, conn: Conn, at: Frontiers | None, period: Period, starts: tuple[int, int] | None = None
    ) -> OpenWindows:
        """``windows`` inside the caller's snapshot (``at``: the site's frontiers, read first in it)."""
        now = now_ms()
        if period is Period.MINUTE or at is None:
            return OpenWindows([], 0, now)
        try:
            rollup = SiteRollup.of(self.registry, self.library, self.site, self.store.inputs)
        except KeyError:  # the stored site names a factor set this configuration lacks: no KPIs to compute
            return OpenWindows([], 0, now)
        if starts is None:  # the newest: the one the frontier is inside, or just completed
            windows = await rollup.in_progress(conn, period, at, lambda s, e: e >= at.closed_ms)
        else:
            windows = await rollup.in_progress(conn, period, at, lambda s, e: starts[0] <= s < starts[1])
        return OpenWindows(windows[-1:] if starts is None else windows, at.closed_ms, now)


@router.get(
    "/latest",
    response_model=KpiWindowPublic,
    summary="The most recent KPI window of a period (the period in progress, unless include_open=false)",
    responses={
        status.HTTP_404_NOT_FOUND: {
            "model": ErrorPublic,
            "description": "Unknown site, or no window of the period has closed or begun yet for it (the "
            "message says which).",
        },
        **DATABASE_DOWN,
    },
)
async def latest_kpis(
    site: SiteDep,
    store: StoreDep,
    settings: SettingsDep,
    registry: RegistryDep,
    library: FactorLibraryDep,
    period: PeriodDep,
    include_open: IncludeOpenQuery = True,
) -> KpiWindowPublic:
    if include_open:
        opened = await OpenPeriods(store, registry, library, site).windows(period)
        if opened.windows:  # newer than every stored window
            return opened.public(opened.windows[-1], site)
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
        "Windows of `period` with `from <= window_start < to`, oldest first: the stored (closed) ones, then "
        "the period in progress (`status: open`) unless `include_open=false`. Without `from`/`to`: the "
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
    registry: RegistryDep,
    library: FactorLibraryDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_SERIES_LIMIT, description="Maximum windows returned.")
    ] = DEFAULT_SERIES_LIMIT,
    include_open: IncludeOpenQuery = True,
) -> list[KpiWindowPublic]:
    # one snapshot for the stored and the open windows: a window the accountant stores between two
    # reads would otherwise be in neither (no longer open, not stored yet when the stored ones were read)
    async with store.transaction("reading a KPI series") as conn:
        at = await frontiers(conn, site.id)  # first: it makes the transaction REPEATABLE READ
        windows = await store.kpi_series(
            site.id,
            time_range.from_ms,
            time_range.to_ms,
            limit=limit,
            period=time_range.period.value,
            conn=conn,
        )
        opened = None
        if include_open and len(windows) < limit:  # open windows start after every stored one
            span = (time_range.from_ms, time_range.to_ms)
            sources = OpenPeriods(store, registry, library, site)
            opened = await sources.within(conn, at, time_range.period, span)
    public = [KpiWindowPublic.from_window(w, site) for w in windows]
    if opened is not None:
        more = opened.windows[: limit - len(windows)]
        windows += more
        public += [opened.public(w, site) for w in more]
    if len(windows) >= limit:
        # One window per start instant and period: resume just after the last one.
        next_from_ms = windows[-1].start_ms + 1
        next_url = request.url.include_query_params(**{"from": next_from_ms, "to": time_range.to_ms})
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return public


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
        start_ms = parse_instant(window_start_)
    except InstantError as exc:
        raise invalid_path("window_start", str(exc), window_start_) from None
    # a rolling 12-month window starts where a month starts (window_start(YEAR) is the one *ending* there)
    aligned = window_start(Period.MONTH if period is Period.YEAR else period, start_ms, site.timezone)
    if aligned != start_ms:
        raise invalid_path(
            "window_start",
            f"{to_datetime(start_ms):%Y-%m-%dT%H:%M:%S.%fZ} is not the start of a {period.value} window "
            f"in {site.timezone}; the window containing it starts at "
            f"{to_datetime(aligned):%Y-%m-%dT%H:%M:%SZ} ({aligned} ms)",
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


# ------------------------------------------------------------------------------------------ CSV export

CSV_CHUNK_WINDOWS: Final = MAX_SERIES_LIMIT
"""Windows read per query while a CSV streams: memory stays flat however long the range."""
UTF8_BOM: Final = "\ufeff"
_LEADING_COLUMNS: Final = ("window_start", "window_end", "status")
_NOT_KPIS: Final = frozenset({"window_start", "window_end"})  # instants: the timestamp columns say them


def _is_number(annotation: object) -> bool:
    """``float``, ``int`` or either ``| None`` (``bool`` is not a number here: it is no KPI)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and args[0] in (float, int)
    return annotation in (float, int)


CSV_FIELDS: Final[tuple[str, ...]] = tuple(
    name
    for name, field in KpiWindowPublic.model_fields.items()
    if name not in _NOT_KPIS
    and name not in {twin for _, _, twin in KpiWindowPublic.instant_twins}  # a window's times are no KPI
    and _is_number(field.annotation)
)
"""Every number of ``KpiWindowPublic`` in its declared order: the default CSV columns after the two
timestamps. Derived from the model, so a KPI added to the JSON route is exported the same day."""


def csv_fields(requested: str | None) -> tuple[str, ...]:
    """The KPI columns ``fields`` asks for (comma-separated, order kept, repeats dropped); all by default.

    Raises the 422 of an unknown or empty selection, naming every known field so the caller can fix it.
    """
    if requested is None:
        return CSV_FIELDS
    names = tuple(dict.fromkeys(n.strip() for n in requested.split(",") if n.strip()))
    known = ", ".join(CSV_FIELDS)
    if not names:
        raise invalid_query("fields", f"no field named; known fields: {known}", requested)
    unknown = [n for n in names if n not in CSV_FIELDS]
    if unknown:
        raise invalid_query(
            "fields", f"unknown field(s) {', '.join(map(repr, unknown))}; known fields: {known}", requested
        )
    return names


def csv_number(value: float | int | None) -> str:
    """``repr`` precision (the shortest text that reads back as the same float: no rounding); empty
    for ``None`` and for non-finite values, which no KPI has and a spreadsheet would take for text."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value)


def local_timestamp(ms: int, zone: ZoneInfo) -> str:
    """RFC 3339 in the site's zone (``2024-06-01T08:00:00+08:00``): a local day reads as that day."""
    local = to_datetime(ms).astimezone(zone)
    return local.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")


def csv_rows(windows: Iterable[KpiWindowPublic], zone: ZoneInfo, fields: Sequence[str]) -> str:
    """CSV lines (RFC 4180, CRLF) of ``windows``, each value the JSON route's for the same window.

    Formula injection (a cell starting with ``=``, ``+``, ``-`` or ``@`` run by a spreadsheet) cannot
    happen: every cell is a timestamp, ``open``/``closed`` or a number written by ``repr`` (finite: a
    negative one is a number to a spreadsheet, not a formula); no other text of the window (flags,
    notes) is exported.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for w in windows:
        writer.writerow(
            [
                local_timestamp(w.window_start, zone),
                local_timestamp(w.window_end, zone),
                w.status,
                *(csv_number(getattr(w, f)) for f in fields),
            ]
        )
    return out.getvalue()


async def kpi_window_chunks(
    store: Store, site_id: str, period: Period, from_ms: int, to_ms: int, chunk: int = CSV_CHUNK_WINDOWS
) -> AsyncIterator[list[KpiWindow]]:
    """Every window of the range, oldest first, ``chunk`` at a time (no ``limit`` cut): each query
    resumes just after the last window of the previous one (one window per start instant)."""
    while from_ms < to_ms:
        windows = await store.kpi_series(site_id, from_ms, to_ms, limit=chunk, period=period.value)
        if windows:
            yield windows
        if len(windows) < chunk:
            return
        from_ms = windows[-1].start_ms + 1


_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._+-]")


def csv_filename(site: Site, period: Period, from_ms: int, to_ms: int, zone: ZoneInfo) -> str:
    """``<site>_<period>_<from>_<to>.csv``, the instants in the site's zone in the basic ISO 8601 form
    (no ``:``, which Windows refuses in file names)."""

    def stamp(ms: int) -> str:
        return to_datetime(ms).astimezone(zone).strftime("%Y%m%dT%H%M%S%z")

    return f"{site.id}_{period.value}_{stamp(from_ms)}_{stamp(to_ms)}.csv"


def content_disposition(filename: str) -> str:
    """An ASCII fallback plus RFC 6266's ``filename*`` so no site id can break the header."""
    fallback = _UNSAFE_IN_FILENAME.sub("_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"


@router.get(
    ".csv",
    response_class=StreamingResponse,
    summary="KPI windows of a period over a time range, as a CSV download",
    description=(
        "The windows of `/kpis` (same `period`, `from`, `to`, defaults and range limit of "
        f"{MAX_RANGE_WINDOWS} windows) without `limit`: the whole range, streamed. Columns: "
        "`window_start`, `window_end` (RFC 3339 in the site's time zone), `status` (`closed`, or `open` "
        "for the period in progress, the last row; none with `include_open=false`), then the KPI "
        "fields: every number of a KPI window unless `fields` selects. An empty cell is null. Numbers "
        "are written with full precision (no rounding). `excel=true` starts the file with a UTF-8 "
        "byte order mark so Excel (zh-CN too) reads it as UTF-8."
    ),
    responses={
        status.HTTP_200_OK: {
            "description": "The CSV file (RFC 4180, CRLF line ends, a header row).",
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "headers": {
                "Content-Disposition": {
                    "description": 'attachment; filename="<site>_<period>_<from>_<to>.csv"',
                    "schema": {"type": "string"},
                }
            },
        },
        **UNKNOWN_SITE,
        **DATABASE_DOWN,
    },
)
async def kpi_series_csv(
    site: SiteDep,
    store: StoreDep,
    time_range: KpiRangeDep,
    registry: RegistryDep,
    library: FactorLibraryDep,
    fields: Annotated[
        str | None,
        Query(
            description="Comma-separated KPI fields, in the order wanted; default: all of "
            f"{', '.join(CSV_FIELDS)}.",
            examples=["pue,carbon_intensity_kg_per_kwh"],
        ),
    ] = None,
    excel: Annotated[
        bool, Query(description="Start with a UTF-8 byte order mark (Excel needs it for UTF-8).")
    ] = False,
    include_open: IncludeOpenQuery = True,
) -> StreamingResponse:
    columns = csv_fields(fields)
    zone = ZoneInfo(site.timezone)
    period = time_range.period
    chunks = kpi_window_chunks(store, site.id, period, time_range.from_ms, time_range.to_ms)
    # The first query runs before the response starts, so a database outage is still a 503 (once the
    # 200 has been sent, a failure can only cut the download short).
    first: list[KpiWindow] = await anext(chunks, [])
    starts = (time_range.from_ms, time_range.to_ms)
    sources = OpenPeriods(store, registry, library, site)
    opened = await sources.windows(period, starts) if include_open else None

    def closed(windows: list[KpiWindow]) -> str:
        return csv_rows((KpiWindowPublic.from_window(w, site) for w in windows), zone, columns)

    async def body() -> AsyncIterator[str]:
        header = io.StringIO()
        csv.writer(header, lineterminator="\r\n").writerow([*_LEADING_COLUMNS, *columns])
        yield (UTF8_BOM if excel else "") + header.getvalue()
        if first:
            yield closed(first)
        async for chunk in chunks:
            yield closed(chunk)
        if opened is not None:  # computed before the response started, like the first chunk
            yield csv_rows((opened.public(w, site) for w in opened.windows), zone, columns)

    filename = csv_filename(site, period, time_range.from_ms, time_range.to_ms, zone)
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": content_disposition(filename)},
    )
