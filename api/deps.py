"""Dependencies and their ``Annotated`` aliases, so handlers declare what they need in one word.

Everything long-lived (store, registry, settings, probe) is put on ``app.state`` by ``create_app``;
the getters only read it back, so two apps in one process (tests) never share state.
The getters are ``async def`` although they do not await: FastAPI runs plain ``def`` dependencies
in its thread pool, a needless hop per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Final, cast

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError

from api.health import HealthProbe
from api.timestamps import TimestampError, parse_timestamp_ms
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import Site
from peakwatch.store import Store

DEFAULT_RANGE_MS: Final = 3_600_000
"""``/kpis`` without ``from``/``to`` returns the last hour."""

MAX_RANGE_WINDOWS: Final = 44_640
"""Longest ``/kpis`` range, in windows: 31 days of 1-minute windows. Scales with ``window_ms``."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def get_store(request: Request) -> Store:
    return cast(Store, request.app.state.store)


async def get_registry(request: Request) -> Registry:
    return cast(Registry, request.app.state.registry)


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_health_probe(request: Request) -> HealthProbe | None:
    return cast(HealthProbe | None, request.app.state.health)


StoreDep = Annotated[Store, Depends(get_store)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
HealthProbeDep = Annotated[HealthProbe | None, Depends(get_health_probe)]


def unknown_site(site_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown site {site_id!r}")


async def get_site(
    site_id: Annotated[str, Path(description="Site id from the registry.", examples=["dc-xiangjiang"])],
    store: StoreDep,
) -> Site:
    site = await store.get_site(site_id)
    if site is None:
        raise unknown_site(site_id)
    return site


SiteDep = Annotated[Site, Depends(get_site)]


def _error(name: str, message: str, value: Any) -> dict[str, Any]:
    return {"type": "value_error", "loc": ("query", name), "msg": message, "input": value}


def invalid_query(name: str, message: str, value: Any) -> RequestValidationError:
    """A 422 in FastAPI's own ``detail`` format, for checks pydantic cannot express (cross-field)."""
    return RequestValidationError([_error(name, message, value)])


@dataclass(frozen=True, slots=True)
class TimeRange:
    from_ms: int
    to_ms: int


_TIME_DOC = "RFC 3339 with an offset (2024-06-01T08:00:00+08:00, ...Z) or epoch milliseconds."


async def get_kpi_range(
    settings: SettingsDep,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            description=f"Inclusive start. {_TIME_DOC} Default: `to` minus 1 h.",
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
    errors: list[dict[str, Any]] = []
    parsed: dict[str, int] = {}
    for name, value in (("from", from_), ("to", to)):
        if value is None:
            continue
        try:
            parsed[name] = parse_timestamp_ms(value)
        except TimestampError as exc:
            errors.append(_error(name, str(exc), value))
    if errors:
        raise RequestValidationError(errors)
    to_ms = parsed.get("to", now_ms())
    from_ms = parsed.get("from", to_ms - DEFAULT_RANGE_MS)
    if from_ms >= to_ms:
        raise invalid_query(
            "from",
            f"from ({from_ms} ms) must be before to ({to_ms} ms)",
            from_ if from_ is not None else from_ms,
        )
    limit_ms = max_range_ms(settings.window_ms)
    if to_ms - from_ms > limit_ms:
        raise invalid_query(
            "to",
            f"range of {(to_ms - from_ms) / 86_400_000:g} days is longer than the maximum "
            f"{limit_ms / 86_400_000:g} days ({MAX_RANGE_WINDOWS} windows of {settings.window_ms} ms); "
            "split the request",
            to if to is not None else to_ms,
        )
    return TimeRange(from_ms, to_ms)


def max_range_ms(window_ms: int) -> int:
    return window_ms * MAX_RANGE_WINDOWS


KpiRangeDep = Annotated[TimeRange, Depends(get_kpi_range)]
