"""Dependencies and their ``Annotated`` aliases, so handlers declare what they need in one word.

Everything long-lived (store, registry, settings, probe) is put on ``app.state`` by ``create_app`` and
read back by ``api.state`` (re-exported here), so two apps in one process (tests) never share state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError

from api.auth import PrincipalDep, forbidden
from api.schemas.common import parse_month
from api.state import (
    HealthProbeDep,
    RegistryDep,
    SettingsDep,
    StoreDep,
    get_health_probe,
    get_registry,
    get_settings,
    get_store,
)
from peakwatch.clock import now_ms
from peakwatch.config import Settings
from peakwatch.domain.factors import GRID_SLOT, FactorLibrary, ResolvedFactors
from peakwatch.domain.instants import parse_instant
from peakwatch.domain.models import Meter, Site
from peakwatch.domain.periods import Period
from peakwatch.errors import InstantError

__all__ = [  # the app.state getters, re-exported: handlers import every dependency from here
    "HealthProbeDep",
    "RegistryDep",
    "SettingsDep",
    "StoreDep",
    "get_health_probe",
    "get_registry",
    "get_settings",
    "get_store",
    "now_ms",
]

DEFAULT_RANGE_WINDOWS: Final = 60
"""``/kpis`` without ``from``/``to`` returns the last 60 windows of the period (the last hour of 1m)."""

MAX_RANGE_WINDOWS: Final = 44_640
"""Longest ``/kpis`` range, in windows of the period: 31 days of 1-minute windows."""

NOMINAL_PERIOD_MS: Final[dict[Period, int]] = {
    Period.QUARTER_HOUR: 900_000,
    Period.HOUR: 3_600_000,
    Period.DAY: 86_400_000,
    Period.MONTH: 31 * 86_400_000,
    Period.YEAR: 366 * 86_400_000,
}
"""Longest window of each period (calendar periods vary), for range limits; 1m uses ``window_ms``."""


async def get_factor_library(store: StoreDep, registry: RegistryDep) -> FactorLibrary:
    """The library as the processor sees it: code defaults, the YAML's overrides, then the versions added
    through the API (newest), read per request so every API instance shows the same current versions."""
    return registry.factors.with_overrides(tuple(await store.inputs.load_factor_versions()))


FactorLibraryDep = Annotated[FactorLibrary, Depends(get_factor_library)]


def site_factors(library: FactorLibrary, site: Site) -> ResolvedFactors | None:
    """The site's factors, or ``None`` when the stored site names a factor set or factor the running
    configuration does not know (it was stored by another configuration)."""
    try:
        return library.resolve(site.factor_set, site.grid_factor)
    except KeyError:
        return None


def grid_factor_id(library: FactorLibrary, site: Site) -> str | None:
    """The id (without ``@version``) of the grid factor the site's location-based KPIs use."""
    resolved = site_factors(library, site)
    return None if resolved is None else resolved.used[GRID_SLOT].rsplit("@", 1)[0]


def unknown_site(site_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown site {site_id!r}")


async def get_site(
    site_id: Annotated[str, Path(description="Site id from the registry.", examples=["dc-xiangjiang"])],
    store: StoreDep,
    principal: PrincipalDep,
) -> Site:
    """The site, if the principal's scope includes it: 403 otherwise, whether or not it exists (the
    answer must not tell an outsider which sites there are)."""
    if not principal.sees(site_id):
        raise forbidden(f"site {site_id!r} is outside your scope")
    site = await store.get_site(site_id)
    if site is None:
        raise unknown_site(site_id)
    return site


SiteDep = Annotated[Site, Depends(get_site)]


async def get_meter(
    site: SiteDep,
    registry: RegistryDep,
    meter_id: Annotated[str, Path(description="Meter id within the site.", examples=["facility"])],
) -> Meter:
    meter = registry.meter(site.id, meter_id)
    if meter is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"unknown meter {meter_id!r} at site {site.id!r}"
        )
    return meter


MeterDep = Annotated[Meter, Depends(get_meter)]


def _error(name: str, message: str, value: Any, where: str = "query") -> dict[str, Any]:
    return {"type": "value_error", "loc": (where, name), "msg": message, "input": value}


