"""Carbon-peak targets per site and their progress: year to date, year-end projection, status.

Year to date is computed like any window: the components of the site's closed ``1d`` windows from
local 1 January are summed and the KPIs computed from the sum (``window_kpis`` with the 12-month
rules, so monthly inputs apply), never by averaging daily values. Three spans, because monthly inputs
only cover whole months:

* most KPIs: closed days, 1 January to the start of today (local);
* market-based KPIs and REF (green certificates and contracts are per month): whole months, 1 January
  to the start of the current month;
* value-added KPIs: the months with value added entered, from January without a gap.

``elapsed_share`` is the share of the year a span covers; the status is final (met / missed) once it
covers the whole year. The baseline year of a ``reduce_by`` target is computed the same way.
``completeness`` counts every configured meter in every minute of the span, as the processor does for
its month and 12-month windows: a day without data lowers it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.auth import ADMIN
from api.deps import FactorLibraryDep, RegistryDep, SiteDep, StoreDep, invalid_body, now_ms, site_factors
from api.errors import DATABASE_DOWN, UNKNOWN_SITE
from api.schemas.common import ErrorPublic
from api.schemas.targets import SpanPublic, TargetIn, TargetProgressPublic, TargetPublic
from peakwatch.config import Registry
from peakwatch.domain.components import add_components
from peakwatch.domain.factors import ResolvedFactors
from peakwatch.domain.instants import from_datetime, to_datetime
from peakwatch.domain.kpis import WindowInputs, expect_every_minute, green_coverage, window_kpis
from peakwatch.domain.models import Components, KpiWindow, Site, SiteKind
from peakwatch.domain.periods import Period, window_end, window_start, zone
from peakwatch.domain.targets import Target, evaluate, target_problem
from peakwatch.store import Store

router = APIRouter(prefix="/sites/{site_id}/targets", tags=["targets"])

MONTHLY_KPIS: Final = frozenset(
    {
        "green_certificates_kwh",
        "electricity_emissions_market_kg",
        "emissions_market_kg",
        "carbon_intensity_market_kg_per_kwh",
        "green_power_share_market",
        "ref",
    }
)
VALUE_ADDED_KPIS: Final = frozenset({"value_added_10k_cny", "energy_intensity_kgce_per_10k_cny"})


def year_range_ms(year: int, tz: str) -> tuple[int, int]:
    """``[1 January, next 1 January)`` in the site's time zone, epoch ms."""
    start = from_datetime(datetime(year, 1, 1, tzinfo=zone(tz)))
    end = from_datetime(datetime(year + 1, 1, 1, tzinfo=zone(tz)))
    return start, end


def local_year(ts_ms: int, tz: str) -> int:
    return to_datetime(ts_ms, zone(tz)).year


