"""The TimescaleDB path: hypertables, compression, retention, the hourly continuous aggregate.

Skipped when the test server cannot load timescaledb. The write path and every query also run on
TimescaleDB in test_store.py (its ``[timescale]`` cases).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from peakwatch.config import Registry
from peakwatch.domain.models import KpiWindow, MeterInterval, ProcessedBatch, Reading
from peakwatch.store import Store, TimescalePolicy, restate

pytestmark = [pytest.mark.integration, pytest.mark.timescale]

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: older than the 7-day compression horizon


@pytest.fixture
async def raw(timescale_database_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    conn = await asyncpg.connect(timescale_database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def jobs(raw: asyncpg.Connection[asyncpg.Record], proc: str) -> dict[str, str]:
    rows = await raw.fetch(
        "SELECT hypertable_name, config::text AS config FROM timescaledb_information.jobs "
        "WHERE proc_name = $1",
        proc,
    )
    return {r["hypertable_name"]: r["config"] for r in rows}


async def test_hypertables_and_policies(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    assert timescale_store.timescale
    hypertables = {
        r["hypertable_name"]: r["compression_enabled"]
        for r in await raw.fetch(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = 'public'"
        )
    }
    assert hypertables == {
        "readings": True,
        "meter_intervals": True,
        "kpi_windows": True,
        "meter_events": True,
        "dead_letters": False,
    }
    segmentby = await raw.fetch(
        "SELECT attname FROM timescaledb_information.compression_settings "
        "WHERE hypertable_name = 'readings' AND segmentby_column_index IS NOT NULL "
        "ORDER BY segmentby_column_index"
    )
    assert [r["attname"] for r in segmentby] == ["meter_key"]
    compression = await jobs(raw, "policy_compression")
    assert sorted(compression) == ["kpi_windows", "meter_events", "meter_intervals", "readings"]
    assert all('"compress_after": "7 days"' in c for c in compression.values())
    retention = await jobs(raw, "policy_retention")
    assert sorted(retention) == ["dead_letters", "readings"]
    assert '"drop_after": "400 days"' in retention["readings"]
    assert '"drop_after": "90 days"' in retention["dead_letters"]
    assert list(await jobs(raw, "policy_refresh_continuous_aggregate")) == ["meter_energy_hourly"]
    assert await timescale_store.migrate() == []


async def test_policy_changes_are_applied_once(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    policy = TimescalePolicy(readings_retention_days=30, dead_letters_retention_days=None)
    assert await timescale_store.migrate(policy=policy) == [
        "timescale:retention:readings",
        "timescale:retention:dead_letters",
    ]
    assert await timescale_store.migrate(policy=policy) == []
    retention = await jobs(raw, "policy_retention")
    assert list(retention) == ["readings"]
    assert '"drop_after": "30 days"' in retention["readings"]


async def test_hourly_aggregate_sums_intervals(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    await timescale_store.write(
        ProcessedBatch(
            intervals=[
                MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0 + minute * 60_000, amount=1.5)
                for minute in range(90)
            ]
        )
    )
    query = (
        "SELECT extract(epoch FROM hour)::bigint * 1000 AS hour_ms, amount, windows "
        "FROM meter_energy_hourly WHERE site_id = 'dc-1' AND meter_id = 'it' ORDER BY hour"
    )
    expected = [(T0, 90.0, 60), (T0 + HOUR, 45.0, 30)]
    realtime = await raw.fetch(query)  # not refreshed yet: computed on read
    assert [tuple(r) for r in realtime] == expected
    await raw.execute("CALL refresh_continuous_aggregate('meter_energy_hourly', NULL, NULL)")
    assert [tuple(r) for r in await raw.fetch(query)] == expected


async def run_refresh_policy(raw: asyncpg.Connection[asyncpg.Record]) -> None:
    """Run the aggregate's refresh policy now, as its schedule would."""
    job = await raw.fetchval(
        "SELECT job_id FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = 'meter_energy_hourly'"
    )
    await raw.execute(f"CALL run_job({int(job)})")


def _hour(start_ms: int, amount: float) -> list[MeterInterval]:
    return [
        MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=start_ms + i * 60_000, amount=amount)
        for i in range(60)
    ]


