"""A meter silent for 60 days, through the processor, its accountant and a real PostgreSQL store.

The long-gap rule (``peakwatch.domain.spreading.split_interval``) spreads an interval over a day in
15-minute buckets: the ledger gets 96 rows a day instead of 1,440, and the hourly, daily and monthly
windows are still the exact linear share. The cost is checked by counting rows (a 46-day silence used
to write about 938,000 ledger rows and keep the accountant busy for minutes).
"""

from __future__ import annotations

import pytest

from peakwatch.bus import MemoryBus
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.store import Store
from processor.service import Processor

pytestmark = pytest.mark.integration


@pytest.fixture(params=["plain", pytest.param("timescale", marks=pytest.mark.timescale)])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_database_url"))


MIN = 60_000
TICK = 10_000
DAY = 86_400_000
W0 = 1_767_196_800_000  # 2026-01-01T00:00:00+08:00 (Asia/Shanghai midnight)
GAP_END = W0 + 60 * DAY + 2 * MIN  # the gateway comes back 60 days after it fell silent at 00:02
SETTINGS = Settings(window_ms=MIN, allowed_lateness_ms=10_000, idle_close_ms=5_000)
REGISTRY_YAML = """
sites:
  - id: dc
    name: Test DC
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
"""


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def batch(ts: int) -> ReadingBatch:
    """Facility +1.5 kWh and IT +1 kWh every 10 s: 9 and 6 kWh a minute, PUE 1.5."""
    k = (ts - W0) // TICK
    return ReadingBatch(
        "dc",
        [
            Reading(site_id="dc", meter_id="facility", ts_ms=ts, energy_kwh=1000.0 + 1.5 * k),
            Reading(site_id="dc", meter_id="it", ts_ms=ts, energy_kwh=500.0 + 1.0 * k),
        ],
    )


async def test_sixty_day_silence_is_bounded_and_exact(store: Store) -> None:
    registry = Registry.from_text(REGISTRY_YAML)
    clock = Clock(W0)
    bus = MemoryBus()
    proc = Processor(bus, store, registry, SETTINGS, accounting=store, clock_ms=clock, poll_timeout_s=0.0)
    await store.sync_registry(registry)
    await proc.start()

    async def send(ts: int) -> None:
        await bus.publish(batch(ts))
        clock.ms = ts + 200
        await proc.run_once(timeout_s=0)
        await proc.account()

    for ts in range(W0, W0 + 2 * MIN + 1, TICK):
        await send(ts)
    clock.ms = W0 + 10 * MIN  # silent: the open windows idle close
    await proc.flush()
    for ts in range(GAP_END, GAP_END + 5 * MIN + 1, TICK):
        await send(ts)
    clock.ms = GAP_END + 10 * MIN
    await proc.flush()
    while await proc.account():
        pass

    async with store.transaction("counting rows") as conn:
        ledger = await conn.fetchval(
            "SELECT count(*) FROM meter_intervals WHERE site_id = 'dc' AND meter_id = 'facility'"
        )
        minutes = await conn.fetchval(
            "SELECT count(*) FROM kpi_windows WHERE site_id = 'dc' AND period = '1m'"
        )
    # minutes 00:00 and 00:01 before; the gap [day 0 00:02, day 60 00:02) touches the quarter hours
    # day 0 00:00 .. day 60 00:00, 60 x 96 + 1 (the first one's row at 00:02); 5 minutes after.
    # Spread per minute it was 86,400 rows per meter.
    assert ledger == 2 + 60 * 96 + 1 + 5
    assert minutes == ledger
    days = await store.kpi_series("dc", W0, W0 + 60 * DAY, period="1d")
    assert len(days) == 60
    # every day, in or out of the gap: 1,440 min x 9 kWh = 12,960 kWh and 8,640 kWh IT, PUE 1.5
    assert [d.facility_kwh for d in days] == pytest.approx([12_960.0] * 60, rel=1e-12)
    assert [d.it_kwh for d in days] == pytest.approx([8_640.0] * 60, rel=1e-12)
    assert [d.pue for d in days] == pytest.approx([1.5] * 60, rel=1e-12)
    hours = await store.kpi_series("dc", W0 + 30 * DAY, W0 + 31 * DAY, period="1h")
    assert [h.facility_kwh for h in hours] == pytest.approx([540.0] * 24, rel=1e-12)  # 60 x 9
    [january] = await store.kpi_series("dc", W0, W0 + DAY, period="1mo")
    assert january.facility_kwh == pytest.approx(31 * 12_960.0, rel=1e-12)
    # the reading that ended the silence says so
    async with store.transaction("reading events") as conn:
        events = await conn.fetch(
            "SELECT meter_id, ts FROM meter_events WHERE kind = 'gap' ORDER BY meter_id"
        )
    assert [(e["meter_id"], e["ts"]) for e in events] == [("facility", GAP_END), ("it", GAP_END)]
