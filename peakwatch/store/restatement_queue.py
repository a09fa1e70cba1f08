"""The restatement queue: one row per recomputation that late data or an input calls for.

Inputs (``peakwatch.store.inputs``) queue their request in the same transaction as the input
(``queue_restatement``, ``queue_factor_revision``); the processor's accountant reads the queue oldest
first, splits a request for every site into one per site, and marks requests done or failed. The
methods are those of ``Store.inputs`` (``InputsStore`` extends ``RestatementQueue``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from peakwatch.domain.models import RestatementReason
from peakwatch.store.conn import Conn
from peakwatch.store.pooled import Pooled, convert
from peakwatch.store.records import RestatementRequest

DAY_MS: Final = 86_400_000
FACTOR_RESTATE_FROM_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z: a revised factor restates every window since (the factor's data year is not
the years it was used for, so no narrower range is safe)."""

_RESTATEMENT_SELECT: Final = """
SELECT id, site_id, meter_id, from_ts AS from_ms, to_ts AS to_ms, reason, detail,
       requested_at AS requested_ms, done_at AS done_ms, restated, factor_id, attempts, error,
       failed_at AS failed_ms
FROM restatement_requests"""


class RestatementQueue(Pooled):
    """Queries on ``restatement_requests``; every method raises StoreError when the database fails."""

    async def request_restatement(
        self,
        site_id: str | None,
        meter_id: str | None,
        from_ms: int,
        to_ms: int,
        reason: RestatementReason | str,
        detail: str = "",
    ) -> int:
        """Queue a recomputation of ``[from_ms, to_ms)`` (``site_id`` ``None``: every site); its id."""
        if to_ms <= from_ms:
            raise ValueError(f"empty restatement range [{from_ms}, {to_ms})")
        async with self._connection("queueing a restatement") as conn:
            request = await queue_restatement(conn, site_id, meter_id, from_ms, to_ms, reason, detail)
        return request.id

    async def pending_restatements(self, limit: int = 100) -> list[RestatementRequest]:
        """Oldest first: the order they must be applied in."""
        rows = await self._fetch(
            "reading pending restatements",
            _RESTATEMENT_SELECT + " WHERE done_at IS NULL ORDER BY id LIMIT $1",
            limit,
        )
        return [convert(r, RestatementRequest) for r in rows]

    async def split_restatement(self, request_id: int) -> int:
        """Replace a request for every site by one per site (processors sharing the sites each do
        theirs). Returns how many it made; 0 when another processor split it first."""
        async with self._connection("splitting a restatement") as conn, conn.transaction():
            result = await conn.execute(
                """
                WITH taken AS (
                    UPDATE restatement_requests SET done_at = now()
                    WHERE id = $1 AND site_id IS NULL AND done_at IS NULL
                    RETURNING from_ts, to_ts, reason, detail, factor_id
                )
                INSERT INTO restatement_requests (site_id, meter_id, from_ts, to_ts, reason, detail,
                                                  factor_id)
                SELECT s.id, NULL, t.from_ts, t.to_ts, t.reason, t.detail, t.factor_id
                FROM taken t, sites s ORDER BY s.id
                """,
                request_id,
            )
        return int(result.split()[-1])

    async def mark_restatement_done(self, ids: Sequence[int]) -> None:
        async with self._connection("marking restatements done") as conn:
            await conn.execute(
                "UPDATE restatement_requests SET done_at = now() "
                "WHERE id = ANY($1::bigint[]) AND done_at IS NULL",
                list(ids),
            )

    async def mark_restatement_failed(self, request_id: int, error: str) -> None:
        """Record a failed attempt; the request stays pending (the accountant retries it with backoff)."""
        async with self._connection("recording a failed restatement") as conn:
            await conn.execute(
                "UPDATE restatement_requests SET attempts = attempts + 1, error = $2, failed_at = now() "
                "WHERE id = $1 AND done_at IS NULL",
                request_id,
                error,
            )

    async def restatement_failures(self, ids: Sequence[int]) -> dict[int, str]:
        """Which of ``ids`` are pending after a failed attempt, with their last error."""
        rows = await self._fetch(
            "reading restatement failures",
            "SELECT id, error FROM restatement_requests WHERE id = ANY($1::bigint[]) AND done_at IS NULL "
            "AND error IS NOT NULL",
            list(ids),
        )
        return {int(r["id"]): str(r["error"]) for r in rows}

    async def restatements_pending(self, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` are not done yet (an unknown id counts as done: there is nothing to wait for)."""
        rows = await self._fetch(
            "reading restatement states",
            "SELECT id FROM restatement_requests WHERE id = ANY($1::bigint[]) AND done_at IS NULL",
            list(ids),
        )
        return {int(r["id"]) for r in rows}

    async def sessions_named(self, application_name: str) -> int:
        """Open sessions on this database with that ``application_name`` (``PROCESSOR_APPLICATION``: a
        running processor keeps at least one open)."""
        async with self._connection("reading pg_stat_activity") as conn:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = $1",
                application_name,
            )
        return int(count)

    async def list_restatements(
        self,
        limit: int = 100,
        *,
        site_id: str | None = None,
        pending: bool | None = None,
        site_ids: Sequence[str] | None = None,
    ) -> list[RestatementRequest]:
        """Newest first. ``site_id`` also matches requests for every site (``site_id`` NULL), and so
        does ``site_ids`` (a caller's scope; ``None``: every site); ``pending`` True: not done yet,
        False: done, None: both."""
        rows = await self._fetch(
            "listing restatements",
            _RESTATEMENT_SELECT + " WHERE ($2::text IS NULL OR site_id IS NULL OR site_id = $2) "
            "AND ($3::boolean IS NULL OR (done_at IS NULL) = $3) "
            "AND ($4::text[] IS NULL OR site_id IS NULL OR site_id = ANY($4)) ORDER BY id DESC LIMIT $1",
            limit,
            site_id,
            pending,
            None if site_ids is None else list(site_ids),
        )
        return [convert(r, RestatementRequest) for r in rows]


async def queue_factor_revision(conn: Conn, factor_id: str, detail: str, now: int) -> RestatementRequest:
    """A factor revision restates every site's whole history (``FACTOR_RESTATE_FROM_MS`` to a day
    ahead): one definition for a version entered through the API and one found at registry sync."""
    return await queue_restatement(
        conn,
        None,
        None,
        FACTOR_RESTATE_FROM_MS,
        now + DAY_MS,
        RestatementReason.FACTOR_REVISION,
        detail,
        factor_id=factor_id,
    )


async def queue_restatement(
    conn: Conn,
    site_id: str | None,
    meter_id: str | None,
    from_ms: int,
    to_ms: int,
    reason: RestatementReason | str,
    detail: str,
    *,
    factor_id: str | None = None,
) -> RestatementRequest:
    row = await conn.fetchrow(
        "INSERT INTO restatement_requests (site_id, meter_id, from_ts, to_ts, reason, detail, factor_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, site_id, meter_id, from_ts AS from_ms, "
        "to_ts AS to_ms, reason, detail, requested_at AS requested_ms, done_at AS done_ms, restated, "
        "factor_id, attempts, error, failed_at AS failed_ms",
        site_id,
        meter_id,
        from_ms,
        to_ms,
        str(reason),
        detail,
        factor_id,
    )
    assert row is not None
    request: RestatementRequest = convert(row, RestatementRequest)
    return request
