"""TimescaleDB extras, applied after the plain migrations when the extension can be used.

The base schema works on plain PostgreSQL. With TimescaleDB the time-series tables become
hypertables with compression and retention policies, and ``meter_energy_hourly`` (a continuous
aggregate of ``meter_intervals``) is maintained. Each step first checks whether it is already in
place, so running this on every start changes nothing and reports nothing once done.

``alerts`` stays a plain table: its open-alert unique index has no time column, and it is small.
``meter_events`` and ``dead_letters`` get ``(id, time)`` primary keys here because a hypertable needs
the time column in every unique index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import msgspec

from peakwatch.store.conn import Conn

_log = logging.getLogger(__name__)


HOURLY_VIEW: Final = "meter_energy_hourly"


class TimescalePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Whether to use TimescaleDB when it is available, how long data is kept and when chunks are
    compressed (ignored on plain PostgreSQL). ``None`` retention keeps data forever (an existing
    policy is removed). ``enabled=False`` leaves a database without the extension on plain tables."""

    enabled: bool = True
    readings_retention_days: int | None = 400
    dead_letters_retention_days: int | None = 90
    compress_after_days: int = 7
    readings_chunk_hours: int = 24

    def __post_init__(self) -> None:
        for name in (
            "readings_retention_days",
            "dead_letters_retention_days",
            "compress_after_days",
            "readings_chunk_hours",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"TimescalePolicy.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True, slots=True)
class _Hypertable:
    table: str
    time_column: str
    chunk_hours: int
    segmentby: str | None
    """``None``: not compressed."""
    orderby: str
    primary_key: tuple[str, ...] | None = None
    """Replacement primary key for tables whose key lacks the time column."""


def _hypertables(policy: TimescalePolicy) -> tuple[_Hypertable, ...]:
    return (
        _Hypertable("readings", "ts", policy.readings_chunk_hours, "meter_key", "ts DESC"),
        _Hypertable("meter_intervals", "window_start", 7 * 24, "site_id, meter_id", "window_start DESC"),
        # Every read and upsert names one site and one period: segmenting by both keeps a period's windows
        # in their own batches, so reading or restating the 1h windows does not decompress the 1m ones.
        _Hypertable(
            "kpi_windows", "window_start", 30 * 24, "site_id, period", "window_start DESC, window_end DESC"
        ),
        _Hypertable("meter_events", "ts", 30 * 24, "site_id, meter_id", "ts DESC, id", ("id", "ts")),
        _Hypertable("dead_letters", "received_at", 7 * 24, None, "received_at DESC", ("id", "received_at")),
    )


async def setup_timescale(conn: Conn, policy: TimescalePolicy) -> tuple[bool, list[str]]:
    """Whether the TimescaleDB path is active, and the steps this call applied."""
    steps: list[str] = []
    installed = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    if not policy.enabled:
        return installed is not None, steps
    if installed is None:
        available = await conn.fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
        if available is None:
            return False, steps
        preload = str(await conn.fetchval("SELECT current_setting('shared_preload_libraries')"))
        if "timescaledb" not in preload:
            _log.warning(
                "timescaledb %s is installed but not in shared_preload_libraries; "
                "using plain PostgreSQL tables",
                available,
            )
            return False, steps
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        steps.append("timescale:extension")
    tables = _hypertables(policy)
    for ht in tables:
        if await _make_hypertable(conn, ht):
            steps.append(f"timescale:hypertable:{ht.table}")
    for ht in tables:
        if ht.segmentby is not None:
            steps.extend(await _compression(conn, ht, policy.compress_after_days))
    retention = {
        "readings": policy.readings_retention_days,
        "dead_letters": policy.dead_letters_retention_days,
    }
    for table, days in retention.items():
        if await _policy(
            conn,
            "policy_retention",
            table,
            "drop_after",
            days,
            "add_retention_policy",
            "remove_retention_policy",
        ):
            steps.append(f"timescale:retention:{table}")
    steps.extend(await _hourly_aggregate(conn))
    for step in steps:
        _log.info("applied %s", step)
    return True, steps


async def _make_hypertable(conn: Conn, ht: _Hypertable) -> bool:
    if await _is_hypertable(conn, ht.table):
        return False
    async with conn.transaction():
        if ht.primary_key is not None:
            pk = await conn.fetchval(
                "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'", ht.table
            )
            if pk is not None:
                await conn.execute(f'ALTER TABLE {ht.table} DROP CONSTRAINT "{pk}"')
            await conn.execute(f"ALTER TABLE {ht.table} ADD PRIMARY KEY ({', '.join(ht.primary_key)})")
        # Default time indexes are skipped: 001/002 already index every time column we scan.
        await conn.execute(
            f"SELECT create_hypertable('{ht.table}', by_range('{ht.time_column}', "
            f"INTERVAL '{ht.chunk_hours} hours'), migrate_data => true, create_default_indexes => false)",
            timeout=3600,
        )
    return True


async def _is_hypertable(conn: Conn, table: str) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = $1",
        table,
    )
    return found is not None


