"""Issue 15, finding 1: four valid messages to one meter within one minute (``energy_kwh`` 1e308,
1.79e308, 1.0, 1.79e308) once overflowed the interval split, stored ±Infinity amounts and null KPI
components, made the site's KPI routes answer 500 and every processor restart exit in
``_restore -> latest_kpis``. Here through the real processor and a real PostgreSQL store, then the API;
and a database already poisoned that way must be readable."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from peakwatch.bus import MemoryBus
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.domain.reasons import Reason
from peakwatch.store import Store
from processor.service import Processor
from tests.integration.test_api import make_client
from tests.integration.test_processor import Clock
from tests.support import bearer

pytestmark = pytest.mark.integration

MIN = 60_000
W0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a window boundary
SETTINGS = Settings(window_ms=MIN, allowed_lateness_ms=10_000, idle_close_ms=5_000)
POISON = (1e308, 1.79e308, 1.0, 1.79e308)


def registry(bad: str, good: str) -> Registry:
    meters = "meters: [{id: m, carrier: electricity, role: grid_import, unit: kWh}]"
    return Registry.from_text(
        f"""
sites:
  - {{id: {bad}, name: Poisoned park, kind: park, {meters}}}
  - {{id: {good}, name: Healthy park, kind: park, {meters}}}
"""
    )


def reading(site: str, ts_ms: int, kwh: float) -> ReadingBatch:
    return ReadingBatch(site, [Reading(site_id=site, meter_id="m", ts_ms=ts_ms, energy_kwh=kwh)])


async def run(bad: str, good: str, store: Store, reg: Registry) -> Processor:
    """Both sites for 5 minutes (1 kWh per 10 s). The poisoned site's meter first gets the four messages
    within 45 s, across a window boundary (1e308 -> 1.79e308 over [50 s, 70 s) is what overflowed the
    split), then, from 100 s on, a healthy register from 5 kWh."""
    bus, clock = MemoryBus(), Clock(W0)
    proc = Processor(bus, store, reg, SETTINGS, clock_ms=clock, poll_timeout_s=0.0)
    timeline = [(W0 + t, bad, kwh) for t, kwh in zip((50_000, 70_000, 80_000, 95_000), POISON, strict=True)]
    timeline += [
        (ts, bad, 5.0 + (ts - W0 - 100_000) / 10_000) for ts in range(W0 + 100_000, W0 + 5 * MIN + 1, 10_000)
    ]
    timeline += [
        (ts, good, 100.0 + (ts - W0) / 10_000) for ts in range(W0 + 10_000, W0 + 5 * MIN + 1, 10_000)
    ]
    for step in range(W0 + 5_000, W0 + 5 * MIN + 1, 5_000):  # each reading in the step of its time
        for ts, site, kwh in sorted(timeline):
            if step - 5_000 < ts <= step:
                await bus.publish(reading(site, ts, kwh))
        clock.ms = step + 200
        await proc.run_once(timeout_s=0)
    clock.ms += 60_000
    await proc.flush()
    return proc


async def assert_api_answers(store: Store, reg: Registry, site: str) -> list[dict[str, object]]:
    async with make_client(store, reg, await bearer(store)) as client:
        span = {"from": W0, "to": W0 + 10 * MIN}
        series = await client.get(f"/api/v1/sites/{site}/kpis", params=span)
        assert series.status_code == 200, series.text
        latest = await client.get(f"/api/v1/sites/{site}/kpis/latest", params={"include_open": "false"})
        assert latest.status_code == 200, latest.text
        csv = await client.get(f"/api/v1/sites/{site}/kpis.csv", params=span)
        assert csv.status_code == 200, csv.text
        windows: list[dict[str, object]] = series.json()
        return windows


async def test_four_huge_readings_neither_poison_the_site_nor_stop_the_processor(store: Store) -> None:
    bad, good = f"poison-{uuid.uuid4().hex[:8]}", f"healthy-{uuid.uuid4().hex[:8]}"
    reg = registry(bad, good)
    await store.sync_registry(reg)
    await run(bad, good, store, reg)

    windows = await assert_api_answers(store, reg, bad)
    # 1.0 at 80 s is the baseline; the register then reads 5, 6, ... every 10 s from 100 s: 4 kWh over
    # [80 s, 100 s), then 1 kWh per 10 s: minute 1 holds 4 + 1 + 1 = 6 kWh, the next minutes 6 kWh each
    closed = [w for w in windows if w["status"] == "closed"]
    assert [w["window_start_ms"] for w in closed][:1] == [W0 + MIN]
    assert [w["electricity_kwh"] for w in closed][:3] == pytest.approx([6.0, 6.0, 6.0])
    assert all("not_computable" not in w["flags"] for w in closed)  # type: ignore[operator]
    healthy = await assert_api_answers(store, reg, good)
    assert [w["electricity_kwh"] for w in healthy if w["status"] == "closed"][1:4] == pytest.approx([6.0] * 3)

    # the three values beyond 1e15 kWh are dead letters with their reason; 1.0 is a reading
    letters = await store.list_dead_letters(site_ids=[bad])
    assert sorted(float(letter.detail.split()[1]) for letter in letters) == [1e308, 1.79e308, 1.79e308]
    assert {letter.reason for letter in letters} == {Reason.OUT_OF_RANGE.value}

    # a restart restores from what is stored
    again = Processor(MemoryBus(), store, reg, SETTINGS, clock_ms=Clock(W0 + 7 * MIN), poll_timeout_s=0.0)
    await again.start()  # restores baselines, open windows and the latest KPIs without raising


async def test_a_database_poisoned_before_the_bounds_is_read_finite(
    store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    bad, good = f"poison-{uuid.uuid4().hex[:8]}", f"healthy-{uuid.uuid4().hex[:8]}"
    reg = registry(bad, good)
    await store.sync_registry(reg)
    await run(bad, good, store, reg)
    # what the old code wrote: infinite ledger amounts, null components, an infinite baseline
    await raw.execute("UPDATE meter_intervals SET amount = 'Infinity' WHERE site_id = $1", bad)
    await raw.execute(
        "UPDATE kpi_windows SET components = jsonb_set(components, '{electricity_kwh}', 'null'), "
        "electricity_kwh = 'NaN' WHERE site_id = $1",
        bad,
    )
    await raw.execute("UPDATE meter_state SET last_value = 1.79e308 WHERE site_id = $1", bad)

    windows = await assert_api_answers(store, reg, bad)
    closed = [w for w in windows if w["status"] == "closed"]
    assert closed
    assert all("not_computable" in w["flags"] for w in closed)  # type: ignore[operator]
    assert all(w["electricity_kwh"] == 0.0 for w in closed)

    again = Processor(MemoryBus(), store, reg, SETTINGS, clock_ms=Clock(W0 + 7 * MIN), poll_timeout_s=0.0)
    await again.start()  # restores baselines, open windows and the latest KPIs without raising
    slot = again.state.tracker.slot(bad, "m")
    assert slot is not None
    assert slot.last_value is None  # the baseline beyond the bound is dropped: the next reading sets one
