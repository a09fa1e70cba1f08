"""The factor library: every version of every conversion and emission factor, the factor sets, and new
versions added through the API (each one queues the restatement of the windows computed with it)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Path, Response, status

from api.auth import GLOBAL_ADMIN
from api.deps import FactorLibraryDep, RegistryDep, StoreDep, invalid_body, now_ms
from api.errors import DATABASE_DOWN, Responses
from api.schemas.accounting import RestatementPublic
from api.schemas.common import ErrorPublic
from api.schemas.factors import (
    FactorHistoryPublic,
    FactorIn,
    FactorPublic,
    FactorSetPublic,
    FactorWrittenPublic,
)
from peakwatch.domain.factors import DEFAULT_SLOTS, Factor
from peakwatch.errors import ConflictError

router = APIRouter(tags=["factors"])

UNKNOWN_FACTOR: Final[Responses] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "Unknown factor: `unknown factor 'x'`."}
}


@router.get(
    "/factors",
    response_model=list[FactorPublic],
    summary="Current version of every factor",
    responses={**DATABASE_DOWN},
)
async def list_factors(library: FactorLibraryDep) -> list[FactorPublic]:
    return [FactorPublic.from_factor(f) for f in sorted(library, key=lambda f: f.id)]


@router.get(
    "/factors/{factor_id}",
    response_model=FactorHistoryPublic,
    summary="Every version of one factor",
    responses={**UNKNOWN_FACTOR, **DATABASE_DOWN},
)
async def factor_history(
    library: FactorLibraryDep,
    factor_id: Annotated[str, Path(description="Factor id.", examples=["grid.cn.hunan.2023"])],
) -> FactorHistoryPublic:
    if factor_id not in library:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown factor {factor_id!r}")
    return FactorHistoryPublic(
        id=factor_id,
        current=FactorPublic.from_factor(library.get(factor_id)),
        versions=[FactorPublic.from_factor(f) for f in library.history(factor_id)],
        factor_sets=sorted(library.slots_using(factor_id)),
    )


@router.post(
    "/factors",
    dependencies=[GLOBAL_ADMIN],
    response_model=FactorWrittenPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add a factor or a new version of one",
    description=(
        "A known `id` gets a new version (current + 1) and must keep its unit; a new `id` starts at "
        "version 1. Every site's windows since 2000-01-01 are queued for restatement (`factor_revision`). "
        "A body identical to the current version (value, unit, source, data_year, published) adds nothing: "
        "200 with the current version and `restatement: null`."
    ),
    responses={
        status.HTTP_200_OK: {
            "model": FactorWrittenPublic,
            "description": "Identical to the current version.",
        },
        status.HTTP_409_CONFLICT: {
            "model": ErrorPublic,
            "description": "Another version of the same id was added at the same time; retry.",
        },
        **DATABASE_DOWN,
    },
)
async def add_factor(
    body: FactorIn, library: FactorLibraryDep, store: StoreDep, response: Response
) -> FactorWrittenPublic:
    current = library.get(body.id) if body.id in library else None
    if current is not None:
        if body.unit != current.unit:
            raise invalid_body(
                "unit",
                f"factor {body.id!r} is in {current.unit!r}, not {body.unit!r}: convert the value to "
                f"{current.unit} (the KPIs multiply by it)",
                body.unit,
            )
        if (current.value, current.source, current.data_year, current.published) == (
            body.value,
            body.source,
            body.data_year,
            body.published,
        ):
            response.status_code = status.HTTP_200_OK
            return FactorWrittenPublic(factor=FactorPublic.from_factor(current), restatement=None)
    factor = Factor(
        id=body.id,
        value=body.value,
        unit=body.unit,
        source=body.source,
        data_year=body.data_year,
        published=body.published,
        status=body.status,
        version=1 if current is None else current.version + 1,
        recorded_ms=now_ms(),
    )
    change = "new factor" if current is None else f"{current.value:g} -> {factor.value:g}"
    try:
        request = await store.inputs.add_factor_version(
            factor, detail=f"factor {factor.ref}: {change} {factor.unit}"
        )
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    stored = library.with_overrides((factor,)).get(factor.id)
    return FactorWrittenPublic(
        factor=FactorPublic.from_factor(stored), restatement=RestatementPublic.from_request(request)
    )


@router.get(
    "/factor-sets",
    response_model=list[FactorSetPublic],
    summary="Factor sets and the factor each fills every slot with",
)
async def list_factor_sets(registry: RegistryDep) -> list[FactorSetPublic]:
    slots = list(DEFAULT_SLOTS)
    sets = sorted(registry.factors.sets.values(), key=lambda s: s.name)
    return [FactorSetPublic.from_set(s, slots) for s in sets]
