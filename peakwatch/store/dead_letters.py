"""Dead letters read back: filtered, counted and paged by key, so a flood of millions stays browsable.

Pages are keyset pages in the list's order, newest first by ``(received_at, id)``: the next page starts
strictly after the last letter returned, so a letter is never shown twice or skipped while new ones
arrive, and no page costs more than its own rows (no ``OFFSET``). The SQL is built from the filters
actually given (no ``$1 IS NULL OR …``), so the planner picks the index of that filter
(013_dead_letter_paging.sql). A list limited to some sites merges each site's own index scan
(``LATERAL``), which keeps a scoped user's page as cheap as an admin's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from peakwatch.store.pooled import Pooled, convert
from peakwatch.store.records import DeadLetterRecord

_COLUMNS: Final = "id, received_at AS received_ms, source, reason, detail, payload, site_id, meter_id"
_ORDER: Final = "ORDER BY received_at DESC, id DESC"


class DeadLetterFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which dead letters a list or count covers. ``site_ids`` limits to letters of those sites
    (``None``: every site); ``unknown_site`` adds letters of no known site, and only applies when
    ``site_ids`` is ``None``. ``from_ms`` is inclusive, ``to_ms`` exclusive (``received_at``)."""

    reason: str | None = None
    site_ids: Sequence[str] | None = None
    unknown_site: bool = True
    meter_id: str | None = None
    source: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None


class DeadLetterKey(msgspec.Struct, frozen=True):
    """A letter's place in the list's order: the cursor of the page after it."""

    received_ms: int
    id: int


class DeadLetterCount(msgspec.Struct, frozen=True, kw_only=True):
    site_id: str | None
    reason: str
    count: int


class _Sql:
    """A WHERE clause and its numbered arguments, grown one condition at a time."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self.conditions: list[str] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def where(self, condition: str) -> None:
        self.conditions.append(condition)

    @property
    def clause(self) -> str:
        return f"WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


def _filtered(f: DeadLetterFilter, *, sites: bool = True) -> _Sql:
    """The conditions of ``f``; those on sites only when ``sites`` (the paged list puts the sites in
    its ``LATERAL`` join instead)."""
    sql = _Sql()
    if f.reason is not None:
        sql.where(f"reason = {sql.arg(f.reason)}")
    if f.meter_id is not None:
        sql.where(f"meter_id = {sql.arg(f.meter_id)}")
    if f.source is not None:
        sql.where(f"source = {sql.arg(f.source)}")
    if f.from_ms is not None:
        sql.where(f"received_at >= {sql.arg(f.from_ms)}")
    if f.to_ms is not None:
        sql.where(f"received_at < {sql.arg(f.to_ms)}")
    if sites:
        if f.site_ids is not None:
            sql.where(f"site_id = ANY({sql.arg(list(f.site_ids))}::text[])")
        elif not f.unknown_site:
            sql.where("site_id IS NOT NULL")
    return sql


def page_query(f: DeadLetterFilter, after: DeadLetterKey | None, limit: int) -> tuple[str, list[Any]]:
    """The SQL of ``DeadLettersStore.page`` and its arguments (also for EXPLAIN in bench/)."""
    sql = _filtered(f, sites=False)
    if after is not None:
        sql.where(f"(received_at, id) < ({sql.arg(after.received_ms)}, {sql.arg(after.id)})")
    if f.site_ids is None:
        if not f.unknown_site:
            sql.where("site_id IS NOT NULL")
        return f"SELECT {_COLUMNS} FROM dead_letters {sql.clause} {_ORDER} LIMIT {sql.arg(limit)}", sql.args
    sql.where("site_id = s.site")
    n = sql.arg(limit)
    return (
        f"SELECT l.* FROM unnest({sql.arg(sorted(set(f.site_ids)))}::text[]) AS s(site) "
        f"CROSS JOIN LATERAL (SELECT {_COLUMNS} FROM dead_letters {sql.clause} {_ORDER} LIMIT {n}) l "
        f"ORDER BY received_ms DESC, id DESC LIMIT {n}",
        sql.args,
    )


def count_query(f: DeadLetterFilter) -> tuple[str, list[Any]]:
    sql = _filtered(f)
    return f"SELECT count(*) FROM dead_letters {sql.clause}", sql.args


def counts_query(f: DeadLetterFilter) -> tuple[str, list[Any]]:
    sql = _filtered(f)
    return (
        f"SELECT site_id, reason, count(*) AS count FROM dead_letters {sql.clause} "
        "GROUP BY site_id, reason ORDER BY count DESC, reason, site_id NULLS FIRST",
        sql.args,
    )


class DeadLettersStore(Pooled):
    """Every method raises StoreError."""

    async def page(
        self, f: DeadLetterFilter, *, after: DeadLetterKey | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        """Up to ``limit`` letters of ``f``, newest first, starting just after ``after`` (the last
        letter of the previous page) when given."""
        query, args = page_query(f, after, limit)
        rows = await self._fetch("listing dead letters", query, *args)
        return [convert(r, DeadLetterRecord) for r in rows]

    async def count(self, f: DeadLetterFilter) -> int:
        """How many letters ``f`` covers (every page together)."""
        query, args = count_query(f)
        async with self._connection("counting dead letters") as conn:
            return int(await conn.fetchval(query, *args))

    async def counts(self, f: DeadLetterFilter) -> list[DeadLetterCount]:
        """The letters of ``f`` counted by site and reason (letters of no site: ``site_id`` ``None``),
        most first."""
        query, args = counts_query(f)
        rows = await self._fetch("counting dead letters by reason", query, *args)
        return [convert(r, DeadLetterCount) for r in rows]
