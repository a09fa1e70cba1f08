"""Accounting inputs entered by people (through the API) and the restatement queue they feed.

Factor versions, meter replacements, green instruments and monthly value added all change KPIs that
are already stored. So every write here inserts its ``restatement_requests`` row in the SAME
transaction as the input: an input is never stored without the recomputation it calls for, and a
failed write queues nothing. The processor's accountant drains the queue.

Timestamps are epoch ms on both sides (the pool's ``timestamptz`` codec, ``peakwatch.store.codec``);
months are ``datetime.date`` values on the 1st, a calendar month in the site's time zone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from typing import Final, Literal

import asyncpg
import msgspec

from peakwatch.clock import now_ms
from peakwatch.domain.factors import Factor
from peakwatch.domain.instants import from_datetime
from peakwatch.domain.models import MeterReplacement, RestatementReason
from peakwatch.domain.periods import Period, window_end, window_start
from peakwatch.domain.targets import Target
from peakwatch.errors import ConflictError, StoreError
from peakwatch.store.conn import Conn
from peakwatch.store.pooled import convert
from peakwatch.store.records import RestatementRequest
from peakwatch.store.restatement_queue import RestatementQueue, queue_factor_revision, queue_restatement

InstrumentKind = Literal["certificate", "contract"]

_FACTOR_SELECT: Final = """
SELECT id, version, value, unit, source, data_year, published, status, recorded_at AS recorded_ms
FROM factor_versions"""
_INSTRUMENT_SELECT: Final = """
SELECT id, site_id, month, kind, kwh, reference, recorded_at AS recorded_ms FROM green_instruments"""
_TARGET_SELECT: Final = "SELECT id, site_id, kpi, kind, value, year, baseline_year, note FROM targets"


class GreenInstrument(msgspec.Struct, frozen=True, kw_only=True):
    """Green certificates or a green-power contract applied to one site and local calendar month."""

    id: int
    site_id: str
    month: date
    kind: InstrumentKind
    kwh: float
    reference: str
    recorded_ms: int


class ValueAdded(msgspec.Struct, frozen=True, kw_only=True):
    site_id: str
    month: date
    value_cny: float
    recorded_ms: int


def month_range_ms(month: date, tz: str) -> tuple[int, int]:
    """``[start, end)`` of a calendar month in time zone ``tz``, epoch ms."""
    noon = datetime(month.year, month.month, 1, 12, tzinfo=UTC)
    start = window_start(Period.MONTH, from_datetime(noon), tz)
    return start, window_end(Period.MONTH, start, tz)


def _check_month(month: date) -> None:
    if month.day != 1:
        raise ValueError(f"a month is given by its first day, not {month.isoformat()}")


class InputsStore(RestatementQueue):
    """Queries on the accounting inputs, and (inherited) on the restatement queue they feed
    (``Store.inputs``).

    Every method raises StoreError when the database fails; ``ConflictError`` (a StoreError) when a
    write collides with a stored key.
    """

    # ---------------------------------------------------------------- factor versions

    async def load_factor_versions(self) -> list[Factor]:
        """Versions added through the API, oldest first per id: newer than the code's and the YAML's,
        so the caller applies them last (``FactorLibrary.with_overrides``)."""
        rows = await self._fetch(
            "loading factor versions", _FACTOR_SELECT + " ORDER BY id, version, recorded_at"
        )
        return [convert(r, Factor) for r in rows]

    async def add_factor_version(self, factor: Factor, *, detail: str = "") -> RestatementRequest:
        """Store ``factor`` (its ``version`` chosen by the caller, raised past any version already stored
        for the id so an edited YAML cannot make it collide) and queue the restatement of every site's
        windows since 2000-01-01: a factor may be in any site's set."""
        now = now_ms()
        async with self._transaction("adding a factor version") as conn:
            try:
                await conn.execute(
                    """
                    INSERT INTO factor_versions (id, version, value, unit, source, data_year, published,
                                                 status, recorded_at)
                    SELECT $1, GREATEST($2::integer,
                                        COALESCE((SELECT max(version) FROM factor_versions WHERE id = $1), 0)
                                        + 1),
                           $3, $4, $5, $6, $7, $8, $9
                    """,
                    factor.id,
                    factor.version,
                    factor.value,
                    factor.unit,
                    factor.source,
                    factor.data_year,
                    factor.published,
                    factor.status,
                    factor.recorded_ms if factor.recorded_ms is not None else now,
                )
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(
                    f"factor {factor.id!r} got another version at the same time; read it and retry"
                ) from exc
            stored = await conn.fetchrow(
                _FACTOR_SELECT + " WHERE id = $1 ORDER BY version DESC LIMIT 1", factor.id
            )
            assert stored is not None
            # known from now on: the next start's registry sync does not queue it a second time
            await _record_factors(conn, [convert(stored, Factor)], only_known=True)
            return await queue_factor_revision(
                conn, factor.id, detail or f"factor {factor.ref} = {factor.value:g} {factor.unit}", now
            )

    async def sync_factors(self, current: Sequence[Factor]) -> list[RestatementRequest]:
        """Compare the factors a processor starts with (code defaults, registry YAML, API versions) with
        those the last start recorded, and queue a ``factor_revision`` (every site, as the API does) for
        each factor whose version changed: a factor overridden in the YAML restates what it affects
        instead of applying to new windows only. The first sync only records (nothing to compare with).
        Processors starting together take turns (table lock), so a change is queued once."""
        now = now_ms()
        requests: list[RestatementRequest] = []
        async with self._transaction("syncing factor versions") as conn:
            await conn.execute("LOCK TABLE factor_sync IN EXCLUSIVE MODE")
            rows = await conn.fetch("SELECT id, ref, value, unit FROM factor_sync")
            known = {r["id"]: r for r in rows}
            for f in current:
                was = known.get(f.id)
                if was is None or (was["ref"], was["value"], was["unit"]) == (f.ref, f.value, f.unit):
                    continue  # new (no window used it yet) or unchanged
                requests.append(
                    await queue_factor_revision(
                        conn,
                        f.id,
                        f"factor {f.ref} (registry): {was['value']:g} -> {f.value:g} {f.unit}",
                        now,
                    )
                )
            await _record_factors(conn, current)
        return requests

    # ---------------------------------------------------------------- meter replacements

    async def add_replacement(self, replacement: MeterReplacement) -> RestatementRequest:
        """Store a meter swap and queue the meter's re-derivation at its instant (the accountant widens
        the range to the readings that bracket the swap)."""
        r = replacement
        async with self._transaction("recording a meter replacement") as conn:
            try:
                await conn.execute(
                    "INSERT INTO meter_replacements (site_id, meter_id, ts, old_final, new_initial, note) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
                    r.site_id,
                    r.meter_id,
                    r.ts_ms,
                    r.old_final,
                    r.new_initial,
                    r.note,
                )
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(
                    f"meter {r.site_id}/{r.meter_id} already has a replacement at {r.ts_ms} ms"
                ) from exc
            return await queue_restatement(
                conn,
                r.site_id,
                r.meter_id,
                r.ts_ms,
                r.ts_ms + 1,
                RestatementReason.METER_REPLACEMENT,
                f"meter {r.meter_id} replaced: old final {r.old_final:g}, new initial {r.new_initial:g}",
            )

    async def list_replacements(
        self, site_id: str | None = None, meter_id: str | None = None
    ) -> list[MeterReplacement]:
        """Oldest first; ``None`` matches every site / meter (a restarted processor loads them all)."""
        rows = await self._fetch(
            "listing meter replacements",
            "SELECT site_id, meter_id, ts AS ts_ms, old_final, new_initial, note FROM meter_replacements "
            "WHERE ($1::text IS NULL OR site_id = $1) AND ($2::text IS NULL OR meter_id = $2) "
            "ORDER BY ts, site_id, meter_id",
            site_id,
            meter_id,
        )
        return [convert(r, MeterReplacement) for r in rows]

    # ---------------------------------------------------------------- green instruments

    async def add_green_instrument(
        self, site_id: str, month: date, kind: InstrumentKind, kwh: float, reference: str = ""
    ) -> tuple[GreenInstrument, RestatementRequest]:
        """Store certificates or a contract for a local month and queue that month's restatement."""
        _check_month(month)
        async with self._transaction("recording a green instrument") as conn:
            from_ms, to_ms = await _site_month(conn, site_id, month)
            row = await conn.fetchrow(
                "INSERT INTO green_instruments (site_id, month, kind, kwh, reference) "
                "VALUES ($1, $2, $3, $4, $5) "
                "RETURNING id, site_id, month, kind, kwh, reference, recorded_at AS recorded_ms",
                site_id,
                month,
                kind,
                kwh,
                reference,
            )
            assert row is not None
            instrument: GreenInstrument = convert(row, GreenInstrument)
            request = await queue_restatement(
                conn,
                site_id,
                None,
                from_ms,
                to_ms,
                RestatementReason.GREEN_INSTRUMENTS,
                f"{kind} {reference or '(no reference)'}: {kwh:g} kWh for {month:%Y-%m}",
            )
        return instrument, request

    async def list_green_instruments(self, site_id: str, month: date | None = None) -> list[GreenInstrument]:
        """By month, then in the order they were recorded."""
        rows = await self._fetch(
            "listing green instruments",
            _INSTRUMENT_SELECT
            + " WHERE site_id = $1 AND ($2::date IS NULL OR month = $2) ORDER BY month, id",
            site_id,
            month,
        )
        return [convert(r, GreenInstrument) for r in rows]

    async def green_kwh(self, site_id: str, month: date) -> float:
        """Certificates and contracts of a month, kWh (0 when none are registered)."""
        async with self._connection("summing green instruments") as conn:
            rows = await conn.fetch(
                "SELECT kwh FROM green_instruments WHERE site_id = $1 AND month = $2", site_id, month
            )
        return math.fsum(r["kwh"] for r in rows)  # exact: not the rows' storage order (SQL sum is)

    # ---------------------------------------------------------------- value added

    async def set_value_added(self, site_id: str, month: date, value_cny: float) -> RestatementRequest:
        """Store (or replace) a month's value added and queue that month's restatement."""
        _check_month(month)
        async with self._transaction("recording value added") as conn:
            from_ms, to_ms = await _site_month(conn, site_id, month)
            await conn.execute(
                "INSERT INTO value_added (site_id, month, value_cny) VALUES ($1, $2, $3) "
                "ON CONFLICT (site_id, month) DO UPDATE "
                "SET value_cny = EXCLUDED.value_cny, recorded_at = now()",
                site_id,
                month,
                value_cny,
            )
            return await queue_restatement(
                conn,
                site_id,
                None,
                from_ms,
                to_ms,
                RestatementReason.VALUE_ADDED,
                f"value added {value_cny:g} CNY for {month:%Y-%m}",
            )

    async def list_value_added(self, site_id: str) -> list[ValueAdded]:
        """Oldest month first."""
        rows = await self._fetch(
            "listing value added",
            "SELECT site_id, month, value_cny, recorded_at AS recorded_ms FROM value_added "
            "WHERE site_id = $1 ORDER BY month",
            site_id,
        )
        return [convert(r, ValueAdded) for r in rows]

    async def value_added(self, site_id: str, month: date) -> float | None:
        """CNY, or ``None`` when the month has not been entered."""
        async with self._connection("reading value added") as conn:
            value = await conn.fetchval(
                "SELECT value_cny FROM value_added WHERE site_id = $1 AND month = $2", site_id, month
            )
        return None if value is None else float(value)

    # ---------------------------------------------------------------- targets

    async def add_target(self, target: Target) -> Target:
        """Store ``target``; returns it with its ``id``. Targets are not KPI inputs: nothing is restated."""
        t = target
        async with self._connection("adding a target") as conn:
            target_id = await conn.fetchval(
                "INSERT INTO targets (site_id, kpi, kind, value, year, baseline_year, note) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                t.site_id,
                t.kpi,
                t.kind.value,
                t.value,
                t.year,
                t.baseline_year,
                t.note,
            )
        return msgspec.structs.replace(t, id=int(target_id))

    async def list_targets(self, site_id: str, year: int | None = None) -> list[Target]:
        rows = await self._fetch(
            "listing targets",
            _TARGET_SELECT + " WHERE site_id = $1 AND ($2::integer IS NULL OR year = $2) ORDER BY year, id",
            site_id,
            year,
        )
        return [convert(r, Target) for r in rows]

    async def delete_target(self, site_id: str, target_id: int) -> bool:
        """Whether a target of that site with that id existed."""
        async with self._connection("deleting a target") as conn:
            deleted = await conn.fetchval(
                "DELETE FROM targets WHERE site_id = $1 AND id = $2 RETURNING id", site_id, target_id
            )
        return deleted is not None

    # ---------------------------------------------------------------- plumbing

    @contextlib.asynccontextmanager
    async def _transaction(self, action: str) -> AsyncIterator[Conn]:
        async with self._connection(action) as conn, conn.transaction():
            yield conn


async def _site_month(conn: Conn, site_id: str, month: date) -> tuple[int, int]:
    """The month's range in the site's own time zone (read in the writing transaction)."""
    tz = await conn.fetchval("SELECT timezone FROM sites WHERE id = $1", site_id)
    if tz is None:
        raise StoreError(f"unknown site {site_id!r}", retryable=False)
    return month_range_ms(month, str(tz))


async def _record_factors(conn: Conn, factors: Sequence[Factor], *, only_known: bool = False) -> None:
    """Remember the factors' current versions (``only_known``: only ids recorded already, so a sync
    table that was never filled stays empty until a processor's first start fills it)."""
    if only_known:
        await conn.executemany(
            "UPDATE factor_sync SET ref = $2, value = $3, unit = $4 WHERE id = $1",
            [(f.id, f.ref, f.value, f.unit) for f in factors],
        )
        return
    await conn.executemany(
        "INSERT INTO factor_sync (id, ref, value, unit) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE "
        "SET ref = EXCLUDED.ref, value = EXCLUDED.value, unit = EXCLUDED.unit",
        [(f.id, f.ref, f.value, f.unit) for f in factors],
    )
