"""Site ownership between processors sharing a Kafka bus (``site_owners``): claims, the fence a write
carries, a claim waiting for the old owner's write in flight, and a restatement for every site split
into one per site."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from peakwatch.config import Registry
from peakwatch.domain.models import MeterInterval, ProcessedBatch, RestatementReason
from peakwatch.errors import FencedError
from peakwatch.store import Store
from peakwatch.store.writes import check_fence
from tests.support import eventually

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000


def _interval(site: str, amount: float) -> MeterInterval:
    return MeterInterval(site_id=site, meter_id="m", window_start_ms=T0, amount=amount)


async def test_each_claim_raises_the_epoch_and_a_stale_fence_writes_nothing(store: Store) -> None:
    assert await store.claim_sites(["b", "a"], "one") == {"a": 1, "b": 1}
    await store.write(ProcessedBatch(intervals=[_interval("a", 1.0)], fence={"a": 1, "b": 1}))
    assert await store.claim_sites(["a"], "two") == {"a": 2}
    with pytest.raises(FencedError, match="claimed by another processor"):
        await store.write(ProcessedBatch(intervals=[_interval("a", 5.0)], fence={"a": 1, "b": 1}))
    await store.write(ProcessedBatch(intervals=[_interval("a", 2.0)], fence={"a": 2}))
    assert [iv.amount for iv in await store.load_intervals(T0)] == [3.0]  # 1 + 2; the fenced 5 is not there


async def test_a_fence_naming_a_site_never_claimed_is_refused(store: Store) -> None:
    with pytest.raises(FencedError):
        await store.write(ProcessedBatch(intervals=[_interval("z", 1.0)], fence={"z": 1}))
    assert await store.load_intervals(T0) == []


async def test_a_claim_waits_for_the_write_in_flight_of_the_old_owner(
    store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    await store.claim_sites(["a"], "old")
    write = raw.transaction()
    await write.start()
    await check_fence(raw, {"a": 1})  # the old owner's write has begun: it holds the row FOR SHARE
    claim = asyncio.create_task(store.claim_sites(["a"], "new"))

    async def waiting() -> bool:
        async with store.transaction("looking at locks") as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))

    await eventually(waiting, "the claim waits for the write's lock")
    assert not claim.done()
    await raw.execute(
        "INSERT INTO meter_intervals (site_id, meter_id, window_start, amount) "
        "VALUES ('a', 'm', to_timestamp($1::bigint / 1000.0), 7)",
        T0,
    )
    await write.commit()
    assert await claim == {"a": 2}
    assert [iv.amount for iv in await store.load_intervals(T0)] == [7.0]  # what the new owner restores


async def test_a_restatement_for_every_site_is_split_once(store: Store) -> None:
    await store.sync_registry(Registry.bundled_demo())
    sites = await store.list_sites()
    assert len(sites) == 2
    request = await store.inputs.request_restatement(
        None, None, T0, T0 + 60_000, RestatementReason.FACTOR_REVISION, "grid factor 2024"
    )
    assert await store.inputs.split_restatement(request) == len(sites)
    assert await store.inputs.split_restatement(request) == 0  # another processor split it already
    pending = await store.inputs.pending_restatements()
    assert sorted(p.site_id or "" for p in pending) == sorted(s.id for s in sites)
    assert {(p.reason, p.detail, p.from_ms, p.to_ms) for p in pending} == {
        ("factor_revision", "grid factor 2024", T0, T0 + 60_000)
    }