async def _compression(conn: Conn, ht: _Hypertable, after_days: int) -> list[str]:
    steps: list[str] = []
    enabled = await conn.fetchval(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = $1",
        ht.table,
    )
    if not enabled:
        await conn.execute(
            f"ALTER TABLE {ht.table} SET (timescaledb.compress, "
            f"timescaledb.compress_segmentby = '{ht.segmentby}', "
            f"timescaledb.compress_orderby = '{ht.orderby}')"
        )
        steps.append(f"timescale:compression:{ht.table}")
    if await _policy(
        conn,
        "policy_compression",
        ht.table,
        "compress_after",
        after_days,
        "add_compression_policy",
        "remove_compression_policy",
    ):
        steps.append(f"timescale:compression_policy:{ht.table}")
    return steps


async def _policy(
    conn: Conn, proc: str, table: str, key: str, days: int | None, add: str, remove: str
) -> bool:
    """Make the table's ``proc`` job have ``config[key] = days`` (or no job when ``days`` is None).
    True when something changed."""
    current = await conn.fetchval(
        f"SELECT (config ->> '{key}')::interval = make_interval(days => $3::int) "
        "FROM timescaledb_information.jobs "
        "WHERE proc_name = $1 AND hypertable_schema = current_schema() AND hypertable_name = $2",
        proc,
        table,
        days or 0,
    )
    if current is True:
        return False
    if current is None and days is None:
        return False
    async with conn.transaction():
        if current is not None:
            await conn.execute(f"SELECT {remove}('{table}', if_exists => true)")
        if days is not None:
            await conn.execute(f"SELECT {add}('{table}', INTERVAL '{int(days)} days')")
    return True


async def _hourly_aggregate(conn: Conn) -> list[str]:
    steps: list[str] = []
    definition = await conn.fetchval(
        "SELECT view_definition FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = current_schema() AND view_name = $1",
        HOURLY_VIEW,
    )
    if definition is None or "ORDER BY" not in definition:
        # Real-time (materialized_only = false): the newest hour, not yet refreshed, is computed on read.
        # The minutes are summed in time order, not in storage order (which compression changes): the
        # same rows give the same double whatever the chunks' layout. An aggregate of an older version
        # (storage-order sum) is rebuilt; the refresh policy materialises it again.
        # (not in one transaction: a continuous aggregate is created outside one; a rerun finishes it)
        if definition is not None:
            await conn.execute(f"DROP MATERIALIZED VIEW {HOURLY_VIEW}")
        await conn.execute(f"""
            CREATE MATERIALIZED VIEW {HOURLY_VIEW}
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT site_id, meter_id, time_bucket(INTERVAL '1 hour', window_start) AS hour,
                   sum(amount ORDER BY window_start) AS amount, count(*) AS windows
            FROM meter_intervals
            GROUP BY site_id, meter_id, time_bucket(INTERVAL '1 hour', window_start)
            WITH NO DATA""")
        steps.append(f"timescale:continuous_aggregate:{HOURLY_VIEW}")
    # The refresh window starts at the beginning of time (start_offset NULL). A refresh only recomputes
    # the buckets the invalidation log names (rows written, restated or backfilled below the watermark),
    # so a run costs what changed, not the whole history. A window starting ``3 days`` back (the
    # policy before) left everything older unmaterialised once the watermark passed it (the real-time
    # part only reads above the watermark) and never applied restatements or backfill older than that.
    # meter_intervals has no retention policy, so the aggregate never refreshes over dropped chunks.
    job = await conn.fetchrow(
        "SELECT job_id, config ->> 'start_offset' AS start_offset FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_refresh_continuous_aggregate' "
        "AND hypertable_schema = current_schema() AND hypertable_name = $1",
        HOURLY_VIEW,
    )
    if job is None or job["start_offset"] is not None:
        async with conn.transaction():
            if job is not None:
                await conn.execute(f"SELECT remove_continuous_aggregate_policy('{HOURLY_VIEW}')")
            await conn.execute(
                f"SELECT add_continuous_aggregate_policy('{HOURLY_VIEW}', start_offset => NULL, "
                "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes')"
            )
        steps.append(f"timescale:refresh_policy:{HOURLY_VIEW}")
    return steps
