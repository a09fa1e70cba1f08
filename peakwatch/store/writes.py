"""The processor's write path: one ``ProcessedBatch`` in one transaction, bulk rows by COPY.

Rows go to COPY as ``msgspec.structs.astuple(struct)``: the domain Structs list their fields in the
same order as the table columns below (checked by ``layout_mismatches``, see the unit tests), and
timestamps stay int ms thanks to the connection codec (``peakwatch.store.codec``). So the hot path
builds one tuple per row in C and nothing else.

Staging tables are session-local temp tables created once per pooled connection
(``create_staging_tables``) and emptied at every commit (``ON COMMIT DELETE ROWS``).

Upserts from staging are ORDER BY key so that concurrent writers touching the same rows lock them in
the same order (no deadlocks; a deadlock would surface as a retryable StoreError anyway).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import asyncpg
import msgspec

from peakwatch.domain.components import encode_components
from peakwatch.domain.models import (
    AlertChange,
    DeadLetter,
    KpiWindow,
    MeterEvent,
    MeterInterval,
    MeterState,
    ProcessedBatch,
    Reading,
    Restatement,
)
from peakwatch.errors import FencedError
from peakwatch.store.conn import Conn

_astuple = msgspec.structs.astuple

READING_COLUMNS: Final = (
    "ts",
    "meter_key",
    "energy_kwh",
    "power_kw",
    "volume_m3",
    "heat_gj",
    "mass_t",
    "count",
)
METER_STATE_COLUMNS: Final = ("site_id", "meter_id", "last_ts", "last_value", "last_seen")
INTERVAL_COLUMNS: Final = ("site_id", "meter_id", "window_start", "amount", "estimated")
EVENT_COLUMNS: Final = ("site_id", "meter_id", "ts", "kind", "detail", "previous", "value")
RESTATEMENT_COLUMNS: Final = ("site_id", "from_ts", "to_ts", "reason", "detail", "meter_id")
DEAD_LETTER_COLUMNS: Final = ("received_at", "source", "reason", "detail", "payload", "site_id", "meter_id")

_FIELD_TO_COLUMN: Final = {
    "ts_ms": "ts",
    "last_ts_ms": "last_ts",
    "last_seen_ms": "last_seen",
    "window_start_ms": "window_start",
    "start_ms": "window_start",
    "end_ms": "window_end",
    "received_ms": "received_at",
    "from_ms": "from_ts",
    "to_ms": "to_ts",
}

KPI_COLUMNS: Final = tuple(_FIELD_TO_COLUMN.get(f, f) for f in KpiWindow.__struct_fields__)
"""kpi_windows columns in KpiWindow's field order (generated: the struct is the one list of KPIs)."""
KPI_SELECT: Final = (
    "SELECT "
    + ", ".join(
        {"window_start": "window_start AS start_ms", "window_end": "window_end AS end_ms"}.get(c, c)
        for c in KPI_COLUMNS
    )
    + " FROM kpi_windows"
)
"""Rows of kpi_windows that ``msgspec.convert`` turns into KpiWindow."""


def _sql_type(column: str, annotation: str) -> str:
    if column in ("window_start", "window_end"):
        return "timestamptz"
    for python, sql in (
        ("dict", "jsonb"),
        ("Components", "jsonb"),
        ("tuple", "text[]"),
        ("bool", "boolean"),
        ("float", "float8"),
    ):
        if annotation.startswith(python):
            return sql
    return "integer" if annotation.startswith("int") else "text"


_KPI_STAGING_COLUMNS: Final = ", ".join(
    f"{c} {_sql_type(c, KpiWindow.__annotations__[f])}"
    for f, c in zip(KpiWindow.__struct_fields__, KPI_COLUMNS, strict=True)
)

LAYOUTS: Final[tuple[tuple[type[msgspec.Struct], tuple[str, ...]], ...]] = (
    (MeterState, METER_STATE_COLUMNS),
    (MeterInterval, INTERVAL_COLUMNS),
    (MeterEvent, EVENT_COLUMNS),
    (KpiWindow, KPI_COLUMNS),
    (DeadLetter, DEAD_LETTER_COLUMNS),
    (Restatement, RESTATEMENT_COLUMNS),
)


