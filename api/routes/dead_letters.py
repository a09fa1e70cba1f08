"""Input the collector or processor refused, with the reason, so nothing is silently lost.

A flood of bad messages leaves millions of letters, so the list is counted (``X-Total-Count``) and
paged by key (``cursor``, from the ``Link`` header), and ``/counts`` sums them by reason and site. A
query parameter these routes do not know is refused: a script sending ``offset`` would otherwise get
the first page again and again, believing it pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from api.auth import PrincipalDep, scope_of
from api.deps import StoreDep, invalid_query, parse_instants
from api.errors import DATABASE_DOWN, Responses
from api.payloads import PAYLOAD_PREVIEW_BYTES
from api.schemas.dead_letters import DeadLetterCountsPublic, DeadLetterPublic
from peakwatch.domain.access import AccessRole, Principal
from peakwatch.store.dead_letters import DeadLetterCount, DeadLetterFilter, DeadLetterKey

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])

MAX_PAGE: Final = 1000
"""Largest ``limit``: a page of 1,000 letters with 4 KiB payload previews is about 5 MB of JSON."""
_CURSOR: Final = re.compile(r"^(\d{1,15})\.(\d{1,19})\Z")
_TIME_DOC: Final = "RFC 3339 with an offset (2024-06-01T08:00:00+08:00, ...Z) or epoch milliseconds."
_FILTERS: Final = ("reason", "site_id", "meter_id", "source", "from", "to")
_ECHOED: Final = 100
"""Characters of an unknown parameter's value echoed in the 422 (never a large input back)."""

ReasonQuery = Annotated[
    str | None, Query(max_length=100, description="Only this reason code.", examples=["malformed_json"])
]
SiteQuery = Annotated[
    str | None, Query(max_length=200, description="Only letters of this site (403 outside your scope).")
]
MeterQuery = Annotated[str | None, Query(max_length=200, description="Only letters of this meter id.")]
SourceQuery = Annotated[
    str | None, Query(max_length=1000, description="Only letters from this source (MQTT topic), exactly.")
]
FromQuery = Annotated[
    str | None, Query(alias="from", description=f"Received at or after (inclusive). {_TIME_DOC}")
]
ToQuery = Annotated[str | None, Query(description=f"Received before (exclusive). {_TIME_DOC}")]


def cursor_of(key: DeadLetterKey) -> str:
    return f"{key.received_ms}.{key.id}"


def _parse_cursor(text: str) -> DeadLetterKey:
    match = _CURSOR.match(text)
    if match is None or int(match[2]) >= 2**63:  # ids are bigint
        raise invalid_query(
            "cursor",
            "not a dead-letter cursor (<received_ms>.<id>); use the one in the previous page's "
            'Link header (rel="next")',
            text,
        )
    return DeadLetterKey(int(match[1]), int(match[2]))


def _known_parameters(*names: str) -> Any:
    """A dependency refusing query parameters other than ``names`` with 422."""

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(names))
        if unknown:
            paging = {"offset", "page", "before_id", "after"} & set(unknown)
            hint = "; page with cursor (from the Link header's next URL)" if paging else ""
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("query", name),
                        "msg": f"unknown query parameter {name!r}{hint}; known: {', '.join(names)}",
                        "input": request.query_params[name][:_ECHOED],
                    }
                    for name in unknown
                ]
            )

    return Depends(check)


@dataclass(frozen=True, slots=True)
class Filters:
    reason: str | None
    site_id: str | None
    meter_id: str | None
    source: str | None
    from_ms: int | None
    to_ms: int | None

    def of(self, principal: Principal) -> DeadLetterFilter:
        """Within the principal's scope: letters of no site (bad topics) may concern any site, so only
        admins of every site see them (docs/security.md)."""
        scope = scope_of(principal, self.site_id)
        return DeadLetterFilter(
            reason=self.reason,
            site_ids=scope if self.site_id is None else [self.site_id],
            unknown_site=principal.may(AccessRole.ADMIN) and scope is None and self.site_id is None,
            meter_id=self.meter_id,
            source=self.source,
            from_ms=self.from_ms,
            to_ms=self.to_ms,
        )


