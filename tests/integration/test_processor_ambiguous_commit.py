"""A step whose COMMIT reached PostgreSQL but whose reply was lost is retried by the processor (it
cannot tell the two apart); the retry must not apply the step again, or the interval amounts, which
are added, would count its energy twice. Real PostgreSQL behind a small TCP proxy that forwards the
client's COMMIT and then cuts the connection before the reply comes back."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from peakwatch.bus import SpoolBus
from peakwatch.config import Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.store import Store
from processor.service import Processor
from tests.fixtures.tcp_proxy import proxy_in_front_of
from tests.unit.fakes import make_registry

pytestmark = pytest.mark.integration

W0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000


async def test_a_step_retried_after_a_lost_commit_reply_is_applied_once(
    database_url: str, tmp_path: Path
) -> None:
    registry = make_registry()
    async with proxy_in_front_of(database_url) as (cutter, proxied_url):
        store = await Store.connect(proxied_url)
        try:
            await store.sync_registry(registry)
            bus = SpoolBus(tmp_path / "spool")
            await bus.publish(
                ReadingBatch(
                    "dc",
                    [
                        Reading(site_id="dc", meter_id="it", ts_ms=W0 + 1_000, energy_kwh=100.0),
                        Reading(site_id="dc", meter_id="it", ts_ms=W0 + 11_000, energy_kwh=110.0),
                    ],
                )
            )
            processor = Processor(
                bus,
                store,
                registry,
                Settings(window_ms=60_000, allowed_lateness_ms=10_000, idle_close_ms=5_000),
                clock_ms=lambda: W0 + 12_000,
                retry_initial_s=0.05,
            )
            await processor.start()
            cutter.armed.set()
            await processor.run_once(timeout_s=1)
            await bus.close()
        finally:
            await store.close()
    assert cutter.cuts == 1  # the write's COMMIT was cut, and the processor retried it
    conn = await asyncpg.connect(database_url)
    try:
        energy = await conn.fetchval(
            "SELECT sum(amount) FROM meter_intervals WHERE site_id = 'dc' AND meter_id = 'it'"
        )
        readings = await conn.fetchval("SELECT count(*) FROM readings")
    finally:
        await conn.close()
    assert energy == pytest.approx(10.0)  # 110 - 100 kWh, once
    assert readings == 2
