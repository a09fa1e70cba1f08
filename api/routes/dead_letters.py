"""Input the collector or processor refused, with the reason, so nothing is silently lost."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import PrincipalDep, scope_of
from api.deps import StoreDep
from api.errors import DATABASE_DOWN
from api.payloads import PAYLOAD_PREVIEW_BYTES
from api.schemas import DeadLetterPublic
from peakwatch.domain.access import AccessRole

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])


@router.get(
    "",
    response_model=list[DeadLetterPublic],
    summary="List dead letters, newest first",
    description=(
        f"Payloads are shown up to their first {PAYLOAD_PREVIEW_BYTES} bytes: as text when those bytes "
        "are UTF-8, else base64 (`payload_encoding`); `payload_truncated` says whether bytes were cut."
    ),
    responses={**DATABASE_DOWN},
)
async def list_dead_letters(
    store: StoreDep,
    principal: PrincipalDep,
    reason: Annotated[
        str | None, Query(max_length=100, description="Only this reason code.", examples=["malformed_json"])
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterPublic]:
    # letters of no known site (bad topics, malformed payloads) may name sites: admins of every site only
    letters = await store.list_dead_letters(
        reason=reason,
        limit=limit,
        site_ids=scope_of(principal),
        unknown_site=principal.may(AccessRole.ADMIN),
    )
    return [DeadLetterPublic.from_record(d) for d in letters]
