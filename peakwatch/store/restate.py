"""The accountant's queries: the ledger (``meter_intervals``), stored readings to re-derive it from, and
saving recomputed windows with their revision history.

A window that is saved again with different values gets ``revision + 1`` and its previous value goes to
``kpi_revisions`` with its causes (the requests whose inputs changed it), in the same transaction, and
each cause's request counts the revision (``restatement_requests.restated``). Values that only differ
by float rounding (a sum taken in another order) are not a new revision.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec

from peakwatch.domain.components import encode_components
from peakwatch.domain.models import Components, KpiWindow, Reading
from peakwatch.store.conn import Conn
from peakwatch.store.pooled import convert
from peakwatch.store.records import RestatementRequest
from peakwatch.store.sanitize import finite_amount, kpi_window, window_document
from peakwatch.store.writes import KPI_SELECT, write_kpi_windows

_READING_FIELDS: Final = "r.ts AS ts_ms, r.energy_kwh, r.power_kw, r.volume_m3, r.heat_gj, r.mass_t, r.count"
_REL_TOL: Final = 1e-9
_ABS_TOL: Final = 1e-9
_IGNORED: Final = frozenset({"revision", "flags"})
"""Not a change of value: the revision number itself, and flags (they only accumulate reasons)."""


class Cause(msgspec.Struct, frozen=True, kw_only=True):
    """Why a window was restated: one request (``request_id`` ``None``: not from the queue)."""

    request_id: int | None
    reason: str
    detail: str


Attribution = Callable[[KpiWindow, KpiWindow], Sequence[Cause]]
"""(stored window, recomputed window) -> the causes of the difference."""


class LedgerMinute(msgspec.Struct, kw_only=True):
    amounts: dict[str, float]
    estimated: set[str]


async def frontiers(conn: Conn) -> dict[tuple[str, str], int]:
    """(site, period) -> end of the newest stored window."""
    rows = await conn.fetch(
        "SELECT site_id, period, max(window_end) AS end_ms FROM kpi_windows GROUP BY 1, 2"
    )
    return {(r["site_id"], r["period"]): r["end_ms"] for r in rows}


async def first_window_start(conn: Conn, site_id: str) -> int | None:
    value = await conn.fetchval(
        "SELECT min(window_start) FROM kpi_windows WHERE site_id = $1 AND period = '1m'", site_id
    )
    return None if value is None else int(value)


async def load_windows(conn: Conn, site_id: str, period: str, from_ms: int, to_ms: int) -> list[KpiWindow]:
    rows = await conn.fetch(
        KPI_SELECT + " WHERE site_id = $1 AND period = $2 AND window_start >= $3 AND window_start < $4 "
        "ORDER BY window_start",
        site_id,
        period,
        from_ms,
        to_ms,
    )
    return [kpi_window(r) for r in rows]


async def windows_overlapping(
    conn: Conn, site_id: str, period: str, from_ms: int, to_ms: int
) -> list[tuple[int, int]]:
    """(start, end) of the stored windows of ``period`` that overlap ``[from_ms, to_ms)``."""
    rows = await conn.fetch(
        "SELECT window_start, window_end FROM kpi_windows WHERE site_id = $1 AND period = $2 "
        "AND window_end > $3 AND window_start < $4 ORDER BY window_start",
        site_id,
        period,
        from_ms,
        to_ms,
    )
    return [(r["window_start"], r["window_end"]) for r in rows]


async def ledger(conn: Conn, site_id: str, from_ms: int, to_ms: int) -> dict[int, LedgerMinute]:
    """Per-meter amounts of every window starting in ``[from_ms, to_ms)``, in time and meter order (not
    the storage order, which a compressed chunk changes). The table holds one row per meter and window;
    should a layout ever return several, they are summed exactly (``math.fsum``)."""
    rows = await conn.fetch(
        "SELECT window_start, meter_id, amount, estimated FROM meter_intervals "
        "WHERE site_id = $1 AND window_start >= $2 AND window_start < $3 ORDER BY window_start, meter_id",
        site_id,
        from_ms,
        to_ms,
    )
    parts: dict[tuple[int, str], list[float]] = {}
    out: dict[int, LedgerMinute] = {}
    for r in rows:
        start, meter_id = r["window_start"], r["meter_id"]
        minute = out.get(start)
        if minute is None:
            minute = out[start] = LedgerMinute(amounts={}, estimated=set())
        if finite_amount(site_id, meter_id, start, r["amount"]):
            parts.setdefault((start, meter_id), []).append(r["amount"])
        if r["estimated"]:
            minute.estimated.add(meter_id)
    for (start, meter_id), amounts in parts.items():
        out[start].amounts[meter_id] = math.fsum(amounts)
    return out


async def reading_bounds(
    conn: Conn, site_id: str, meter_id: str, from_ms: int, to_ms: int
) -> tuple[int, int]:
    """The span a re-derivation of ``[from_ms, to_ms)`` must cover: from the meter's last reading
    before ``from_ms`` to its first reading at or after ``to_ms`` (the range itself when there is none)."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT max(r.ts) FROM readings r WHERE r.meter_key = m.key AND r.ts < $3) AS before_ms,
               (SELECT min(r.ts) FROM readings r WHERE r.meter_key = m.key AND r.ts >= $4) AS after_ms
        FROM meters m WHERE m.site_id = $1 AND m.id = $2
        """,
        site_id,
        meter_id,
        from_ms,
        to_ms,
    )
    if row is None:
        return from_ms, to_ms
    before = row["before_ms"] if row["before_ms"] is not None else from_ms
    after = row["after_ms"] if row["after_ms"] is not None else to_ms
    return int(before), int(after)


async def lock_meter(conn: Conn, site_id: str, meter_id: str) -> None:
    """Lock the meter's ``meter_state`` row until the transaction ends (the live write path upserts it
    in the same transaction as the meter's intervals)."""
    await conn.execute(
        "SELECT 1 FROM meter_state WHERE site_id = $1 AND meter_id = $2 FOR UPDATE", site_id, meter_id
    )