@router.get(
    "",
    response_model=list[TargetPublic],
    summary="Targets of a site",
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def list_targets(
    site: SiteDep,
    store: StoreDep,
    year: Annotated[int | None, Query(ge=2000, le=2100, description="Only targets for this year.")] = None,
) -> list[TargetPublic]:
    return [TargetPublic.from_target(t) for t in await store.inputs.list_targets(site.id, year)]


@router.post(
    "",
    dependencies=[ADMIN],
    response_model=TargetPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add a target",
    description=(
        "`kpi` is any numeric field of a KPI window (`pue`, `energy_intensity_kgce_per_10k_cny`, "
        "`green_power_share`, `emissions_kg` ...). `at_most` / `at_least` keep the year's value at most / "
        "at least `value`; `reduce_by` lowers it by the share `value` (0.14 for −14%) against "
        "`baseline_year`, which only `reduce_by` takes."
    ),
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def add_target(site: SiteDep, store: StoreDep, body: TargetIn) -> TargetPublic:
    target = Target(
        site_id=site.id,
        kpi=body.kpi,
        kind=body.kind,
        value=body.value,
        year=body.year,
        baseline_year=body.baseline_year,
        note=body.note,
    )
    problem = target_problem(target, data_centre=site.kind is SiteKind.DATA_CENTRE)
    if problem is not None:
        field, message = problem
        raise invalid_body(field, message, getattr(body, field))
    return TargetPublic.from_target(await store.inputs.add_target(target))


@router.delete(
    "/{target_id}",
    dependencies=[ADMIN],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a target",
    responses={
        status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "Unknown site or target."},
        **DATABASE_DOWN,
    },
)
async def delete_target(site: SiteDep, store: StoreDep, target_id: int) -> Response:
    if not await store.inputs.delete_target(site.id, target_id):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"unknown target {target_id} at site {site.id!r}"
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/progress",
    response_model=list[TargetProgressPublic],
    summary="Progress of a year's targets: year to date, projection, status",
    description=(
        "For every target of `year` (default: the current year in the site's time zone): the KPI over the "
        "year to date, the year-end projection (totals such as emissions_kg scale with the elapsed share; "
        "ratios such as PUE or energy intensity do not), the value to reach and the status. Year to date "
        "sums the site's closed 1-day windows from local 1 January to the start of today; market-based "
        "KPIs and REF use whole months only, value-added KPIs the months with value added entered."
    ),
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def target_progress(
    site: SiteDep,
    store: StoreDep,
    registry: RegistryDep,
    library: FactorLibraryDep,
    year: Annotated[
        int | None, Query(ge=2000, le=2100, description="Default: the current local year.")
    ] = None,
) -> list[TargetProgressPublic]:
    now = now_ms()
    targets = await store.inputs.list_targets(
        site.id, year if year is not None else local_year(now, site.timezone)
    )
    if not targets:
        return []
    progress = _Progress(site, store, registry, site_factors(library, site), now)
    await progress.load_inputs(needs_demand=any(t.kpi == "max_demand_kw" for t in targets))
    return [await progress.of(t) for t in targets]


class _Progress:
    """Year-to-date and baseline windows of one site, computed once per span and shared by its targets."""

    def __init__(
        self, site: Site, store: Store, registry: Registry, factors: ResolvedFactors | None, now: int
    ) -> None:
        self.site = site
        self.tz = site.timezone
        self.store = store
        self.meters_count = len(registry.site_meters(site.id))
        self.thresholds = registry.gb40879_thresholds
        self.factors = factors
        self.now = now
        self.certificates: dict[tuple[int, int], float] = {}
        self.value_added: dict[tuple[int, int], float] = {}
        self.needs_demand = False
        self._windows: dict[tuple[int, int], KpiWindow | None] = {}

    async def load_inputs(self, *, needs_demand: bool) -> None:
        self.needs_demand = needs_demand
        for g in await self.store.inputs.list_green_instruments(self.site.id):
            key = (g.month.year, g.month.month)
            self.certificates[key] = self.certificates.get(key, 0.0) + g.kwh
        for v in await self.store.inputs.list_value_added(self.site.id):
            self.value_added[(v.month.year, v.month.month)] = v.value_cny

    def months_in(self, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        """(year, month) of the local months starting in ``[from_ms, to_ms)`` (month starts only)."""
        out: list[tuple[int, int]] = []
        start = from_ms
        while start < to_ms:
            local = to_datetime(start, zone(self.tz))
            out.append((local.year, local.month))
            start = window_end(Period.MONTH, start, self.tz)
        return out

    def span(self, kpi: str, year: int) -> tuple[int, int]:
        """The part of ``year`` whose data the KPI is computed from (see the module docstring)."""
        start, end = year_range_ms(year, self.tz)
        if kpi in VALUE_ADDED_KPIS:
            month_cut = min(max(window_start(Period.MONTH, self.now, self.tz), start), end)
            cut = start
            while cut < month_cut and self.months_in(cut, cut + 1)[0] in self.value_added:
                cut = window_end(Period.MONTH, cut, self.tz)
            return start, cut
        period = Period.MONTH if kpi in MONTHLY_KPIS else Period.DAY
        return start, min(max(window_start(period, self.now, self.tz), start), end)

    async def window(self, from_ms: int, to_ms: int) -> KpiWindow | None:
        key = (from_ms, to_ms)
        if key not in self._windows:
            self._windows[key] = await self._compute(from_ms, to_ms)
        return self._windows[key]

    async def _compute(self, from_ms: int, to_ms: int) -> KpiWindow | None:
        if to_ms <= from_ms or self.factors is None:
            return None
        components = await self.store.components_between(self.site.id, Period.DAY.value, from_ms, to_ms)
        if components == Components():  # no closed day in the span
            return None
        # every configured meter is expected every minute of the span, so days without a window lower
        # the completeness instead of vanishing from it
        components = expect_every_minute(components, self.meters_count, from_ms, to_ms)
        months = self.months_in(from_ms, to_ms)
        month_start = from_ms
        for month in months:  # certificates cover each month's purchases, clamped month by month
            month_end = min(window_end(Period.MONTH, month_start, self.tz), to_ms)
            in_month = await self.store.components_between(
                self.site.id, Period.DAY.value, month_start, month_end
            )
            components = add_components(
                components, green_coverage(in_month, self.certificates.get(month, 0.0))
            )
            month_start = month_end
        value_added = [self.value_added[m] for m in months if m in self.value_added]
        max_demand = None
        if self.needs_demand:
            days = await self.store.kpi_series(
                self.site.id, from_ms, to_ms, limit=400, period=Period.DAY.value
            )
            demands = [d.max_demand_kw for d in days if d.max_demand_kw is not None]
            max_demand = max(demands) if demands else None
        inputs = WindowInputs(
            kind=self.site.kind,
            factors=self.factors,
            period=Period.YEAR,
            value_added_cny=sum(value_added) if value_added else None,
            max_demand_kw=max_demand,
            gb40879_thresholds=self.thresholds,
        )
        return window_kpis(self.site.id, from_ms, to_ms, components, inputs)

    async def of(self, target: Target) -> TargetProgressPublic:
        from_ms, to_ms = self.span(target.kpi, target.year)
        year_start, year_end = year_range_ms(target.year, self.tz)
        ytd = await self.window(from_ms, to_ms)
        baseline = None
        baseline_span = None
        if target.baseline_year is not None:
            b_from, b_to = self.span(target.kpi, target.baseline_year)
            baseline = await self.window(b_from, b_to)
            baseline_span = SpanPublic.of(b_from, b_to)
        elapsed = (to_ms - year_start) / (year_end - year_start)
        return TargetProgressPublic.from_progress(
            evaluate(target, ytd, baseline, elapsed),
            year_to_date=SpanPublic.of(from_ms, to_ms),
            baseline_span=baseline_span,
            completeness=None if ytd is None else ytd.completeness,
        )
