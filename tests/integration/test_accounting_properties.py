"""Properties of issue #3 through the processor, its accountant and a real PostgreSQL store (hypothesis):

* the stored KPIs do not depend on the order readings arrive in, nor on duplicated readings: whatever
  the arrival order, once late and out-of-order data have been restated, every minute and every
  quarter hour equals the in-order run;
* a quarter hour's energies are the exact sums of its minutes';
* PUE >= 1 whenever the IT meter is inside the facility meter.

Each example runs a whole processor over a fresh schema, so the example count is small; the domain-level
properties (``tests/unit/test_domain_lifecycle_properties.py``) run thousands.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peakwatch.bus import MemoryBus
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import KpiWindow, Reading, ReadingBatch
from peakwatch.store import Store
from processor.service import Processor

pytestmark = pytest.mark.integration

MIN = 60_000
TICK = 10_000
W0 = 1_767_196_800_000  # 2026-01-01T00:00:00+08:00
END = W0 + 16 * MIN
SETTINGS = Settings(window_ms=MIN, allowed_lateness_ms=10_000, idle_close_ms=5_000)
REGISTRY = Registry.from_text(
    """
sites:
  - id: dc
    name: Property DC
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
"""
)
_TABLES = (
    "readings, meter_state, meter_intervals, meter_events, kpi_windows, kpi_revisions, restatement_requests"
)


def stream(seed: int) -> list[Reading]:
    """Facility = IT + a non-negative overhead, both cumulative, one reading per meter every 10 s."""
    rng = random.Random(seed)
    facility, it = 1000.0, 400.0
    out: list[Reading] = []
    for ts in range(W0, END + 1, TICK):
        out.append(Reading(site_id="dc", meter_id="facility", ts_ms=ts, energy_kwh=round(facility, 3)))
        out.append(Reading(site_id="dc", meter_id="it", ts_ms=ts, energy_kwh=round(it, 3)))
        it_step = rng.choice([0.5, 1.0, 2.0])
        it += it_step
        facility += it_step + rng.choice([0.0, 0.25, 0.75])
    return out


async def run(store: Store, batches: list[list[Reading]]) -> tuple[list[KpiWindow], list[KpiWindow]]:
    async with store.transaction("resetting the test schema") as conn:
        await conn.execute(f"TRUNCATE {_TABLES}")
    await store.sync_registry(REGISTRY)
    bus = MemoryBus()
    clock = [W0]
    proc = Processor(
        bus, store, REGISTRY, SETTINGS, accounting=store, clock_ms=lambda: clock[0], poll_timeout_s=0.0
    )
    await proc.start()
    for batch in batches:
        await bus.publish(ReadingBatch("dc", batch))
        clock[0] = max(clock[0], max(r.ts_ms for r in batch) + 200)
        await proc.run_once(timeout_s=0)
    clock[0] = END + 2 * MIN
    await proc.flush()
    while await proc.account():
        pass
    minutes = await store.kpi_series("dc", W0, END, period="1m")
    quarters = await store.kpi_series("dc", W0, END, period="15m")
    return minutes, quarters


def values(windows: list[KpiWindow]) -> list[float | None]:
    """Start, facility and IT energy of every window, flat (pytest.approx compares flat lists)."""
    return [v for w in windows for v in (float(w.start_ms), w.facility_kwh, w.it_kwh)]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), shuffle=st.randoms(use_true_random=False), batch=st.integers(1, 40))
async def test_arrival_order_and_duplicates_do_not_change_the_kpis(
    store: Store, seed: int, shuffle: random.Random, batch: int
) -> None:
    readings = stream(seed)
    in_order = [readings[i : i + 2] for i in range(0, len(readings), 2)]
    expected_minutes, expected_quarters = await run(store, in_order)

    disturbed = readings + shuffle.sample(readings, len(readings) // 5)  # 20 % duplicated
    shuffle.shuffle(disturbed)
    minutes, quarters = await run(store, [disturbed[i : i + batch] for i in range(0, len(disturbed), batch)])

    assert len(expected_minutes) == 16
    assert values(minutes) == pytest.approx(values(expected_minutes))
    assert [w.pue for w in minutes] == pytest.approx([w.pue for w in expected_minutes])
    assert values(quarters) == pytest.approx(values(expected_quarters))
    # the quarter hour is the exact sum of its minutes, and PUE >= 1 (IT is inside the facility meter)
    [quarter] = quarters
    assert quarter.facility_kwh == pytest.approx(sum(w.facility_kwh or 0.0 for w in minutes[:15]))
    assert quarter.it_kwh == pytest.approx(sum(w.it_kwh or 0.0 for w in minutes[:15]))
    assert all(w.pue is None or w.pue >= 1.0 for w in [*minutes, quarter])
