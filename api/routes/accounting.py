"""Accounting inputs people enter (meter replacements, green certificates and contracts, monthly value
added) and the restatement queue they feed. Each write queues exactly one restatement request in the
same transaction; the processor's accountant recomputes the affected windows and keeps the old values
as revisions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status

from api.auth import ADMIN, PrincipalDep, scope_of
from api.deps import (
    LimitQuery,
    MeterDep,
    MonthDep,
    SiteDep,
    StoreDep,
    invalid_body,
    invalid_path,
    invalid_query,
    now_ms,
    unknown_site,
)
from api.errors import DATABASE_DOWN, UNKNOWN_SITE, Responses
from api.schemas.accounting import (
    KWH_PER_CERTIFICATE,
    GreenInstrumentCreatedPublic,
    GreenInstrumentIn,
    GreenInstrumentPublic,
    ReplacementCreatedPublic,
    ReplacementIn,
    ReplacementPublic,
    RestatementPublic,
    ValueAddedIn,
    ValueAddedPublic,
    ValueAddedWrittenPublic,
)
from api.schemas.common import ErrorPublic, month_text, parse_month
from peakwatch.domain.models import MeterReplacement, Quantity, Register
from peakwatch.domain.units import meter_quantity
from peakwatch.errors import ConflictError
from peakwatch.store.inputs import ValueAdded

router = APIRouter(tags=["accounting"])

CANONICAL_UNITS = {
    Quantity.ENERGY_KWH: "kWh",
    Quantity.POWER_KW: "kW",
    Quantity.VOLUME_M3: "m3",
    Quantity.HEAT_GJ: "GJ",
    Quantity.MASS_T: "t",
    Quantity.COUNT: "count",
}

MAX_REPLACEMENT_AHEAD_MS = 300_000
"""A replacement may be stamped at most this far ahead of the server's clock (clock skew)."""

UNKNOWN_METER: Responses = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "Unknown site or meter."},
}


# ------------------------------------------------------------------------------------------ replacements


@router.post(
    "/sites/{site_id}/meters/{meter_id}/replacements",
    dependencies=[ADMIN],
    response_model=ReplacementCreatedPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["meters"],
    summary="Record a meter replacement",
    description=(
        "The old meter's last register value and the new one's first, in the meter's configured unit "
        "(stored in the canonical unit). Energy across the swap is (old_final − last reading before) + "
        "(first reading after − new_initial). Queues the meter's re-derivation at `ts` (`meter_replacement`; "
        "the processor widens it to the readings around the swap, and waits for the first reading after it). "
        "Cumulative registers only."
    ),
    responses={
        **UNKNOWN_METER,
        status.HTTP_409_CONFLICT: {
            "model": ErrorPublic,
            "description": "A replacement of this meter at the same instant is already recorded.",
        },
        **DATABASE_DOWN,
    },
)
async def add_replacement(
    site: SiteDep, meter: MeterDep, store: StoreDep, body: ReplacementIn
) -> ReplacementCreatedPublic:
    if meter.register is not Register.CUMULATIVE:
        raise invalid_path(
            "meter_id",
            f"meter {meter.id!r} has a {meter.register.value} register: a replacement only matters for "
            "cumulative registers (nothing is differenced across it)",
            meter.id,
        )
    if body.ts_ms > now_ms() + MAX_REPLACEMENT_AHEAD_MS:
        raise invalid_body("ts", "the replacement is in the future; give the instant it happened", body.ts_ms)
    if meter.register_max is not None:
        for name, value in (("old_final", body.old_final), ("new_initial", body.new_initial)):
            if value >= meter.register_max:
                raise invalid_body(
                    name,
                    f"{value:.12g} {meter.unit} does not fit the meter's register (register_max "
                    f"{meter.register_max:.12g} {meter.unit})",
                    value,
                )
    quantity, scale = meter_quantity(meter.unit)
    replacement = MeterReplacement(
        site_id=site.id,
        meter_id=meter.id,
        ts_ms=body.ts_ms,
        old_final=body.old_final * scale,
        new_initial=body.new_initial * scale,
        note=body.note,
    )
    try:
        request = await store.inputs.add_replacement(replacement)
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return ReplacementCreatedPublic(
        replacement=ReplacementPublic.from_replacement(replacement, CANONICAL_UNITS[quantity]),
        restatement=RestatementPublic.from_request(request),
    )


@router.get(
    "/sites/{site_id}/meters/{meter_id}/replacements",
    response_model=list[ReplacementPublic],
    tags=["meters"],
    summary="Replacements of a meter, oldest first",
    responses={**UNKNOWN_METER, **DATABASE_DOWN},
)
async def list_replacements(site: SiteDep, meter: MeterDep, store: StoreDep) -> list[ReplacementPublic]:
    unit = CANONICAL_UNITS[meter_quantity(meter.unit)[0]]
    return [
        ReplacementPublic.from_replacement(r, unit)
        for r in await store.inputs.list_replacements(site.id, meter.id)
    ]


# ------------------------------------------------------------------------------------------ green instruments


