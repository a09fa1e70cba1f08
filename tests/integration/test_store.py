"""The store against a real PostgreSQL: migrations, registry mirror, the write path, every query.

Each test gets its own freshly migrated database (tests/fixtures/postgres.py), once with plain
tables and once on TimescaleDB (hypertables; skipped when the extension is not available). Rows are
checked through the store's own queries and, where it has none (events), with plain SQL.
"""

from __future__ import annotations

import asyncio
import json
import socket

import asyncpg
import pytest

from peakwatch.config import Registry
from peakwatch.domain.components import decode_components
from peakwatch.domain.models import (
    AlertChange,
    Carrier,
    DeadLetter,
    KpiWindow,
    Meter,
    MeterEvent,
    MeterFlag,
    MeterInterval,
    MeterState,
    ProcessedBatch,
    Reading,
    Register,
    Role,
    Site,
    SiteKind,
)
from peakwatch.errors import StoreError
from peakwatch.store import Store, TimescalePolicy, restate
from peakwatch.store.migrate import bundled_migrations

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000

DC = Site(id="dc-1", name="Data centre 1", kind=SiteKind.DATA_CENTRE)
PARK = Site(id="park-1", name="Park 1", kind=SiteKind.PARK, grid_factor="grid.cn.hunan.2023")
FACILITY = Meter(
    id="facility",
    site_id="dc-1",
    carrier=Carrier.ELECTRICITY,
    role=Role.FACILITY_TOTAL,
    register_max=999_999.99,
)
IT = Meter(id="it", site_id="dc-1", carrier=Carrier.ELECTRICITY, role=Role.IT_LOAD)
GAS = Meter(
    id="gas",
    site_id="park-1",
    carrier=Carrier.NATURAL_GAS,
    role=Role.BOILER,
    unit="m3",
    register=Register.INTERVAL,
)


def registry(*meters: Meter, sites: tuple[Site, ...] = (DC, PARK)) -> Registry:
    return Registry(sites, meters)


def reading(meter: str, ts_ms: int, energy_kwh: float, site: str = "dc-1") -> Reading:
    return Reading(site_id=site, meter_id=meter, ts_ms=ts_ms, energy_kwh=energy_kwh, power_kw=energy_kwh / 10)


def kpi(start_ms: int, electricity_kwh: float = 100.0, site: str = "dc-1", **extra: object) -> KpiWindow:
    fields: dict[str, object] = {
        "site_id": site,
        "start_ms": start_ms,
        "end_ms": start_ms + MIN,
        "electricity_kwh": electricity_kwh,
        "facility_kwh": electricity_kwh,
        "it_kwh": electricity_kwh / 1.25,
        "renewable_generation_kwh": 0.0,
        "renewable_consumed_kwh": 0.0,
        "grid_import_kwh": electricity_kwh,
        "grid_export_kwh": 0.0,
        "electricity_kgce": electricity_kwh * 0.1229,
        "total_kgce": electricity_kwh * 0.1229,
        "emissions_kg": electricity_kwh * 0.4976,
        "electricity_emissions_kg": electricity_kwh * 0.4976,
        "pue": 1.25,
        "electrification_rate": 1.0,
        "carbon_intensity_kg_per_kwh": 0.4976,
        "green_power_share": None,
        "completeness": 1.0,
        "flags": ("late",),
        "interim": True,
    }
    fields.update(extra)
    return KpiWindow(**fields)  # type: ignore[arg-type]


def alert(
    state: str, at_ms: int, started_ms: int = T0, value: float = 1.7, fingerprint: str = "pue_high/dc-1"
) -> AlertChange:
    return AlertChange(
        fingerprint=fingerprint,
        rule="pue_high",
        site_id="dc-1",
        state=state,
        severity="critical",
        summary=f"PUE {value}",
        value=value,
        started_ms=started_ms,
        at_ms=at_ms,
    )


def dead(received_ms: int, reason: str, payload: bytes = b"{oops") -> DeadLetter:
    return DeadLetter(
        received_ms=received_ms,
        source="telemetry/dc-1/it",
        reason=reason,
        detail=f"{reason} here",
        payload=payload,
        site_id="dc-1",
        meter_id=None,
    )


