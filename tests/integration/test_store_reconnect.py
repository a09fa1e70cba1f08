"""The store after its connections were cut (issue 15, item 2): whatever state asyncpg was in, the
failure is a retryable StoreError, the pool replaces its connections, and the processor (writes, its
accountant, its rule reloads) carries on through repeated outages with nothing lost or doubled. Real
PostgreSQL behind a TCP proxy that cuts every connection and refuses new ones for a while."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import asyncpg
import pytest

from peakwatch.bus import SpoolBus
from peakwatch.config import Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.errors import StoreError
from peakwatch.store import Store
from processor.service import Processor
from tests.fixtures.tcp_proxy import DatabaseProxy, proxy_in_front_of
from tests.integration.test_api import make_client
from tests.support import bearer, eventually
from tests.unit.fakes import make_registry

pytestmark = pytest.mark.integration

W0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000


async def test_a_transaction_cut_mid_way_is_retryable_and_the_store_recovers(database_url: str) -> None:
    """The cut ends the statement; the transaction's rollback then meets a closed connection and
    asyncpg raises "Transaction.__aexit__(): the underlying connection is closed" in its place (the
    error a drill saw stop ``peakwatch up``)."""
    async with proxy_in_front_of(database_url) as (proxy, url):
        store = await Store.connect(url, min_size=2, max_size=4)
        try:
            with pytest.raises(StoreError) as caught:
                await _cut_during_a_transaction(store, proxy)
            assert caught.value.retryable, caught.value
            assert await store.count_readings() == 0  # the pool gives working connections again
        finally:
            await store.close()


async def _cut_during_a_transaction(store: Store, proxy: DatabaseProxy) -> None:
    async with store.transaction("restating a window") as conn:
        asyncio.get_running_loop().call_later(0.3, proxy.cut)
        await conn.fetchval("SELECT pg_sleep(5)")


async def test_while_the_database_refuses_every_call_is_retryable(database_url: str) -> None:
    async with proxy_in_front_of(database_url) as (proxy, url):
        store = await Store.connect(url, min_size=2, max_size=4)
        try:
            proxy.refusing.set()
            proxy.cut()
            for _ in range(3):
                with pytest.raises(StoreError) as caught:
                    await store.ping()
                assert caught.value.retryable, caught.value
            proxy.refusing.clear()
            await store.ping()
        finally:
            await store.close()


async def test_the_api_answers_503_while_away_and_200_when_back(database_url: str, store: Store) -> None:
    registry = make_registry()
    await store.sync_registry(registry)
    token = await bearer(store)
    async with proxy_in_front_of(database_url) as (proxy, url):
        api_store = await Store.connect(url, min_size=2, max_size=4)
        try:
            async with make_client(api_store, registry, token) as api:
                assert (await api.get("/api/v1/sites")).status_code == 200
                proxy.refusing.set()
                proxy.cut()
                away = [(await api.get("/api/v1/sites")).status_code for _ in range(3)]
                proxy.refusing.clear()
                back = await api.get("/api/v1/sites")
        finally:
            await api_store.close()
    assert away == [503, 503, 503]
    assert back.status_code == 200
    assert {s["id"] for s in back.json()} == {"dc", "park"}


async def _outages(proxy: DatabaseProxy, count: int, rng: random.Random) -> None:
    """``count`` outages: every connection cut, new ones refused for 0.05–1.5 s, then up for a while."""
    for _ in range(count):
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        proxy.refusing.set()
        proxy.cut()
        await asyncio.sleep(rng.uniform(0.05, 1.5))
        proxy.refusing.clear()


async def test_the_processor_lives_through_ten_outages(database_url: str, tmp_path: Path) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    registry = make_registry()
    bus = SpoolBus(tmp_path / "spool")
    readings = 400
    async with proxy_in_front_of(database_url) as (proxy, url):
        store = await Store.connect(url)
        processor = Processor(
            bus,
            store,
            registry,
            Settings(window_ms=60_000, allowed_lateness_ms=10_000, idle_close_ms=5_000),
            poll_timeout_s=0.05,
            accounting=store,
            stored_rules=store.rules,
            retry_initial_s=0.05,
            retry_max_s=0.5,
            accountant_interval_s=0.2,
            rules_interval_s=0.2,
        )
        try:
            await store.sync_registry(registry)
            run = asyncio.create_task(processor.run())
            chaos = asyncio.create_task(_outages(proxy, 10, rng))
            for i in range(readings):  # 10 s of event time per reading, 1 kWh each
                ts = W0 + i * 10_000
                await bus.publish(
                    ReadingBatch("dc", [Reading(site_id="dc", meter_id="it", ts_ms=ts, energy_kwh=float(i))])
                )
                await asyncio.sleep(0.01)
                assert not run.done(), f"the processor stopped (seed {seed}): {run}"
            await chaos
            assert not run.done(), f"the processor stopped (seed {seed}): {run}"

            async def all_stored() -> bool:
                return await store.count_readings("dc") == readings

            await eventually(all_stored, f"every reading stored (seed {seed})", timeout_s=60)
            assert not run.done(), f"the processor stopped (seed {seed}): {run}"
            processor.stop()
            await run
        finally:
            processor.stop()
            await bus.close()
            await store.close()
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM readings")
        energy = await conn.fetchval(
            "SELECT sum(amount) FROM meter_intervals WHERE site_id = 'dc' AND meter_id = 'it'"
        )
    finally:
        await conn.close()
    assert stored == readings
    assert energy == pytest.approx(readings - 1.0)  # register 0 .. 399 kWh, each kWh counted once
