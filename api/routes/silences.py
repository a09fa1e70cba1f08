"""Silences: mute the notifications of matching alerts for a while (the alerts still show and fire).

A silence belongs to a site when one of its matchers is ``site="<id>"``: only then can it be shown to,
made by or ended by a user whose scope is not every site. Any other silence could mute other sites'
alerts, so it is for users of every site only.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Path, Query, Request, status

from api.auth import OPERATOR, PrincipalDep, audit_site, forbidden
from api.deps import LimitQuery, StoreDep, invalid_body, now_ms
from api.errors import DATABASE_DOWN, Responses
from api.schemas.common import ErrorPublic
from api.schemas.silences import SilenceIn, SilencePublic, silence_state
from peakwatch.domain.access import Principal
from peakwatch.domain.routing import Matcher, MatchOp
from peakwatch.durations import parse_duration_ms
from peakwatch.errors import ConfigError
from peakwatch.store.records import SilenceRecord

router = APIRouter(prefix="/silences", tags=["notifications"])

MAX_SILENCE_MS: Final = 90 * 86_400_000
SCOPED_FETCH: Final = 1000
"""Silences read for a user whose scope is not every site, before the ones of other sites are dropped."""

_NOT_FOUND: Final[Responses] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "No silence with this id in your scope."}
}


def named_sites(matchers: list[Matcher]) -> list[str]:
    """The sites a silence is limited to: values of its ``site="..."`` equality matchers."""
    return [m.value for m in matchers if m.name == "site" and m.op is MatchOp.EQ]


def _stored_sites(silence: SilenceRecord) -> list[str]:
    matchers = []
    for text in silence.matchers:
        try:
            matchers.append(Matcher.parse(text))
        except ValueError:  # checked when it was made; a later parser refusing it names no site
            continue
    return named_sites(matchers)


def _audited_site(principal: Principal, sites: list[str]) -> str | None:
    """The site the audit entry records: the first named one in the caller's scope."""
    return next(iter(principal.visible(sites) or sites), None)


def visible(principal: Principal, silence: SilenceRecord) -> bool:
    return principal.global_scope or bool(principal.visible(_stored_sites(silence)))


@router.get(
    "",
    response_model=list[SilencePublic],
    summary="List silences, newest first",
    description='A user whose scope is not every site sees the silences with a `site="<id>"` matcher '
    "naming one of their sites.",
    responses={**DATABASE_DOWN},
)
async def list_silences(
    store: StoreDep,
    principal: PrincipalDep,
    include_expired: Annotated[bool, Query(description="Also the silences that have ended.")] = False,
    limit: LimitQuery = 100,
) -> list[SilencePublic]:
    now = now_ms()
    fetched = await store.notify.silences(
        now_ms=now,
        include_expired=include_expired,
        limit=limit if principal.global_scope else SCOPED_FETCH,
    )
    shown = [
        s
        for s in fetched
        if visible(principal, s) and (include_expired or silence_state(s, now) != "expired")
    ]
    return [SilencePublic.from_record(s, now) for s in shown[:limit]]


@router.post(
    "",
    response_model=SilencePublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[OPERATOR],
    summary="Silence matching alerts for a while (operators and admins)",
    description="Give `ends_at` or `duration` (at most 90 days). Alerts stay visible and keep firing; "
    "only their notifications are muted.",
    responses={**DATABASE_DOWN},
)
async def add_silence(
    body: SilenceIn, store: StoreDep, principal: PrincipalDep, request: Request
) -> SilencePublic:
    matchers = body.parsed_matchers
    sites = named_sites(matchers)
    in_scope = principal.visible(sites)
    if not principal.global_scope and not in_scope:
        raise forbidden('a silence must name one of your sites with site="..."')
    audit_site(request, _audited_site(principal, sites))
    now = now_ms()
    starts = body.starts_ms if body.starts_ms is not None else now
    ends = _ends_ms(body, starts)
    if ends <= starts:
        raise invalid_body("ends_at", "ends_at must be after starts_at", body.ends_at)
    if ends <= now:
        raise invalid_body("ends_at", "ends_at must be in the future", body.ends_at)
    if ends - starts > MAX_SILENCE_MS:
        raise invalid_body(
            "ends_at" if body.duration is None else "duration",
            f"a silence lasts at most {MAX_SILENCE_MS // 86_400_000} days; make a new one when it ends",
            body.ends_at if body.duration is None else body.duration,
        )
    silence = await store.notify.add_silence(matchers, starts, ends, principal.user_name, body.comment, now)
    return SilencePublic.from_record(silence, now_ms())


def _ends_ms(body: SilenceIn, starts_ms: int) -> int:
    if (body.ends_ms is None) == (body.duration is None):
        raise invalid_body("ends_at", "give either ends_at or duration (one of them)", body.ends_at)
    if body.ends_ms is not None:
        return body.ends_ms
    assert body.duration is not None
    try:
        duration_ms = parse_duration_ms(body.duration)
    except ConfigError as exc:
        raise invalid_body("duration", str(exc), body.duration) from None
    if duration_ms <= 0:
        raise invalid_body("duration", "the duration must be positive, e.g. 2h", body.duration)
    return starts_ms + duration_ms


@router.delete(
    "/{silence_id}",
    response_model=SilencePublic,
    dependencies=[OPERATOR],
    summary="Expire a silence now (operators and admins)",
    responses={
        **_NOT_FOUND,
        status.HTTP_409_CONFLICT: {"model": ErrorPublic, "description": "The silence has already ended."},
        **DATABASE_DOWN,
    },
)
async def expire_silence(
    silence_id: Annotated[int, Path(ge=1, le=2**62)],
    store: StoreDep,
    principal: PrincipalDep,
    request: Request,
) -> SilencePublic:
    silence = await store.notify.get_silence(silence_id)
    if silence is None or not visible(principal, silence):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no silence {silence_id} in your scope")
    audit_site(request, _audited_site(principal, _stored_sites(silence)))
    now = now_ms()
    expired = None
    if silence_state(silence, now) != "expired":
        expired = await store.notify.expire_silence(silence_id, principal.user_name, now)
    if expired is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"silence {silence_id} has already ended")
    return SilencePublic.from_record(expired, now)