def layout_mismatches() -> list[str]:
    """Structs whose field order no longer matches the COPY column order (must be empty)."""
    problems: list[str] = []
    for struct, columns in LAYOUTS:
        fields = tuple(_FIELD_TO_COLUMN.get(f, f) for f in struct.__struct_fields__)
        if fields != columns:
            problems.append(f"{struct.__name__}: fields {fields} != columns {columns}")
    return problems


_STAGING_DDL: Final = (
    """
CREATE TEMP TABLE IF NOT EXISTS pw_readings_in (
    ts timestamptz, meter_key integer, energy_kwh float8, power_kw float8, volume_m3 float8,
    heat_gj float8, mass_t float8, count float8
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS pw_meter_state_in (
    site_id text, meter_id text, last_ts timestamptz, last_value float8, last_seen timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS pw_intervals_in (
    site_id text, meter_id text, window_start timestamptz, amount float8, estimated boolean
) ON COMMIT DELETE ROWS;
DROP TABLE IF EXISTS pw_kpi_windows_in;
CREATE TEMP TABLE pw_kpi_windows_in ("""
    + _KPI_STAGING_COLUMNS
    + """) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS pw_restatements_in (
    site_id text, from_ts timestamptz, to_ts timestamptz, reason text, detail text, meter_id text
) ON COMMIT DELETE ROWS;
"""
)


