"""The processor against a real PostgreSQL store: KPI windows, alerts, replays and a restart.

The clock is a test clock (event time = wall time + a small latency) so windows close deterministically;
the bus is the real in-process bus.
"""

from __future__ import annotations

import pytest

from peakwatch.bus import MemoryBus
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.store import Store
from processor.service import Processor

pytestmark = pytest.mark.integration

MIN = 60_000
W0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a window boundary
SETTINGS = Settings(window_ms=MIN, allowed_lateness_ms=10_000, idle_close_ms=5_000)

REGISTRY_YAML = """
sites:
  - id: dc
    name: Test DC
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh, register_max: 999999.99}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
rules:
  - {name: pue_retrofit_line, kpi: pue, op: ">", threshold: 1.5, for: 3m, severity: critical,
     summary: "PUE {value:.2f} at {site}", site_kinds: [data_centre]}
"""


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class Meters:
    """Facility and IT registers reporting every 10 s; facility starts just below the rollover."""

    def __init__(self) -> None:
        self.facility = 999_990.0
        self.it = 100.0

    def batch(self, ts_ms: int, facility_kwh: float, it_kwh: float = 1.0) -> ReadingBatch:
        self.facility = (self.facility + facility_kwh) % 999_999.99
        self.it += it_kwh
        return ReadingBatch(
            "dc",
            [
                Reading(site_id="dc", meter_id="facility", ts_ms=ts_ms, energy_kwh=round(self.facility, 2)),
                Reading(site_id="dc", meter_id="it", ts_ms=ts_ms, energy_kwh=self.it, power_kw=360.0),
            ],
        )


async def drive(
    proc: Processor,
    bus: MemoryBus,
    clock: Clock,
    meters: Meters,
    start_ms: int,
    end_ms: int,
    facility_kwh: float,
) -> list[ReadingBatch]:
    sent = []
    for ts in range(start_ms, end_ms + 1, 10_000):
        batch = meters.batch(ts, facility_kwh)
        sent.append(batch)
        await bus.publish(batch)
        clock.ms = ts + 200
        await proc.run_once(timeout_s=0)
    return sent


async def test_processor_on_real_store(store: Store) -> None:
    registry = Registry.from_text(REGISTRY_YAML)
    await store.sync_registry(registry)
    bus, clock, meters = MemoryBus(), Clock(W0), Meters()

    first = Processor(bus, store, registry, SETTINGS, clock_ms=clock, poll_timeout_s=0.0)
    # PUE 1.6 from W0 to W0 + 2.5 min: the facility register rolls over on the way (999990 + 1.6 per 10 s)
    sent = await drive(first, bus, clock, meters, W0, W0 + 150_000, facility_kwh=1.6)
    assert [w.start_ms for w in await store.kpi_series("dc", W0, W0 + 10 * MIN)] == [W0, W0 + MIN]

    # a replay of everything changes nothing
    for batch in sent:
        await bus.publish(batch)
    await first.run_once(timeout_s=0)

    # restart in the middle of window W0 + 2 min (30 s of it written), then PUE 1.6 until W0 + 4 min
    # and 1.2 after that
    second = Processor(bus, store, registry, SETTINGS, clock_ms=clock, poll_timeout_s=0.0)
    await second.start()
    await drive(second, bus, clock, meters, W0 + 160_000, W0 + 240_000, facility_kwh=1.6)
    await drive(second, bus, clock, meters, W0 + 250_000, W0 + 6 * MIN, facility_kwh=1.2)
    clock.ms += 60_000
    await second.flush()  # idle close of the last window

    windows = await store.kpi_series("dc", W0, W0 + 10 * MIN)
    assert [w.start_ms for w in windows] == [W0 + i * MIN for i in range(6)]
    # six 10-s ticks per window, rollover included and the window spanning the restart counted once
    assert [w.facility_kwh for w in windows] == pytest.approx([9.6, 9.6, 9.6, 9.6, 7.2, 7.2], abs=0.02)
    assert [w.it_kwh for w in windows] == pytest.approx([6.0] * 6)
    assert [w.pue for w in windows] == pytest.approx([1.6, 1.6, 1.6, 1.6, 1.2, 1.2], abs=0.01)
    assert "rollover" in windows[0].flags or "rollover" in windows[1].flags
    assert all(w.completeness == 1.0 for w in windows)
    latest = await store.latest_kpis("dc")
    assert latest is not None
    assert latest.start_ms == W0 + 5 * MIN

    # PUE > 1.5 from W0 to W0 + 4 min: pending at W0 + 1 min, firing at W0 + 3 min, resolved at W0 + 5 min
    [alert] = await store.list_alerts(site_id="dc")
    assert (alert.state, alert.fired_ms, alert.resolved_ms) == ("resolved", W0 + 3 * MIN, W0 + 5 * MIN)
    assert alert.summary == "PUE 1.20 at dc"

    # every reading stored once (37 ticks x 2 meters); baselines at the last tick
    assert await store.count_readings("dc") == 2 * 37
    states = {s.meter_id: s for s in await store.load_meter_states()}
    assert states["it"].last_ts_ms == W0 + 6 * MIN
    assert states["it"].last_value == pytest.approx(100.0 + 37)