async def readings_around(
    conn: Conn, site_id: str, meter_id: str, from_ms: int, to_ms: int, *, context: int = 1
) -> list[Reading]:
    """The meter's readings in ``[from_ms, to_ms)`` plus the last ``context`` before and the first one at
    or after the range, oldest first: every interval that overlaps the range."""
    rows = await conn.fetch(
        f"""
        WITH m AS (SELECT key FROM meters WHERE site_id = $1 AND id = $2)
        (SELECT {_READING_FIELDS} FROM readings r, m WHERE r.meter_key = m.key AND r.ts < $3
         ORDER BY r.ts DESC LIMIT $5)
        UNION ALL
        (SELECT {_READING_FIELDS} FROM readings r, m WHERE r.meter_key = m.key AND r.ts >= $3 AND r.ts < $4)
        UNION ALL
        (SELECT {_READING_FIELDS} FROM readings r, m WHERE r.meter_key = m.key AND r.ts >= $4
         ORDER BY r.ts LIMIT 1)
        """,
        site_id,
        meter_id,
        from_ms,
        to_ms,
        context,
    )
    readings = [Reading(site_id=site_id, meter_id=meter_id, **dict(r)) for r in rows]
    readings.sort(key=lambda r: r.ts_ms)
    return readings


async def readings_before_baselines(conn: Conn, count: int) -> list[Reading]:
    """Per meter with a stored state, up to ``count`` readings just before its baseline, newest first:
    a restarted processor finds there the drop its meter's baseline may still be pending on."""
    rows = await conn.fetch(
        f"""
        SELECT s.site_id, s.meter_id, {_READING_FIELDS}
        FROM meter_state s
        JOIN meters m ON m.site_id = s.site_id AND m.id = s.meter_id
        CROSS JOIN LATERAL (SELECT * FROM readings r0 WHERE r0.meter_key = m.key AND r0.ts < s.last_ts
                            ORDER BY r0.ts DESC LIMIT $1) r
        ORDER BY s.site_id, s.meter_id, r.ts DESC
        """,
        count,
    )
    return [Reading(**dict(r)) for r in rows]


