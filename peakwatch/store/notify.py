"""The notifier's side of the store: the alerts routing looks at, silences, the per-group notification
logs, and the delivery log. Also the dedicated connection a notifier listens and holds leadership on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any, Final

import asyncpg
import msgspec

from peakwatch.domain.notifications import AlertView
from peakwatch.domain.routing import GroupLog, Matcher, Silence
from peakwatch.store.errors import STORE_FAILURES, translate
from peakwatch.store.pooled import Pooled, convert, is_gone, reset_pool
from peakwatch.store.records import Delivery, SilenceRecord
from peakwatch.store.writes import ALERTS_CHANNEL

_SILENCE_COLUMNS: Final = (
    "id, matchers, starts_at AS starts_ms, ends_at AS ends_ms, created_by, comment, "
    "created_at AS created_ms, expired_by"
)
_DELIVERY_COLUMNS: Final = (
    "id, at AS at_ms, receiver, channel, group_key, status, outcome, detail, attempt, escalation, repeat, "
    "alert_ids, site_ids"
)
NOTIFIER_LOCK_KEY: Final = 0x7077_6E6F_7469_6679
"""Session advisory lock held by the active notifier ("pwnotify"): one notifier sends, others stand by."""

_LOG_JSON: Final = msgspec.json.Encoder()


def silence_of(record: SilenceRecord) -> Silence:
    """The routing value of a stored silence (its matchers were checked when it was made)."""
    return Silence(
        id=record.id,
        matchers=tuple(Matcher.parse(m) for m in record.matchers),
        starts_ms=record.starts_ms,
        ends_ms=record.ends_ms,
        created_by=record.created_by,
        comment=record.comment,
    )


class NotifyStore(Pooled):
    """Every method raises StoreError."""

    # ------------------------------------------------------------------ what routing looks at

    async def routing_alerts(self, resolved_ids: Collection[int]) -> list[AlertView]:
        """Every firing alert, plus those of ``resolved_ids`` (alerts a group last sent as firing) that
        are no longer firing, so their resolution can be reported."""
        rows = await self._fetch(
            "reading alerts to notify",
            "SELECT id, fingerprint, state, labels, summary, value, "
            "coalesce(fired_at, started_at) AS fired_ms, resolved_at AS resolved_ms, acknowledged_by, "
            "acknowledged_at AS acknowledged_ms, resolved_reason FROM alerts "
            "WHERE state = 'firing' OR (id = ANY($1::bigint[]) AND state <> 'pending') ORDER BY id",
            list(resolved_ids),
        )
        return [convert(r, AlertView) for r in rows]

    # ------------------------------------------------------------------ silences

    async def silences(
        self, *, now_ms: int | None = None, include_expired: bool = False, limit: int | None = 1000
    ) -> list[SilenceRecord]:
        """Newest first. Without ``include_expired``: those not ended at ``now_ms`` (active or to come).
        ``limit`` ``None``: all of them (the notifier must see every silence that mutes)."""
        rows = await self._fetch(
            "listing silences",
            f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE $1 OR (ends_at > $2 AND expired_by IS NULL) "
            "ORDER BY id DESC LIMIT $3",
            include_expired,
            now_ms if now_ms is not None else 0,
            limit,
        )
        return [convert(r, SilenceRecord) for r in rows]

    async def get_silence(self, silence_id: int) -> SilenceRecord | None:
        rows = await self._fetch(
            "reading a silence", f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = $1", silence_id
        )
        return convert(rows[0], SilenceRecord) if rows else None

    async def add_silence(
        self,
        matchers: Sequence[Matcher],
        starts_ms: int,
        ends_ms: int,
        created_by: str,
        comment: str,
        now_ms: int,
    ) -> SilenceRecord:
        rows = await self._fetch(
            "adding a silence",
            "WITH added AS (INSERT INTO silences "
            "(matchers, starts_at, ends_at, created_by, comment, created_at) "
            f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_SILENCE_COLUMNS}) "
            "SELECT *, pg_notify($7, '') FROM added",
            [str(m) for m in matchers],
            starts_ms,
            ends_ms,
            created_by,
            comment,
            now_ms,
            ALERTS_CHANNEL,
        )
        return convert(rows[0], SilenceRecord)

    async def expire_silence(self, silence_id: int, by: str, now_ms: int) -> SilenceRecord | None:
        """End a silence now (one that has not started yet ends as it starts: it never mutes).
        ``None``: no such silence, or it had already ended."""
        rows = await self._fetch(
            "expiring a silence",
            "WITH ended AS (UPDATE silences "
            "SET ends_at = greatest($2, starts_at), "
            "expired_by = $3 WHERE id = $1 AND ends_at > $2 AND expired_by IS NULL "
            f"RETURNING {_SILENCE_COLUMNS}) "
            "SELECT *, pg_notify($4, '') FROM ended",
            silence_id,
            now_ms,
            by,
            ALERTS_CHANNEL,
        )
        return convert(rows[0], SilenceRecord) if rows else None

    # ------------------------------------------------------------------ notification logs

    async def logs(self) -> dict[str, GroupLog]:
        rows = await self._fetch("reading notification logs", "SELECT log FROM notify_logs")
        logs = (msgspec.convert(r["log"], GroupLog) for r in rows)
        return {log.id: log for log in logs}

    async def save_logs(self, logs: Sequence[GroupLog], now_ms: int) -> None:
        if not logs:
            return
        async with self._connection("saving notification logs") as conn:
            await conn.executemany(
                "INSERT INTO notify_logs (id, log, updated_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (id) DO UPDATE SET log = EXCLUDED.log, updated_at = EXCLUDED.updated_at",
                [(log.id, msgspec.to_builtins(log), now_ms) for log in logs],
            )

    async def delete_logs(self, ids: Collection[str]) -> None:
        if ids:
            await self._fetch(
                "deleting notification logs", "DELETE FROM notify_logs WHERE id = ANY($1)", list(ids)
            )

    # ------------------------------------------------------------------ delivery log

    async def record_delivery(self, delivery: Delivery) -> None:
        await self._fetch(
            "recording a delivery",
            "INSERT INTO notifications (at, receiver, channel, group_key, status, outcome, detail, attempt, "
            "escalation, repeat, alert_ids, site_ids) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            delivery.at_ms,
            delivery.receiver,
            delivery.channel,
            delivery.group_key,
            delivery.status,
            delivery.outcome,
            delivery.detail,
            delivery.attempt,
            delivery.escalation,
            delivery.repeat,
            list(delivery.alert_ids),
            list(delivery.site_ids),
        )

    async def deliveries(
        self, *, site_ids: Sequence[str] | None = None, alert_id: int | None = None, limit: int = 500
    ) -> list[Delivery]:
        """Newest first. ``site_ids``: only deliveries about those sites (a caller's scope)."""
        rows = await self._fetch(
            "listing deliveries",
            f"SELECT {_DELIVERY_COLUMNS} FROM notifications WHERE ($1::text[] IS NULL OR site_ids <@ $1) "
            "AND ($2::bigint IS NULL OR alert_ids @> ARRAY[$2::bigint]) ORDER BY id DESC LIMIT $3",
            None if site_ids is None else list(site_ids),
            alert_id,
            limit,
        )
        return [convert(r, Delivery) for r in rows]

    async def prune_deliveries(self, before_ms: int) -> None:
        await self._fetch("pruning the delivery log", "DELETE FROM notifications WHERE at < $1", before_ms)

    # ------------------------------------------------------------------ leadership and wake-ups

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[Listener]:
        """A pooled connection held for the block, listening on the alerts channel."""
        lost = False
        try:
            async with self._pool.acquire() as conn:
                listener = Listener(conn)
                await conn.add_listener(ALERTS_CHANNEL, listener.on_notify)
                conn.add_termination_listener(listener.on_lost)
                try:
                    yield listener
                finally:
                    # A connection that died was already given back to the pool: touching it raises.
                    lost = listener.lost.is_set() or is_gone(conn)
                    with contextlib.suppress(*STORE_FAILURES):
                        if not lost:
                            await conn.remove_listener(ALERTS_CHANNEL, listener.on_notify)
                            if listener.leader:
                                await conn.execute("SELECT pg_advisory_unlock($1)", NOTIFIER_LOCK_KEY)
            if lost:  # the outage took the other pooled connections too: replace them
                await self._pool.expire_connections()
        except STORE_FAILURES as exc:
            await reset_pool(self._pool, exc, broken=lost)
            raise translate(exc, "listening for alert changes", broken=lost) from exc


class Listener:
    """Wakes the notifier on every committed alert change and holds the notifier's leadership lock.
    ``lost`` is set when the connection dies: the lock went with it, so another notifier may lead."""

    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
        self._conn = conn
        self.changed = asyncio.Event()
        self.lost = asyncio.Event()
        self.leader = False

    def on_notify(self, *_args: Any) -> None:
        self.changed.set()

    def on_lost(self, *_args: Any) -> None:
        self.lost.set()
        self.changed.set()

    async def try_lead(self) -> bool:
        """Take the notifier lock if no other notifier holds it."""
        try:
            self.leader = bool(
                await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", NOTIFIER_LOCK_KEY)
            )
        except STORE_FAILURES as exc:
            raise translate(exc, "taking the notifier lock", broken=is_gone(self._conn)) from exc
        return self.leader
