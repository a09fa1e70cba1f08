"""Windows of the longer periods (15 min … 12 months) from their child windows: one computation for the
accountant, which stores each window once every minute in it has closed, and for the API, which shows
the periods still in progress.

A window of a period in progress (*open*) is computed exactly as the accountant will store it: from the
stored child windows it holds plus its open child, itself computed the same way down to the closed
minutes (``peakwatch.domain.periods.windows_in_progress``). Sums are taken in the same order over the
same values, so once the period closes, the stored window equals the last open one if no minute changed.
Open windows are never stored: each request computes them from what is stored (docs/kpis.md, "Periods
in progress").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Final

import msgspec

from peakwatch.config import Registry
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.instants import to_datetime
from peakwatch.domain.kpis import WindowInputs, rollup_window
from peakwatch.domain.models import KpiWindow, Site
from peakwatch.domain.periods import (
    ROLLUP_PERIODS,
    Period,
    child_period,
    windows_in_progress,
    windows_overlapping,
    zone,
)
from peakwatch.store import restate
from peakwatch.store.conn import Conn
from peakwatch.store.inputs import InputsStore

_PERIODS: Final = [p.value for p in ROLLUP_PERIODS]


def site_inputs(
    registry: Registry,
    library: FactorLibrary,
    site: Site,
    period: Period = Period.MINUTE,
    **monthly: float | None,
) -> WindowInputs:
    """What a site's windows of ``period`` are computed with: its kind, its factor set resolved in
    ``library`` (the registry's, plus versions added through the API), the GB 40879 thresholds, and
    for months the green certificates, value added and maximum demand (``monthly``)."""
    return WindowInputs(
        kind=site.kind,
        factors=library.resolve(site.factor_set, site.grid_factor),
        period=period,
        gb40879_thresholds=registry.gb40879_thresholds,
        **monthly,
    )


def _month_date(start_ms: int, tz: str) -> date:
    local = to_datetime(start_ms, zone(tz))
    return date(local.year, local.month, 1)


@dataclass(frozen=True, slots=True)
class Frontiers:
    """Where a site's stored windows end: the closed frontier (end of the newest 1-minute window), and
    per longer period the end of its newest stored window (the site's first minute when none is)."""

    closed_ms: int
    done_ms: dict[Period, int]


async def frontiers(conn: Conn, site_id: str) -> Frontiers | None:
    """The site's frontiers, or ``None`` before its first minute closed. Index lookups only.

    Call it first in a transaction: it makes every later read of the transaction see the same snapshot,
    so a window the accountant stores meanwhile is neither missed nor counted twice (stored and open)."""
    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    rows = await conn.fetch(
        "SELECT p.period, (SELECT max(k.window_end) FROM kpi_windows k WHERE k.site_id = $1 "
        "AND k.period = p.period) AS end_ms FROM unnest($2::text[]) AS p(period)",
        site_id,
        ["1m", *_PERIODS],
    )
    ends = {r["period"]: r["end_ms"] for r in rows}
    first = await restate.first_window_start(conn, site_id)
    if ends.get("1m") is None or first is None:
        return None
    return Frontiers(
        closed_ms=int(ends["1m"]),
        done_ms={Period(p): first if ends.get(p) is None else int(ends[p]) for p in _PERIODS},
    )


@dataclass(frozen=True, slots=True)
class SiteRollup:
    """How one site's longer windows are computed: its base inputs (kind, factors, thresholds), how many
    meters it has (each expected every minute) and where its monthly inputs are stored."""

    site: Site
    inputs: WindowInputs
    meters: int
    monthly: InputsStore

    @classmethod
    def of(cls, registry: Registry, library: FactorLibrary, site: Site, monthly: InputsStore) -> SiteRollup:
        return cls(site, site_inputs(registry, library, site), len(registry.site_meters(site.id)), monthly)

    async def window(
        self, conn: Conn, period: Period, start: int, end: int, children: list[KpiWindow] | None = None
    ) -> KpiWindow:
        """A window of ``period`` from ``children`` (default: its stored child windows)."""
        site = self.site
        if children is None:
            children = await restate.load_windows(conn, site.id, child_period(period).value, start, end)
        extra: dict[str, float | None] = {}
        if period in (Period.MONTH, Period.YEAR):
            tz = site.timezone
            months = [_month_date(s, tz) for s, _ in windows_overlapping(Period.MONTH, start, end, tz)]
            added = [await self.monthly.value_added(site.id, m) for m in months]
            extra["value_added_cny"] = (
                None if any(v is None for v in added) else math.fsum(v or 0.0 for v in added)
            )
            if period is Period.MONTH:  # a 12-month window sums its months' certificate coverage instead
                extra["green_certificates_kwh"] = await self.monthly.green_kwh(site.id, months[0])
        inputs = msgspec.structs.replace(self.inputs, period=period, **extra)
        return rollup_window(site.id, start, end, children, inputs, self.meters)

    async def in_progress(
        self, conn: Conn, period: Period, at: Frontiers, keep: Callable[[int, int], bool] | None = None
    ) -> list[KpiWindow]:
        """The windows of ``period`` holding closed minutes that are not stored yet (normally one: the
        period in progress; more while the accountant catches up), oldest first; only those whose
        ``(start, end)`` ``keep`` accepts (nothing is read for the others)."""
        out: list[KpiWindow] = []
        for start, end in windows_in_progress(period, at.done_ms[period], at.closed_ms, self.site.timezone):
            if keep is not None and not keep(start, end):
                continue
            child = child_period(period)
            children = await restate.load_windows(conn, self.site.id, child.value, start, end)
            if child is not Period.MINUTE:
                children += await self.in_progress(conn, child, at, functools.partial(_inside, start, end))
                children.sort(key=lambda w: w.start_ms)
            out.append(await self.window(conn, period, start, end, children))
        return out


def _inside(lo: int, hi: int, start: int, end: int) -> bool:
    return lo <= start and end <= hi