async def replace_intervals(
    conn: Conn,
    site_id: str,
    meter_id: str,
    from_ms: int,
    to_ms: int,
    amounts: Mapping[int, float],
    estimated: set[int],
) -> None:
    """Make the meter's ledger rows in ``[from_ms, to_ms)`` exactly ``amounts`` (window start -> amount)."""
    await conn.execute(
        "DELETE FROM meter_intervals WHERE site_id = $1 AND meter_id = $2 AND window_start >= $3 "
        "AND window_start < $4",
        site_id,
        meter_id,
        from_ms,
        to_ms,
    )
    if amounts:
        await conn.copy_records_to_table(
            "meter_intervals",
            records=[(site_id, meter_id, w, a, w in estimated) for w, a in sorted(amounts.items())],
            columns=("site_id", "meter_id", "window_start", "amount", "estimated"),
        )


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)
    if isinstance(a, Components) and isinstance(b, Components):
        return _close(encode_components(a), encode_components(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return bool(a == b)


def changed(old: KpiWindow, new: KpiWindow, fields: Sequence[str]) -> bool:
    """Whether any of ``fields`` differs between the two (up to float rounding)."""
    return not all(_close(getattr(old, f), getattr(new, f)) for f in fields)


async def meter_events(conn: Conn, site_id: str, from_ms: int, to_ms: int) -> list[tuple[str, int, str]]:
    """``(meter, ts, kind)`` of the site's stored meter events in ``[from_ms, to_ms)``."""
    rows = await conn.fetch(
        "SELECT DISTINCT meter_id, ts AS ts_ms, kind FROM meter_events "
        "WHERE site_id = $1 AND ts >= $2 AND ts < $3",
        site_id,
        from_ms,
        to_ms,
    )
    return [(r["meter_id"], r["ts_ms"], r["kind"]) for r in rows]


def same_values(old: KpiWindow, new: KpiWindow) -> bool:
    """Whether ``new`` states the same values as ``old`` (up to float rounding)."""
    a = msgspec.structs.asdict(old)
    b = msgspec.structs.asdict(new)
    return all(_close(a[k], b[k]) for k in a if k not in _IGNORED)


async def later_requests(conn: Conn, site_id: str, after_id: int) -> list[RestatementRequest]:
    """Pending requests queued after ``after_id`` for the site (or every site): their inputs are stored
    already, so a recomputation for an earlier request may apply them too (and must cite them)."""
    rows = await conn.fetch(
        "SELECT id, site_id, meter_id, from_ts AS from_ms, to_ts AS to_ms, reason, detail, "
        "requested_at AS requested_ms, done_at AS done_ms, restated, factor_id FROM restatement_requests "
        "WHERE id > $2 AND done_at IS NULL AND (site_id IS NULL OR site_id = $1) ORDER BY id",
        site_id,
        after_id,
    )
    return [convert(r, RestatementRequest) for r in rows]


def _flags(old: KpiWindow, new: KpiWindow, exact: bool) -> tuple[str, ...]:
    return tuple(sorted(new.flags)) if exact else tuple(sorted(set(old.flags) | set(new.flags)))


async def save_windows(
    conn: Conn,
    windows: Sequence[KpiWindow],
    reason: str,
    detail: str,
    *,
    causes: Attribution | None = None,
    exact_flags: bool = False,
) -> int:
    """Save recomputed windows: new ones as revision 0; changed ones as the next revision, keeping the
    previous value in ``kpi_revisions`` with its causes (``causes(old, new)``; default: one cause,
    ``reason`` and ``detail``); unchanged ones are left alone. Flags accumulate, unless ``exact_flags``
    (the caller re-derived them: a reset that a replacement explains is no reset). Returns how many were
    restated (changed). Run inside a transaction."""
    if not windows:
        return 0
    default = (Cause(request_id=None, reason=reason, detail=detail),)
    by_key = {(w.site_id, w.period, w.start_ms): w for w in windows}
    rows = await conn.fetch(
        KPI_SELECT + " WHERE (site_id, period, window_start) IN "
        "(SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]))",
        [k[0] for k in by_key],
        [k[1] for k in by_key],
        [k[2] for k in by_key],
    )
    existing = {(r["site_id"], r["period"], r["start_ms"]): kpi_window(r) for r in rows}
    to_write: list[KpiWindow] = []
    revisions: list[tuple[object, ...]] = []
    credited: collections.Counter[int] = collections.Counter()
    for key, new in by_key.items():
        old = existing.get(key)
        if old is None:
            to_write.append(msgspec.structs.replace(new, revision=0))
            continue
        flags = _flags(old, new, exact_flags)
        if same_values(old, new):
            if flags != tuple(sorted(old.flags)):
                to_write.append(msgspec.structs.replace(old, flags=flags))
            continue
        to_write.append(msgspec.structs.replace(new, revision=old.revision + 1, flags=flags))
        why = (causes(old, new) if causes is not None else ()) or default
        revisions.append(
            (
                *key,
                old.revision + 1,
                ",".join(dict.fromkeys(c.reason for c in why)),
                "; ".join(dict.fromkeys(c.detail for c in why if c.detail)),
                window_document(old),
                msgspec.to_builtins(list(why)),
            )
        )
        credited.update(c.request_id for c in why if c.request_id is not None)
    if revisions:
        await conn.executemany(
            "INSERT INTO kpi_revisions (site_id, period, window_start, revision, reason, detail, previous, "
            "causes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            revisions,
        )
    if credited:
        await conn.execute(
            "UPDATE restatement_requests r SET restated = r.restated + c.n "
            "FROM (SELECT id, count(*)::integer AS n FROM unnest($1::bigint[]) AS id GROUP BY id) c "
            "WHERE r.id = c.id",
            list(credited.elements()),
        )
    if to_write:
        await write_kpi_windows(conn, to_write)
    return len(revisions)