async def create_staging_tables(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    await conn.execute(_STAGING_DDL)


_READINGS_MERGE: Final = f"""
INSERT INTO readings ({", ".join(READING_COLUMNS)})
SELECT {", ".join(READING_COLUMNS)} FROM pw_readings_in ORDER BY ts, meter_key
ON CONFLICT (ts, meter_key) DO NOTHING"""

# Several states of one meter in a batch collapse to the newest; last_seen is the latest of all.
_METER_STATE_UPSERT: Final = """
INSERT INTO meter_state AS m (site_id, meter_id, last_ts, last_value, last_seen)
SELECT DISTINCT ON (site_id, meter_id) site_id, meter_id, last_ts, last_value,
       max(last_seen) OVER (PARTITION BY site_id, meter_id)
FROM pw_meter_state_in
ORDER BY site_id, meter_id, last_ts DESC
ON CONFLICT (site_id, meter_id) DO UPDATE SET
    last_value = CASE WHEN EXCLUDED.last_ts >= m.last_ts THEN EXCLUDED.last_value ELSE m.last_value END,
    last_ts = GREATEST(m.last_ts, EXCLUDED.last_ts),
    last_seen = GREATEST(m.last_seen, EXCLUDED.last_seen)"""

_INTERVALS_ADD: Final = """
INSERT INTO meter_intervals AS t (site_id, meter_id, window_start, amount, estimated)
SELECT site_id, meter_id, window_start, sum(amount), bool_or(estimated)
FROM pw_intervals_in
GROUP BY site_id, meter_id, window_start
ORDER BY site_id, meter_id, window_start
ON CONFLICT (site_id, meter_id, window_start) DO UPDATE SET amount = t.amount + EXCLUDED.amount,
    estimated = t.estimated OR EXCLUDED.estimated"""

_KEY_COLUMNS: Final = ("site_id", "period", "window_start")
_KPI_UPSERT: Final = f"""
INSERT INTO kpi_windows ({", ".join(KPI_COLUMNS)}, computed_at)
SELECT {", ".join(KPI_COLUMNS)}, now() FROM pw_kpi_windows_in ORDER BY site_id, period, window_start
ON CONFLICT (site_id, period, window_start) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in KPI_COLUMNS if c not in _KEY_COLUMNS)},
    computed_at = EXCLUDED.computed_at"""

_RESTATEMENTS_ADD: Final = f"""
INSERT INTO restatement_requests ({", ".join(RESTATEMENT_COLUMNS)})
SELECT {", ".join(RESTATEMENT_COLUMNS)} FROM pw_restatements_in"""

# One statement per change, applied in order (executemany): close the open alert, or open/advance it
# (a close with no open alert changes nothing). An advance also takes the start: a re-judgement of
# restated windows corrects it (processor/rejudge.py).
# $1 fingerprint $2 rule $3 site_id $4 state $5 severity $6 summary $7 value $8 started $9 at $10 labels
# $11 reason
_ALERT_CHANGE: Final = """
WITH closed AS (
    UPDATE alerts
    SET state = $4, severity = $5, summary = $6, value = $7, resolved_at = $9, updated_at = $9,
        resolved_reason = $11::text
    WHERE $4 IN ('resolved', 'inactive') AND fingerprint = $1 AND state IN ('pending', 'firing')
    RETURNING id
)
INSERT INTO alerts AS a (fingerprint, rule, site_id, state, severity, summary, value, started_at, fired_at,
                         updated_at, labels)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $4 = 'firing' THEN $9 END, $9, $10
WHERE $4 NOT IN ('resolved', 'inactive')  -- an unknown state fails the table's CHECK
ON CONFLICT (fingerprint) WHERE state IN ('pending', 'firing') DO UPDATE SET
    state = EXCLUDED.state, severity = EXCLUDED.severity, summary = EXCLUDED.summary, value = EXCLUDED.value,
    fired_at = CASE WHEN COALESCE(a.fired_at, EXCLUDED.fired_at) IS NOT NULL  -- never before its start
                    THEN GREATEST(COALESCE(a.fired_at, EXCLUDED.fired_at), EXCLUDED.started_at) END,
    updated_at = EXCLUDED.updated_at, labels = EXCLUDED.labels, started_at = EXCLUDED.started_at"""

ALERTS_CHANNEL: Final = "peakwatch_alerts"
"""``NOTIFY`` channel: an alert changed (written by a processor step, acknowledged, a silence changed).
Delivered at commit, so a listener (the notifier, the API's live stream) never sees an uncommitted
change."""


MeterKeys = Mapping[tuple[str, str], int]


async def claim_sites(conn: Conn, sites: Sequence[str], owner: str) -> dict[str, int]:
    """Make ``owner`` the owner of ``sites``: each epoch grows by one. Waits for writes in flight that
    hold the old epochs (``check_fence``), so what the new owner reads next includes them."""
    rows = await conn.fetch(
        """
        INSERT INTO site_owners (site_id, epoch, owner)
        SELECT s, 1, $2 FROM unnest($1::text[]) AS s ORDER BY s
        ON CONFLICT (site_id) DO UPDATE
            SET epoch = site_owners.epoch + 1, owner = EXCLUDED.owner, claimed_at = now()
        RETURNING site_id, epoch
        """,
        sorted(sites),
        owner,
    )
    return {r["site_id"]: r["epoch"] for r in rows}


async def check_fence(conn: Conn, fence: Mapping[str, int]) -> None:
    """Raise FencedError unless every site of ``fence`` still has its epoch; lock those rows (FOR SHARE)
    until the transaction ends, so a hand-over waits for this transaction instead of missing it."""
    if not fence:
        return
    rows = await conn.fetch(
        "SELECT site_id, epoch FROM site_owners WHERE site_id = ANY($1::text[]) ORDER BY site_id FOR SHARE",
        sorted(fence),
    )
    held = {r["site_id"]: r["epoch"] for r in rows}
    lost = sorted(site for site, epoch in fence.items() if held.get(site) != epoch)
    if lost:
        raise FencedError(
            f"site(s) {', '.join(lost[:5])}{' …' if len(lost) > 5 else ''} were claimed by another "
            "processor: this one stalled past its turn and must not write"
        )


async def write_batch(conn: Conn, batch: ProcessedBatch, meter_keys: MeterKeys) -> None:
    """Everything in ``batch`` or nothing. ``meter_keys`` must hold every reading's meter (KeyError
    otherwise). Raises asyncpg errors (the caller translates them)."""
    async with conn.transaction():
        if batch.fence is not None:
            await check_fence(conn, batch.fence)
        if batch.write_id is not None:
            first = await conn.fetchval(
                "INSERT INTO processor_writes (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
                batch.write_id,
            )
            if not first:  # an earlier attempt committed (its reply was lost): applying it again would
                return  # add its interval amounts twice
            if hash(batch.write_id) % 1000 == 0:  # now and then, forget ids no retry can still carry
                await conn.execute("DELETE FROM processor_writes WHERE at < now() - interval '1 day'")
        if batch.readings:
            await _write_readings(conn, batch.readings, meter_keys)
        if batch.meter_states:
            await conn.copy_records_to_table(
                "pw_meter_state_in", records=map(_astuple, batch.meter_states), columns=METER_STATE_COLUMNS
            )
            await conn.execute(_METER_STATE_UPSERT)
        if batch.intervals:
            await conn.copy_records_to_table(
                "pw_intervals_in", records=map(_astuple, batch.intervals), columns=INTERVAL_COLUMNS
            )
            await conn.execute(_INTERVALS_ADD)
        if batch.events:
            await conn.copy_records_to_table(
                "meter_events", records=map(_astuple, batch.events), columns=EVENT_COLUMNS
            )
        if batch.kpi_windows:
            await write_kpi_windows(conn, batch.kpi_windows)
        if batch.alerts:
            await conn.executemany(_ALERT_CHANGE, [_alert_args(a) for a in batch.alerts])
            await conn.execute("SELECT pg_notify($1, '')", ALERTS_CHANNEL)
        if batch.dead_letters:
            await conn.copy_records_to_table(
                "dead_letters", records=map(_astuple, batch.dead_letters), columns=DEAD_LETTER_COLUMNS
            )
        if batch.restatements:
            await conn.copy_records_to_table(
                "pw_restatements_in", records=map(_astuple, batch.restatements), columns=RESTATEMENT_COLUMNS
            )
            await conn.execute(_RESTATEMENTS_ADD)


async def _write_readings(conn: Conn, readings: Sequence[Reading], keys: MeterKeys) -> None:
    records = [
        (
            r.ts_ms,
            keys[r.site_id, r.meter_id],
            r.energy_kwh,
            r.power_kw,
            r.volume_m3,
            r.heat_gj,
            r.mass_t,
            r.count,
        )
        for r in readings
    ]
    try:
        # Fast path: nothing in the batch is stored yet (the normal case). The savepoint keeps the
        # transaction usable when COPY hits a duplicate (a replay after a restart or a bus redelivery).
        async with conn.transaction():
            await conn.copy_records_to_table("readings", records=records, columns=READING_COLUMNS)
    except asyncpg.UniqueViolationError:
        await conn.copy_records_to_table("pw_readings_in", records=records, columns=READING_COLUMNS)
        await conn.execute(_READINGS_MERGE)


async def write_kpi_windows(conn: Conn, windows: Sequence[KpiWindow]) -> None:
    """Upsert (replace) windows by (site, period, start). Revisions are the accountant's business."""
    # A window recomputed within one batch: the last one wins (ON CONFLICT cannot touch a row twice).
    latest = {(w.site_id, w.period, w.start_ms): w for w in windows}
    await conn.copy_records_to_table(
        "pw_kpi_windows_in", records=map(_kpi_row, latest.values()), columns=KPI_COLUMNS
    )
    await conn.execute(_KPI_UPSERT)


_COMPONENTS_AT: Final = KpiWindow.__struct_fields__.index("components")


def _kpi_row(window: KpiWindow) -> tuple[object, ...]:
    """A window's COPY row: its components in their stored, flat form."""
    row = _astuple(window)
    return (*row[:_COMPONENTS_AT], encode_components(window.components), *row[_COMPONENTS_AT + 1 :])


def _alert_args(a: AlertChange) -> tuple[object, ...]:
    return (
        a.fingerprint,
        a.rule,
        a.site_id,
        a.state,
        a.severity,
        a.summary,
        a.value,
        a.started_ms,
        a.at_ms,
        a.labels,
        a.reason,
    )