async def test_hourly_aggregate_keeps_history_and_follows_restatements(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    """Months-old hours stay in the aggregate once its policy has moved the watermark past them, and a
    restatement or a backfill of such hours reaches it at the next refresh."""
    query = (
        "SELECT extract(epoch FROM hour)::bigint * 1000 AS hour_ms, amount, windows "
        "FROM meter_energy_hourly WHERE site_id = 'dc-1' AND meter_id = 'it' AND hour < $1 ORDER BY hour"
    )
    history = datetime.fromtimestamp((T0 + DAY) / 1000, UTC)
    yesterday = (int(time.time() * 1000) // HOUR - 24) * HOUR  # live data moves the watermark
    await timescale_store.write(
        ProcessedBatch(intervals=_hour(T0, 1.5) + _hour(T0 + HOUR, 1.5) + _hour(yesterday, 1.0))
    )
    await run_refresh_policy(raw)  # yesterday's hour is materialised: the watermark is past it
    recent = await raw.fetchval(
        "SELECT amount FROM meter_energy_hourly WHERE hour = $1",
        datetime.fromtimestamp(yesterday / 1000, UTC),
    )
    assert recent == 60.0
    assert [tuple(r) for r in await raw.fetch(query, history)] == [(T0, 90.0, 60), (T0 + HOUR, 90.0, 60)]
    # the accountant restates the second hour (DELETE + COPY: 60 x 0.5 = 30) and an hour is backfilled
    # (60 x 2 = 120), both months behind the watermark
    async with timescale_store.transaction("restating") as conn:
        restated = {T0 + HOUR + i * 60_000: 0.5 for i in range(60)}
        await restate.replace_intervals(conn, "dc-1", "it", T0 + HOUR, T0 + 2 * HOUR, restated, set())
    await timescale_store.write(ProcessedBatch(intervals=_hour(T0 + 5 * HOUR, 2.0)))
    await run_refresh_policy(raw)
    assert [tuple(r) for r in await raw.fetch(query, history)] == [
        (T0, 90.0, 60),
        (T0 + HOUR, 30.0, 60),
        (T0 + 5 * HOUR, 120.0, 60),
    ]


async def test_refresh_policy_of_older_versions_is_replaced(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    """A database set up with the old 3-day refresh window gets the whole-history policy at migrate."""
    await raw.execute("SELECT remove_continuous_aggregate_policy('meter_energy_hourly')")
    await raw.execute(
        "SELECT add_continuous_aggregate_policy('meter_energy_hourly', start_offset => INTERVAL '3 days', "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes')"
    )
    assert await timescale_store.migrate() == ["timescale:refresh_policy:meter_energy_hourly"]
    assert await timescale_store.migrate() == []
    config = (await jobs(raw, "policy_refresh_continuous_aggregate"))["meter_energy_hourly"]
    assert '"start_offset": null' in config


async def test_hourly_aggregate_sums_in_time_order(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    """The same minutes stored in opposite physical orders (one write each) give the same hourly double,
    computed on read, materialised, and read back from a compressed chunk. In storage order meter a
    would sum 0.3 + 0.2 + 0.1 = 0.6 and meter b 0.1 + 0.2 + 0.3 = 0.6000000000000001."""
    values = {T0: 0.3, T0 + 60_000: 0.2, T0 + 120_000: 0.1}
    for meter, starts in (("a", sorted(values)), ("b", sorted(values, reverse=True))):
        for start in starts:
            interval = MeterInterval(
                site_id="dc-1", meter_id=meter, window_start_ms=start, amount=values[start]
            )
            await timescale_store.write(ProcessedBatch(intervals=[interval]))
    query = "SELECT meter_id, amount FROM meter_energy_hourly WHERE site_id = 'dc-1' ORDER BY meter_id"
    realtime = [tuple(r) for r in await raw.fetch(query)]
    await raw.execute("SELECT compress_chunk(c) FROM show_chunks('meter_intervals') c")
    await run_refresh_policy(raw)
    materialised = [tuple(r) for r in await raw.fetch(query)]
    assert realtime == materialised
    assert materialised[0][1] == materialised[1][1]  # bit-identical


async def test_hourly_aggregate_of_older_versions_is_rebuilt(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    """An aggregate summing in storage order (before) is rebuilt at migrate, with its refresh policy."""
    await raw.execute("DROP MATERIALIZED VIEW meter_energy_hourly")
    await raw.execute(
        "CREATE MATERIALIZED VIEW meter_energy_hourly WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = false) AS SELECT site_id, meter_id, "
        "time_bucket(INTERVAL '1 hour', window_start) AS hour, sum(amount) AS amount, count(*) AS windows "
        "FROM meter_intervals GROUP BY site_id, meter_id, time_bucket(INTERVAL '1 hour', window_start) "
        "WITH NO DATA"
    )
    assert await timescale_store.migrate() == [
        "timescale:continuous_aggregate:meter_energy_hourly",
        "timescale:refresh_policy:meter_energy_hourly",
    ]
    assert await timescale_store.migrate() == []


async def test_writes_into_compressed_chunks(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    await timescale_store.sync_registry(
        Registry.from_text(
            "sites: [{id: dc-1, name: DC, kind: data_centre, "
            "meters: [{id: it, carrier: electricity, role: it_load}]}]"
        )
    )
    readings = [
        Reading(site_id="dc-1", meter_id="it", ts_ms=T0 + i * 1000, energy_kwh=float(i)) for i in range(10)
    ]
    interval = MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0, amount=2.0)
    await timescale_store.write(ProcessedBatch(readings=readings, intervals=[interval]))
    compressed = await raw.fetchval(
        "SELECT count(compress_chunk(c)) FROM (SELECT show_chunks('readings') AS c UNION ALL "
        "SELECT show_chunks('meter_intervals')) chunks"
    )
    assert compressed == 2
    # A replay overlapping the compressed chunk, plus a new reading in it; intervals still add up.
    late = Reading(site_id="dc-1", meter_id="it", ts_ms=T0 + 500, energy_kwh=0.5)
    await timescale_store.write(ProcessedBatch(readings=[*readings, late], intervals=[interval]))
    assert await timescale_store.count_readings() == 11
    assert await timescale_store.load_intervals(T0) == [
        MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0, amount=4.0)
    ]


async def test_disabled_policy_keeps_plain_tables(
    blank_database_url: str, pg_timescale_template: str | None
) -> None:
    if pg_timescale_template is None:
        pytest.skip("timescaledb is not available on the test server")
    store = await Store.connect(blank_database_url)
    try:
        applied = await store.migrate(policy=TimescalePolicy(enabled=False))
        assert not any(step.startswith("timescale:") for step in applied)
        assert store.timescale is False
    finally:
        await store.close()


def _window(period: str, start_ms: int, end_ms: int, electricity_kwh: float) -> KpiWindow:
    return KpiWindow(
        site_id="dc-1",
        period=period,
        start_ms=start_ms,
        end_ms=end_ms,
        electricity_kwh=electricity_kwh,
        facility_kwh=electricity_kwh,
        it_kwh=None,
        renewable_generation_kwh=0.0,
        renewable_consumed_kwh=0.0,
        grid_import_kwh=electricity_kwh,
        grid_export_kwh=0.0,
        electricity_kgce=0.0,
        total_kgce=0.0,
        emissions_kg=0.0,
        electricity_emissions_kg=0.0,
        pue=None,
        electrification_rate=None,
        carbon_intensity_kg_per_kwh=None,
        green_power_share=None,
        completeness=1.0,
    )


async def test_restatements_rewrite_compressed_chunks(
    timescale_store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    """The accountant restates weeks-old windows, which by then sit in compressed chunks: the KPI
    upsert (ON CONFLICT on the (site_id, period, window_start) key) and the ledger's DELETE + COPY must
    work there, not fail or leave duplicates behind."""
    await timescale_store.sync_registry(
        Registry.from_text(
            "sites: [{id: dc-1, name: DC, kind: data_centre, "
            "meters: [{id: it, carrier: electricity, role: it_load}]}]"
        )
    )
    minute = 60_000
    await timescale_store.write(
        ProcessedBatch(
            intervals=[
                MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0 + i * minute, amount=1.0)
                for i in range(4)
            ],
            kpi_windows=[
                _window("1m", T0, T0 + minute, 1.0),
                _window("1m", T0 + minute, T0 + 2 * minute, 1.0),
                _window("1h", T0, T0 + HOUR, 4.0),
            ],
        )
    )
    segmentby = await raw.fetch(
        "SELECT attname FROM timescaledb_information.compression_settings "
        "WHERE hypertable_name = 'kpi_windows' AND segmentby_column_index IS NOT NULL "
        "ORDER BY segmentby_column_index"
    )
    assert [r["attname"] for r in segmentby] == ["site_id", "period"]
    compressed = await raw.fetchval(
        "SELECT count(compress_chunk(c)) FROM (SELECT show_chunks('kpi_windows') AS c UNION ALL "
        "SELECT show_chunks('meter_intervals')) chunks"
    )
    assert compressed == 2

    async with timescale_store.transaction("restating") as conn:
        # 1m@T0 unchanged, 1m@T0+1min new value, 1h@T0 new value, 1m@T0+2min new window.
        restated = await restate.save_windows(
            conn,
            [
                _window("1m", T0, T0 + minute, 1.0),
                _window("1m", T0 + minute, T0 + 2 * minute, 3.0),
                _window("1h", T0, T0 + HOUR, 6.0),
                _window("1m", T0 + 2 * minute, T0 + 3 * minute, 2.0),
            ],
            "late_data",
            "test",
        )
        assert restated == 2
        # The meter's minutes 1..2 become one 3 kWh minute (minute 2 is dropped).
        await restate.replace_intervals(
            conn, "dc-1", "it", T0 + minute, T0 + 3 * minute, {T0 + minute: 3.0}, set()
        )

    async with timescale_store.transaction("reading") as conn:
        minutes = await restate.load_windows(conn, "dc-1", "1m", T0, T0 + HOUR)
        hours = await restate.load_windows(conn, "dc-1", "1h", T0, T0 + HOUR)
    assert [(w.start_ms, w.electricity_kwh, w.revision) for w in minutes] == [
        (T0, 1.0, 0),
        (T0 + minute, 3.0, 1),
        (T0 + 2 * minute, 2.0, 0),
    ]
    assert [(w.electricity_kwh, w.revision) for w in hours] == [(6.0, 1)]
    [earlier] = await timescale_store.kpi_revisions("dc-1", "1h", T0)
    assert (earlier.revision, earlier.previous.electricity_kwh) == (1, 4.0)
    assert await timescale_store.load_intervals(T0) == [
        MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0, amount=1.0),
        MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0 + minute, amount=3.0),
        MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0 + 3 * minute, amount=1.0),
    ]
