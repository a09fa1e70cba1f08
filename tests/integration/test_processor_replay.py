"""A crash between a step's database commit and its spool commit: the restarted processor reads the
step again from the spool. Nothing may be counted twice, and the replay must not flood the
restatement queue (one request per meter, not one per reading). Real spool, real PostgreSQL; the crash
is reproduced exactly by restoring a copy of the spool directory taken before the commit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from peakwatch.bus import SpoolBus
from peakwatch.config import Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.store import Store
from processor.service import Processor
from tests.unit.fakes import make_registry

pytestmark = pytest.mark.integration

W0 = 1_699_999_980_000
SETTINGS = Settings(window_ms=60_000, allowed_lateness_ms=10_000, idle_close_ms=5_000)
N = 300


async def intervals(store: Store) -> dict[tuple[str, int], float]:
    rows = await store.load_intervals(0)
    return {(r.meter_id, r.window_start_ms): r.amount for r in rows}


async def test_a_step_replayed_after_a_crash_counts_nothing_twice(store: Store, tmp_path: Path) -> None:
    registry = make_registry()
    await store.sync_registry(registry)
    spool = tmp_path / "spool"
    bus = SpoolBus(spool)
    for meter in ("facility", "it"):
        await bus.publish(
            ReadingBatch(
                "dc",
                [
                    Reading(site_id="dc", meter_id=meter, ts_ms=W0 + i * 1000, energy_kwh=float(i))
                    for i in range(N)
                ],
            )
        )
    await bus.close()
    shutil.copytree(spool, tmp_path / "before-commit")

    clock = W0 + N * 1000
    first = SpoolBus(spool)
    processor = Processor(first, store, registry, SETTINGS, clock_ms=lambda: clock)
    await processor.start()
    await processor.run_once(timeout_s=1)  # written and committed
    await first.close()
    stored = await intervals(store)
    readings = await store.count_readings("dc")
    assert readings == 2 * N
    assert sum(stored.values()) == pytest.approx(2 * (N - 1))

    shutil.rmtree(spool)  # the crash: the database holds the step, the spool never saw the commit
    shutil.copytree(tmp_path / "before-commit", spool)
    replay = SpoolBus(spool)
    assert replay.depth_items == 2
    restarted = Processor(replay, store, registry, SETTINGS, clock_ms=lambda: clock)
    await restarted.start()
    out = await restarted.run_once(timeout_s=1)
    await replay.close()

    assert out is not None
    assert len(out.restatements) <= 2  # one per meter at most, not one per replayed reading
    assert await store.count_readings("dc") == readings
    assert await intervals(store) == pytest.approx(stored)