async def get_filters(
    reason: ReasonQuery = None,
    site_id: SiteQuery = None,
    meter_id: MeterQuery = None,
    source: SourceQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
) -> Filters:
    instants = parse_instants({"from": from_, "to": to})
    from_ms, to_ms = instants.get("from"), instants.get("to")
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        raise invalid_query("from", f"from ({from_ms} ms) must be before to ({to_ms} ms)", from_)
    return Filters(reason, site_id, meter_id, source, from_ms, to_ms)


FiltersDep = Annotated[Filters, Depends(get_filters)]

_LIST_HEADERS: Final[Responses] = {
    status.HTTP_200_OK: {
        "headers": {
            "X-Total-Count": {
                "description": "How many letters match the filters (every page together).",
                "schema": {"type": "integer"},
            },
            "Link": {
                "description": '`<url>; rel="next"` when there are more letters: the same query with '
                "`cursor` set after the last letter returned.",
                "schema": {"type": "string"},
            },
        }
    },
}


@router.get(
    "",
    response_model=list[DeadLetterPublic],
    summary="List dead letters, newest first, with their total and the next page",
    description=(
        "Newest first (by `received_at`, then `id`). `X-Total-Count` is the number of letters matching "
        'the filters; when there are more than this page, `Link: <url>; rel="next"` is the next page '
        "(the same query with `cursor`). Pages are taken by key, so paging while letters arrive shows "
        "each letter once. Unknown query parameters (e.g. `offset`) are refused with 422. "
        f"Payloads are shown up to their first {PAYLOAD_PREVIEW_BYTES} bytes: as text when those bytes "
        "are UTF-8, else base64 (`payload_encoding`); `payload_truncated` says whether bytes were cut."
    ),
    responses={**_LIST_HEADERS, **DATABASE_DOWN},
    dependencies=[_known_parameters(*_FILTERS, "cursor", "limit")],
)
async def list_dead_letters(
    store: StoreDep,
    principal: PrincipalDep,
    filters: FiltersDep,
    request: Request,
    response: Response,
    cursor: Annotated[
        str | None,
        Query(
            max_length=40,
            description="Start after this letter: the value in the previous page's `Link` header.",
            examples=["1717200000000.12345"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Letters per page.")] = 100,
) -> list[DeadLetterPublic]:
    after = None if cursor is None else _parse_cursor(cursor)
    wanted = filters.of(principal)
    letters = await store.dead_letters.page(wanted, after=after, limit=limit + 1)
    response.headers["X-Total-Count"] = str(await store.dead_letters.count(wanted))
    if len(letters) > limit:
        letters = letters[:limit]
        last = DeadLetterKey(letters[-1].received_ms, letters[-1].id)
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=cursor_of(last))}>; rel="next"'
    return [DeadLetterPublic.from_record(d) for d in letters]


def _summed(counts: list[DeadLetterCount], key: str) -> list[tuple[str | None, int]]:
    totals: dict[str | None, int] = {}
    for c in counts:
        name = getattr(c, key)
        totals[name] = totals.get(name, 0) + c.count
    return sorted(totals.items(), key=lambda item: (-item[1], item[0] or ""))


@router.get(
    "/counts",
    response_model=DeadLetterCountsPublic,
    response_model_by_alias=True,
    summary="Dead letters counted by reason and by site",
    description=(
        "The letters matching the filters (the same as the list's; without `from`/`to`: all that are "
        "kept), counted by reason, by site, and by both. Your scope applies as in the list."
    ),
    responses={**DATABASE_DOWN},
    dependencies=[_known_parameters(*_FILTERS)],
)
async def count_dead_letters(
    store: StoreDep, principal: PrincipalDep, filters: FiltersDep
) -> DeadLetterCountsPublic:
    counts = await store.dead_letters.counts(filters.of(principal))
    return DeadLetterCountsPublic.model_validate(
        {
            "from": filters.from_ms,
            "to": filters.to_ms,
            "total": sum(c.count for c in counts),
            "by_reason": [{"reason": r, "count": n} for r, n in _summed(counts, "reason")],
            "by_site": [{"site_id": s, "count": n} for s, n in _summed(counts, "site_id")],
            "groups": [{"site_id": c.site_id, "reason": c.reason, "count": c.count} for c in counts],
        }
    )