def invalid_query(name: str, message: str, value: Any) -> RequestValidationError:
    """A 422 in FastAPI's own ``detail`` format, for checks pydantic cannot express (cross-field)."""
    return RequestValidationError([_error(name, message, value)])


def invalid_body(name: str, message: str, value: Any) -> RequestValidationError:
    """Like ``invalid_query`` for a field of the JSON body."""
    return RequestValidationError([_error(name, message, value, "body")])


def invalid_path(name: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError([_error(name, message, value, "path")])


async def get_month(
    month: Annotated[
        str, Path(description="Local calendar month of the site, YYYY-MM.", examples=["2025-03"])
    ],
) -> date:
    try:
        return parse_month(month)
    except ValueError as exc:
        raise invalid_path("month", str(exc), month) from None


MonthDep = Annotated[date, Depends(get_month)]


async def get_period(
    period: Annotated[
        Period,
        Query(
            description="Window period: 1m, 15m, 1h, 1d (local day), 1mo (local calendar month), "
            "12mo (rolling 12 months, identified by its first month).",
        ),
    ] = Period.MINUTE,
) -> Period:
    return period


PeriodDep = Annotated[Period, Depends(get_period)]

LimitQuery = Annotated[int, Query(ge=1, le=1000)]
"""How many items a list route returns at most (each route defaults to 100)."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    from_ms: int
    to_ms: int
    period: Period = Period.MINUTE
    """The period the range was checked for (``/kpis`` declares ``period`` through this dependency only:
    a failing dependency declared twice would report its error twice)."""


_TIME_DOC = "RFC 3339 with an offset (2024-06-01T08:00:00+08:00, ...Z) or epoch milliseconds."


def period_ms(period: Period, settings: Settings) -> int:
    return settings.window_ms if period is Period.MINUTE else NOMINAL_PERIOD_MS[period]


async def get_kpi_range(
    settings: SettingsDep,
    period: PeriodDep,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            description=f"Inclusive start (of `window_start`). {_TIME_DOC} Default: `to` minus "
            f"{DEFAULT_RANGE_WINDOWS} windows of the period (1 h of 1m windows).",
            examples=["2024-06-01T00:00:00Z"],
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            description=f"Exclusive end. {_TIME_DOC} Default: now.",
            examples=["1717200000000"],
        ),
    ] = None,
) -> TimeRange:
    """Parse and check ``from``/``to``; every refusal names the parameter and the fix."""
    parsed = parse_instants({"from": from_, "to": to})
    size_ms = period_ms(period, settings)
    to_ms = parsed.get("to", now_ms())
    from_ms = parsed.get("from", to_ms - DEFAULT_RANGE_WINDOWS * size_ms)
    if from_ms >= to_ms:
        raise invalid_query(
            "from",
            f"from ({from_ms} ms) must be before to ({to_ms} ms)",
            from_ if from_ is not None else from_ms,
        )
    limit_ms = max_range_ms(size_ms)
    if to_ms - from_ms > limit_ms:
        raise invalid_query(
            "to",
            f"range of {(to_ms - from_ms) / 86_400_000:g} days is longer than the maximum "
            f"{limit_ms / 86_400_000:g} days ({MAX_RANGE_WINDOWS} windows of {size_ms} ms, period "
            f"{period.value}); split the request",
            to if to is not None else to_ms,
        )
    return TimeRange(from_ms, to_ms, period)


def parse_instants(values: dict[str, str | None]) -> dict[str, int]:
    """The given query instants (name -> text) in epoch ms; one 422 names every bad one and its fix."""
    errors: list[dict[str, Any]] = []
    parsed: dict[str, int] = {}
    for name, value in values.items():
        if value is None:
            continue
        try:
            parsed[name] = parse_instant(value)
        except InstantError as exc:
            errors.append(_error(name, str(exc), value))
    if errors:
        raise RequestValidationError(errors)
    return parsed


def max_range_ms(window_ms: int) -> int:
    return window_ms * MAX_RANGE_WINDOWS


KpiRangeDep = Annotated[TimeRange, Depends(get_kpi_range)]