@pytest.fixture(params=["plain", pytest.param("timescale", marks=pytest.mark.timescale)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every test here runs on plain PostgreSQL and, when available, on TimescaleDB (``store``
    follows this fixture)."""
    return str(request.getfixturevalue(f"{request.param}_database_url"))


# ------------------------------------------------------------------------------------------ migrations


async def test_migrate_applies_everything_once(blank_database_url: str) -> None:
    store = await Store.connect(blank_database_url)
    try:
        first = await store.migrate()
        second = await store.migrate()
    finally:
        await store.close()
    names = [m.name for m in bundled_migrations()]
    assert first[: len(names)] == names
    assert second == []


async def test_concurrent_migrations_apply_each_file_once(blank_database_url: str) -> None:
    stores = [await Store.connect(blank_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        for s in stores:
            await s.close()
    names = [m.name for m in bundled_migrations()]
    applied = [name for result in results for name in result if name in names]
    assert sorted(applied) == sorted(names)


async def test_per_meter_tables_keep_room_for_in_place_updates(blank_database_url: str) -> None:
    """``meter_state`` and ``meter_intervals`` are updated by every transaction holding a reading of the
    meter; with free room on their pages (migration 015) PostgreSQL updates them in place (HOT)."""
    store = await Store.connect(blank_database_url)
    try:
        await store.migrate()
    finally:
        await store.close()
    conn = await asyncpg.connect(blank_database_url)
    try:
        rows = await conn.fetch(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('meter_state', 'meter_intervals')"
        )
    finally:
        await conn.close()
    assert {r["relname"]: r["reloptions"] for r in rows} == {
        "meter_state": ["fillfactor=50"],
        "meter_intervals": ["fillfactor=70"],
    }


async def test_migrated_template_reports_nothing_to_do(store: Store) -> None:
    assert await store.migrate(policy=TimescalePolicy(enabled=store.timescale)) == []
    assert await store.count_readings() == 0


# ------------------------------------------------------------------------------------------ registry


async def test_sync_registry_mirrors_sites_and_meters(store: Store) -> None:
    await store.sync_registry(registry(FACILITY, IT, GAS))
    assert await store.list_sites() == [DC, PARK]
    assert await store.get_site("park-1") == PARK
    assert await store.get_site("nope") is None
    statuses = await store.meter_statuses("dc-1")
    assert [s.meter for s in statuses] == [FACILITY, IT]
    assert [(s.last_ts_ms, s.last_seen_ms, s.last_value) for s in statuses] == [(None, None, None)] * 2
    assert [s.meter for s in await store.meter_statuses("park-1")] == [GAS]


async def test_sync_registry_updates_and_retires_but_keeps_readings(store: Store) -> None:
    await store.sync_registry(registry(FACILITY, IT, GAS))
    await store.write(ProcessedBatch(readings=[reading("it", T0, 5.0)]))
    renamed = Site(id="dc-1", name="Renamed", kind=SiteKind.DATA_CENTRE, timezone="UTC")
    bigger = Meter(
        id="facility",
        site_id="dc-1",
        carrier=Carrier.ELECTRICITY,
        role=Role.FACILITY_TOTAL,
        unit="MWh",
        register_max=None,
    )
    await store.sync_registry(registry(bigger, sites=(renamed,)))
    assert await store.list_sites() == [renamed]
    assert [s.meter for s in await store.meter_statuses("dc-1")] == [bigger]
    assert await store.meter_statuses("park-1") == []
    assert await store.count_readings("dc-1") == 1
    # Retired, not deleted: brought back, the meter keeps its key and its history.
    await store.sync_registry(registry(FACILITY, IT, GAS))
    assert {s.id for s in await store.list_sites()} == {"dc-1", "park-1"}
    await store.write(ProcessedBatch(readings=[reading("it", T0 + MIN, 6.0)]))
    assert await store.count_readings("dc-1") == 2


# ------------------------------------------------------------------------------------------ write path


async def test_write_round_trip_every_table(store: Store, raw: asyncpg.Connection[asyncpg.Record]) -> None:
    await store.sync_registry(registry(FACILITY, IT, GAS))
    batch = ProcessedBatch(
        readings=[reading("it", T0 + i * 10_000, 100.0 + i) for i in range(6)]
        + [Reading(site_id="park-1", meter_id="gas", ts_ms=T0, volume_m3=1.5)],
        meter_states=[
            MeterState(
                site_id="dc-1",
                meter_id="it",
                last_ts_ms=T0 + 50_000,
                last_value=105.0,
                last_seen_ms=T0 + 50_123,
            )
        ],
        intervals=[MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0, amount=5.0)],
        events=[
            MeterEvent(
                site_id="dc-1",
                meter_id="it",
                ts_ms=T0 + 20_000,
                kind=MeterFlag.RESET,
                detail="register went from 101 to 0",
                previous=101.0,
                value=0.0,
            )
        ],
        kpi_windows=[kpi(T0)],
        alerts=[alert("pending", T0 + MIN)],
        dead_letters=[dead(T0 + 1, "malformed_json")],
    )
    await store.write(batch)

    assert await store.count_readings() == 7
    assert await store.count_readings("park-1") == 1
    row = await raw.fetchrow("SELECT * FROM readings_named WHERE site_id = 'park-1'")
    assert row is not None
    assert (row["volume_m3"], row["energy_kwh"], row["ts"].timestamp() * 1000) == (1.5, None, T0)
    assert await store.load_meter_states() == batch.meter_states
    assert await store.load_intervals(T0) == batch.intervals
    assert await store.load_intervals(T0 + 1) == []
    event = await raw.fetchrow("SELECT ts, kind, detail, previous, value FROM meter_events")
    assert event is not None
    assert (event["kind"], event["detail"], event["previous"], event["value"]) == (
        "reset",
        "register went from 101 to 0",
        101.0,
        0.0,
    )
    assert event["ts"].timestamp() * 1000 == T0 + 20_000
    assert await store.latest_kpis("dc-1") == kpi(T0)
    (open_alert,) = await store.load_open_alerts()
    assert (open_alert.state, open_alert.started_ms, open_alert.updated_ms) == ("pending", T0, T0 + MIN)
    (letter,) = await store.list_dead_letters()
    assert (letter.received_ms, letter.reason, letter.payload, letter.site_id, letter.meter_id) == (
        T0 + 1,
        "malformed_json",
        b"{oops",
        "dc-1",
        None,
    )


async def test_empty_batch_is_a_no_op(store: Store) -> None:
    await store.write(ProcessedBatch())
    assert await store.count_readings() == 0


async def test_replayed_readings_are_ignored(store: Store, raw: asyncpg.Connection[asyncpg.Record]) -> None:
    await store.sync_registry(registry(FACILITY, IT, GAS))
    first = [reading("it", T0 + i * 1000, float(i)) for i in range(100)]
    await store.write(ProcessedBatch(readings=first))
    # A replay overlapping what is stored, with different values, plus new readings and an in-batch duplicate.
    replay = [reading("it", T0 + i * 1000, 999.0) for i in range(50, 150)]
    replay.append(reading("it", T0 + 149_000, 7.0))
    await store.write(
        ProcessedBatch(
            readings=replay,
            intervals=[MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0, amount=1.0)],
        )
    )
    assert await store.count_readings() == 150
    kept = await raw.fetchval(
        "SELECT energy_kwh FROM readings WHERE ts = to_timestamp($1::float8 / 1000)", T0 + 60_000
    )
    assert kept == 60.0  # the first write wins
    # The rest of the batch went in with the fallback path, in the same transaction.
    assert await store.load_intervals(T0) == [
        MeterInterval(site_id="dc-1", meter_id="it", window_start_ms=T0, amount=1.0)
    ]
    # The staging table was emptied at commit: a second replay does not see stale rows.
    await store.write(ProcessedBatch(readings=replay[:10]))
    assert await store.count_readings() == 150


async def test_large_batch_and_its_replay(store: Store) -> None:
    meters = [
        Meter(id=f"m{i}", site_id="dc-1", carrier=Carrier.ELECTRICITY, role=Role.IT_LOAD) for i in range(500)
    ]
    await store.sync_registry(registry(*meters))
    readings = [reading(f"m{i % 500}", T0 + (i // 500) * 1000, float(i)) for i in range(50_000)]
    await store.write(ProcessedBatch(readings=readings))
    await store.write(ProcessedBatch(readings=readings))
    assert await store.count_readings() == 50_000


async def test_intervals_add_up_within_and_across_writes(store: Store) -> None:
    def iv(amount: float, start: int = T0, meter: str = "it") -> MeterInterval:
        return MeterInterval(site_id="dc-1", meter_id=meter, window_start_ms=start, amount=amount)

    await store.write(ProcessedBatch(intervals=[iv(1.5), iv(2.0), iv(4.0, T0 + MIN)]))
    await store.write(ProcessedBatch(intervals=[iv(0.25), iv(3.0, meter="facility")]))
    assert await store.load_intervals(T0) == [iv(3.0, meter="facility"), iv(3.75), iv(4.0, T0 + MIN)]


async def test_meter_state_keeps_the_newest_reading(store: Store) -> None:
    def st(last_ts: int, value: float, seen: int) -> MeterState:
        return MeterState(
            site_id="dc-1", meter_id="it", last_ts_ms=last_ts, last_value=value, last_seen_ms=seen
        )

    await store.write(ProcessedBatch(meter_states=[st(T0 + 10, 10.0, T0 + 100), st(T0 + 20, 20.0, T0 + 90)]))
    assert await store.load_meter_states() == [st(T0 + 20, 20.0, T0 + 100)]
    # An older reading arriving later moves last_seen on but not the register baseline.
    await store.write(ProcessedBatch(meter_states=[st(T0 + 5, 5.0, T0 + 500)]))
    assert await store.load_meter_states() == [st(T0 + 20, 20.0, T0 + 500)]
    await store.write(ProcessedBatch(meter_states=[st(T0 + 30, None, T0 + 400)]))  # type: ignore[arg-type]
    assert await store.load_meter_states() == [st(T0 + 30, None, T0 + 500)]  # type: ignore[arg-type]


async def test_kpi_window_upsert_replaces(store: Store) -> None:
    await store.write(ProcessedBatch(kpi_windows=[kpi(T0, 100.0)]))
    revised = kpi(T0, 120.0, pue=None, flags=(), interim=False, completeness=0.5)
    await store.write(ProcessedBatch(kpi_windows=[revised]))
    assert await store.kpi_series("dc-1", T0, T0 + MIN) == [revised]
    # Twice in one batch: the last one wins.
    await store.write(ProcessedBatch(kpi_windows=[kpi(T0, 1.0), kpi(T0, 2.0)]))
    assert await store.latest_kpis("dc-1") == kpi(T0, 2.0)


async def test_alert_lifecycle(store: Store) -> None:
    await store.write(ProcessedBatch(alerts=[alert("pending", T0 + MIN, value=1.6)]))
    await store.write(ProcessedBatch(alerts=[alert("pending", T0 + 2 * MIN, value=1.65)]))
    await store.write(ProcessedBatch(alerts=[alert("firing", T0 + 5 * MIN, value=1.7)]))
    (firing,) = await store.load_open_alerts()
    assert (firing.state, firing.value, firing.started_ms) == ("firing", 1.7, T0)
    assert (firing.fired_ms, firing.resolved_ms, firing.updated_ms) == (T0 + 5 * MIN, None, T0 + 5 * MIN)
    await store.write(ProcessedBatch(alerts=[alert("firing", T0 + 6 * MIN, value=1.8)]))
    await store.write(ProcessedBatch(alerts=[alert("resolved", T0 + 7 * MIN, value=1.3)]))
    assert await store.load_open_alerts() == []
    (resolved,) = await store.list_alerts()
    assert resolved.id == firing.id
    assert (resolved.state, resolved.fired_ms, resolved.resolved_ms, resolved.value) == (
        "resolved",
        T0 + 5 * MIN,
        T0 + 7 * MIN,
        1.3,
    )
    # The same rule breaching again opens a new alert; a resolve with nothing open changes nothing.
    await store.write(
        ProcessedBatch(
            alerts=[alert("resolved", T0 + 8 * MIN), alert("pending", T0 + 10 * MIN, started_ms=T0 + 9 * MIN)]
        )
    )
    newest, oldest = await store.list_alerts()
    assert oldest == resolved
    assert (newest.state, newest.started_ms, newest.fired_ms) == ("pending", T0 + 9 * MIN, None)
    # Pending that never fires is closed as inactive.
    await store.write(ProcessedBatch(alerts=[alert("inactive", T0 + 11 * MIN)]))
    newest, _ = await store.list_alerts()
    assert (newest.state, newest.resolved_ms) == ("inactive", T0 + 11 * MIN)


async def test_alert_changes_in_one_batch_apply_in_order(store: Store) -> None:
    await store.write(
        ProcessedBatch(
            alerts=[
                alert("pending", T0 + MIN),
                alert("firing", T0 + 2 * MIN),
                alert("resolved", T0 + 3 * MIN),
                alert("firing", T0 + 4 * MIN, started_ms=T0 + 4 * MIN),
            ]
        )
    )
    newest, oldest = await store.list_alerts()
    assert (oldest.state, oldest.fired_ms, oldest.resolved_ms) == ("resolved", T0 + 2 * MIN, T0 + 3 * MIN)
    assert (newest.state, newest.started_ms, newest.fired_ms) == ("firing", T0 + 4 * MIN, T0 + 4 * MIN)


async def test_failed_write_leaves_nothing_behind(store: Store) -> None:
    await store.sync_registry(registry(FACILITY, IT, GAS))
    bad = ProcessedBatch(readings=[reading("it", T0, 1.0)], alerts=[alert("exploded", T0)])
    with pytest.raises(StoreError) as info:
        await store.write(bad)
    assert info.value.retryable is False
    assert await store.count_readings() == 0
    await store.write(ProcessedBatch(readings=[reading("it", T0, 1.0)]))  # the pool is still usable
    assert await store.count_readings() == 1


# ------------------------------------------------------------------------------------------ queries


async def test_latest_kpis_and_series_bounds(store: Store) -> None:
    assert await store.latest_kpis("dc-1") is None
    windows = [kpi(T0 + i * MIN, 100.0 + i) for i in range(5)]
    await store.write(ProcessedBatch(kpi_windows=[*reversed(windows), kpi(T0, site="park-1")]))
    assert await store.latest_kpis("dc-1") == windows[-1]
    assert await store.kpi_series("dc-1", T0 + MIN, T0 + 3 * MIN) == windows[1:3]
    assert await store.kpi_series("dc-1", T0 + MIN + 1, T0 + 3 * MIN + 1) == windows[2:4]
    assert await store.kpi_series("dc-1", T0, T0 + 10 * MIN, limit=2) == windows[:2]
    assert await store.kpi_series("dc-1", T0 + 5 * MIN, T0 + 10 * MIN) == []
    assert await store.kpi_series("park-1", T0, T0 + MIN) == [kpi(T0, site="park-1")]


async def test_meter_statuses_include_meters_never_seen(store: Store) -> None:
    await store.sync_registry(registry(FACILITY, IT, GAS))
    await store.write(
        ProcessedBatch(
            meter_states=[
                MeterState(
                    site_id="dc-1", meter_id="it", last_ts_ms=T0, last_value=42.0, last_seen_ms=T0 + 7
                ),
                MeterState(
                    site_id="dc-1", meter_id="retired", last_ts_ms=T0, last_value=1.0, last_seen_ms=T0
                ),
            ]
        )
    )
    facility, it = await store.meter_statuses("dc-1")
    assert (facility.meter, facility.last_ts_ms, facility.last_seen_ms, facility.last_value) == (
        FACILITY,
        None,
        None,
        None,
    )
    assert (it.meter, it.last_ts_ms, it.last_seen_ms, it.last_value) == (IT, T0, T0 + 7, 42.0)


async def test_list_alerts_filters(store: Store) -> None:
    await store.write(
        ProcessedBatch(
            alerts=[
                alert("firing", T0 + MIN, fingerprint="a"),
                alert("pending", T0 + 2 * MIN, fingerprint="b"),
                AlertChange(
                    fingerprint="c",
                    rule="ci",
                    site_id="park-1",
                    state="pending",
                    severity="warning",
                    summary="",
                    value=None,
                    started_ms=T0,
                    at_ms=T0 + 3 * MIN,
                ),
            ]
        )
    )
    await store.write(ProcessedBatch(alerts=[alert("resolved", T0 + 4 * MIN, fingerprint="a")]))
    assert [a.fingerprint for a in await store.list_alerts()] == ["a", "c", "b"]
    assert [a.fingerprint for a in await store.list_alerts(site_id="dc-1")] == ["a", "b"]
    assert [a.fingerprint for a in await store.list_alerts(state="pending")] == ["c", "b"]
    assert [a.fingerprint for a in await store.list_alerts(site_id="dc-1", state="pending")] == ["b"]
    assert [a.fingerprint for a in await store.list_alerts(limit=1)] == ["a"]
    assert [a.fingerprint for a in await store.load_open_alerts()] == ["b", "c"]


async def test_list_dead_letters_newest_first_by_reason(store: Store) -> None:
    await store.write(
        ProcessedBatch(
            dead_letters=[
                dead(T0 + 1, "malformed_json"),
                dead(T0 + 3, "unknown_meter", b"\x00\xff"),
                dead(T0 + 2, "malformed_json"),
            ]
        )
    )
    assert [(d.received_ms, d.reason) for d in await store.list_dead_letters()] == [
        (T0 + 3, "unknown_meter"),
        (T0 + 2, "malformed_json"),
        (T0 + 1, "malformed_json"),
    ]
    newest_malformed = await store.list_dead_letters(reason="malformed_json", limit=1)
    assert [d.received_ms for d in newest_malformed] == [T0 + 2]
    (binary,) = await store.list_dead_letters(reason="unknown_meter")
    assert binary.payload == b"\x00\xff"


# ------------------------------------------------------------------------------------------ failures


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_server_is_retryable() -> None:
    with pytest.raises(StoreError) as info:
        await Store.connect(f"postgresql://postgres@127.0.0.1:{_closed_port()}/peakwatch")
    assert info.value.retryable is True


async def test_missing_database_is_not_retryable(database_url: str) -> None:
    with pytest.raises(StoreError) as info:
        await Store.connect(database_url + "_missing")
    assert info.value.retryable is False


async def test_closed_store_raises_store_error(database_url: str) -> None:
    store = await Store.connect(database_url)
    await store.ping()
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()


async def test_components_are_stored_and_kept_in_revisions_in_their_flat_form(
    store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    flat = {
        "it_kwh": 80.0,
        "water_m3": 0.5,
        "n_present": 2.0,
        "n_expected": 2.0,
        "output:count": 12.0,
        "zone:a:it_kwh": 80.0,
        "zone:a:total_kwh": 90.0,
        "genfuel:diesel:mass_t": 0.06,
        "fuel:natural_gas:volume_m3": 2.0,
    }
    window = kpi(T0, 100.0, components=decode_components(flat))
    await store.write(ProcessedBatch(kpi_windows=[window]))
    stored = await raw.fetchval("SELECT components::text FROM kpi_windows WHERE site_id = 'dc-1'")
    assert json.loads(stored) == flat
    assert await store.kpi_series("dc-1", T0, T0 + MIN) == [window]
    # a restatement keeps the previous window, components flat, and reads it back typed
    async with store.transaction("restating") as conn:
        assert await restate.save_windows(conn, [kpi(T0, 120.0)], "late_data", "") == 1
    previous = await raw.fetchval("SELECT previous -> 'components' FROM kpi_revisions")
    assert json.loads(previous) == flat
    [revision] = await store.kpi_revisions("dc-1", "1m", T0)
    assert revision.previous == window