@router.post(
    "/sites/{site_id}/green-instruments",
    dependencies=[ADMIN],
    response_model=GreenInstrumentCreatedPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Register green certificates or a green-power contract for a month",
    description=(
        "Give either `kwh` or `certificates` (1 certificate = 1,000 kWh, kind `certificate` only). The "
        "month's instruments lower its market-based electricity emissions (the covered kWh leave the "
        "residual-factor emissions) and raise the market-based green share and REF. Queues the restatement "
        "of that local calendar month (`green_instruments`)."
    ),
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def add_green_instrument(
    site: SiteDep, store: StoreDep, body: GreenInstrumentIn
) -> GreenInstrumentCreatedPublic:
    if (body.kwh is None) == (body.certificates is None):
        raise invalid_body(
            "kwh", "give exactly one of kwh and certificates (1 certificate = 1,000 kWh)", body.kwh
        )
    if body.certificates is not None and body.kind != "certificate":
        raise invalid_body(
            "certificates",
            f"certificates apply to kind 'certificate'; give a {body.kind}'s volume in kwh",
            body.certificates,
        )
    kwh = body.kwh if body.kwh is not None else float(body.certificates or 0) * KWH_PER_CERTIFICATE
    instrument, request = await store.inputs.add_green_instrument(
        site.id, body.month_date, body.kind, kwh, body.reference
    )
    return GreenInstrumentCreatedPublic(
        instrument=GreenInstrumentPublic.from_instrument(instrument),
        restatement=RestatementPublic.from_request(request),
    )


@router.get(
    "/sites/{site_id}/green-instruments",
    response_model=list[GreenInstrumentPublic],
    summary="Green certificates and contracts of a site, by month",
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def list_green_instruments(
    site: SiteDep,
    store: StoreDep,
    month: Annotated[
        str | None, Query(description="Only this month (YYYY-MM).", examples=["2025-03"])
    ] = None,
) -> list[GreenInstrumentPublic]:
    month_date = None
    if month is not None:
        try:
            month_date = parse_month(month)
        except ValueError as exc:
            raise invalid_query("month", str(exc), month) from None
    return [
        GreenInstrumentPublic.from_instrument(g)
        for g in await store.inputs.list_green_instruments(site.id, month_date)
    ]


# ------------------------------------------------------------------------------------------ value added


@router.put(
    "/sites/{site_id}/value-added/{month}",
    dependencies=[ADMIN],
    response_model=ValueAddedWrittenPublic,
    summary="Set a month's value added",
    description=(
        "The value added (增加值) of a local calendar month, CNY: the denominator of energy intensity per "
        "10,000 CNY. Replaces an earlier value of the month and queues its restatement (`value_added`)."
    ),
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def set_value_added(
    site: SiteDep, store: StoreDep, month: MonthDep, body: ValueAddedIn
) -> ValueAddedWrittenPublic:
    request = await store.inputs.set_value_added(site.id, month, body.value_cny)
    stored = ValueAdded(
        site_id=site.id, month=month, value_cny=body.value_cny, recorded_ms=request.requested_ms
    )
    return ValueAddedWrittenPublic(
        value_added=ValueAddedPublic.from_value(stored), restatement=RestatementPublic.from_request(request)
    )


@router.get(
    "/sites/{site_id}/value-added",
    response_model=list[ValueAddedPublic],
    summary="Value added of every month entered, oldest first",
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def list_value_added(site: SiteDep, store: StoreDep) -> list[ValueAddedPublic]:
    return [ValueAddedPublic.from_value(v) for v in await store.inputs.list_value_added(site.id)]


@router.get(
    "/sites/{site_id}/value-added/{month}",
    response_model=ValueAddedPublic,
    summary="Value added of one month",
    responses={
        status.HTTP_404_NOT_FOUND: {
            "model": ErrorPublic,
            "description": "Unknown site, or month not entered.",
        },
        **DATABASE_DOWN,
    },
)
async def get_value_added(site: SiteDep, store: StoreDep, month: MonthDep) -> ValueAddedPublic:
    for v in await store.inputs.list_value_added(site.id):
        if v.month == month:
            return ValueAddedPublic.from_value(v)
    raise HTTPException(
        status.HTTP_404_NOT_FOUND,
        detail=f"no value added entered for {month_text(month)} at site {site.id!r}",
    )


# ------------------------------------------------------------------------------------------ restatements


@router.get(
    "/restatements",
    response_model=list[RestatementPublic],
    tags=["kpis"],
    summary="The restatement queue, newest first",
    description=(
        "Recomputations queued by late data and by the inputs above, with their range and reason; "
        "`status` is `pending` until the processor's accountant has recomputed the windows. "
        "`site_id` also matches requests for every site (a factor revision)."
    ),
    responses={**UNKNOWN_SITE, **DATABASE_DOWN},
)
async def list_restatements(
    store: StoreDep,
    principal: PrincipalDep,
    site_id: Annotated[
        str | None, Query(description="Only requests affecting this site (404 if unknown).")
    ] = None,
    status_: Annotated[
        Literal["pending", "done"] | None, Query(alias="status", description="Only pending or done requests.")
    ] = None,
    limit: LimitQuery = 100,
) -> list[RestatementPublic]:
    scope = scope_of(principal, site_id)
    if site_id is not None and await store.get_site(site_id) is None:
        raise unknown_site(site_id)
    pending = None if status_ is None else status_ == "pending"
    requests = await store.inputs.list_restatements(limit, site_id=site_id, pending=pending, site_ids=scope)
    return [RestatementPublic.from_request(r) for r in requests]
