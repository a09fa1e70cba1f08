"""Issue #3 golden scenarios through the processor, its accountant and a real PostgreSQL store.

A data centre whose facility meter adds 1.5 kWh and IT meter 1 kWh every 10 s: every undisturbed minute
is 9 kWh / 6 kWh, PUE 1.5 exactly, and every longer window is the sum of its minutes. Each scenario
disturbs the stream (a late batch crossing window boundaries, a counter reset, a meter replacement
recorded after the fact, a factor revision) and checks the stored windows against those hand-computed
values, and the revision history against what the windows said before.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pytest

from peakwatch.bus import MemoryBus
from peakwatch.config import Registry, Settings
from peakwatch.domain.factors import Factor
from peakwatch.domain.kpis import WindowInputs, minute_components, window_kpis
from peakwatch.domain.models import MeterReplacement, Reading, ReadingBatch
from peakwatch.store import Store, restate
from processor.accountant import Accountant
from processor.service import Processor

pytestmark = pytest.mark.integration


@pytest.fixture(params=["plain", pytest.param("timescale", marks=pytest.mark.timescale)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every scenario runs on plain PostgreSQL and, when available, on TimescaleDB hypertables."""
    return str(request.getfixturevalue(f"{request.param}_database_url"))


MIN = 60_000
TICK = 10_000
W0 = 1_767_196_800_000  # 2026-01-01T00:00:00+08:00 (Asia/Shanghai midnight): a day, hour and 15-min boundary
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


def reading(meter: str, ts: int, value: float) -> Reading:
    return Reading(site_id="dc", meter_id=meter, ts_ms=ts, energy_kwh=round(value, 6))


def ticks(start: int, end: int) -> range:
    return range(start, end + 1, TICK)


def facility_at(ts: int) -> float:
    return 1000.0 + 1.5 * (ts - W0) / TICK


def it_at(ts: int) -> float:
    return 500.0 + (ts - W0) / TICK


class Rig:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.registry = Registry.from_text(REGISTRY_YAML)
        self.bus = MemoryBus()
        self.clock = Clock(W0)
        self.proc = Processor(
            self.bus,
            store,
            self.registry,
            SETTINGS,
            accounting=store,
            clock_ms=self.clock,
            poll_timeout_s=0.0,
        )

    async def start(self) -> None:
        await self.store.sync_registry(self.registry)
        await self.proc.start()

    async def send(self, readings: Iterable[Reading], now_ms: int) -> None:
        await self.bus.publish(ReadingBatch("dc", list(readings)))
        self.clock.ms = now_ms
        await self.proc.run_once(timeout_s=0)
        await self.proc.account()

    async def drive(self, start: int, end: int, *, skip_it: bool = False) -> None:
        for ts in ticks(start, end):
            batch = [reading("facility", ts, facility_at(ts))]
            if not skip_it:
                batch.append(reading("it", ts, it_at(ts)))
            await self.send(batch, ts + 200)

    async def windows(self, period: str = "1m") -> list[object]:
        return list(await self.store.kpi_series("dc", W0, W0 + 24 * 60 * MIN, period=period))


async def test_late_batch_crossing_windows_is_restated_with_revisions(store: Store) -> None:
    rig = Rig(store)
    await rig.start()
    await rig.drive(W0, W0 + 2 * MIN - TICK)
    # the IT meter's gateway goes quiet for 2:00 .. 6:00 while the facility meter keeps reporting
    await rig.drive(W0 + 2 * MIN, W0 + 6 * MIN, skip_it=True)
    before = {w.start_ms: w for w in await store.kpi_series("dc", W0, W0 + 10 * MIN)}
    assert before[W0 + 3 * MIN].pue is None  # IT missing: no PUE rather than a wrong one
    assert before[W0 + 3 * MIN].completeness == pytest.approx(0.5)
    # the backlog arrives in one batch, after windows 2..4 closed; it crosses four window boundaries
    await rig.send(
        (reading("it", ts, it_at(ts)) for ts in ticks(W0 + 2 * MIN, W0 + 6 * MIN)), W0 + 6 * MIN + 300
    )
    await rig.drive(W0 + 6 * MIN + TICK, W0 + 16 * MIN)
    rig.clock.ms += MIN
    await rig.proc.flush()
    await rig.proc.account()

    minutes = await store.kpi_series("dc", W0, W0 + 16 * MIN)
    assert [w.start_ms for w in minutes] == [W0 + i * MIN for i in range(16)]
    assert [w.facility_kwh for w in minutes] == pytest.approx([9.0] * 16)
    assert [w.it_kwh for w in minutes] == pytest.approx([6.0] * 16)
    assert [w.pue for w in minutes] == pytest.approx([1.5] * 16)
    assert all(w.completeness == 1.0 for w in minutes)
    # windows 1..4 closed short of IT energy (window 1 lacks the 1:50-2:00 interval) and are restated;
    # window 5 was still open when the backlog arrived; the rest were right the first time
    assert [w.revision for w in minutes] == [0, 1, 1, 1, 1, 0] + [0] * 10
    [revision] = await store.kpi_revisions("dc", "1m", W0 + 3 * MIN)
    assert revision.reason == "late_data"
    assert revision.previous.pue is None
    assert revision.previous.it_kwh is None  # the meter did not report: a gap, not 0 kWh

    # the quarter hour is the exact sum of its minutes (materialised after the restatement)
    [quarter] = await store.kpi_series("dc", W0, W0 + 15 * MIN, period="15m")
    assert (quarter.facility_kwh, quarter.it_kwh) == (pytest.approx(135.0), pytest.approx(90.0))
    assert quarter.pue == pytest.approx(1.5)
    assert quarter.completeness == pytest.approx(1.0)
    # 15-minute demand: no grid import meter, so consumption 135 kWh / 0.25 h
    assert quarter.max_demand_kw == pytest.approx(540.0)


async def test_counter_reset_keeps_totals_exact(store: Store) -> None:
    rig = Rig(store)
    await rig.start()
    await rig.drive(W0, W0 + 3 * MIN)
    # the facility register restarts from zero at 3:10 (a reset): 3:10 reads 1.5, then +1.5 per tick
    for ts in ticks(W0 + 3 * MIN + TICK, W0 + 16 * MIN):
        value = 1.5 * (ts - W0 - 3 * MIN) / TICK
        await rig.send([reading("facility", ts, value), reading("it", ts, it_at(ts))], ts + 200)
    rig.clock.ms += MIN
    await rig.proc.flush()
    await rig.proc.account()
    minutes = await store.kpi_series("dc", W0, W0 + 16 * MIN)
    assert [w.facility_kwh for w in minutes] == pytest.approx([9.0] * 16)
    assert "reset" in minutes[3].flags
    [quarter] = await store.kpi_series("dc", W0, W0 + 15 * MIN, period="15m")
    assert quarter.facility_kwh == pytest.approx(135.0)


@pytest.mark.parametrize("restart", [False, True], ids=["live", "restarted"])
async def test_low_glitch_in_closed_windows_is_taken_back(store: Store, restart: bool) -> None:
    """README tour step 5: one low facility reading (23.4 kWh) on a register standing near 1,000 kWh,
    then nothing from the facility meter until its windows closed, then readings back at the old level.
    ``restarted``: the processor restarts between the low reading and the one that contradicts it."""
    rig = Rig(store)
    await rig.start()
    await rig.drive(W0, W0 + 3 * MIN)
    # 3:10 reads 23.4 (<= 10 % of facility_at(3:00) = 1,027): a provisional reset, 23.4 counted over
    # [3:00, 3:10)
    await rig.send(
        [
            reading("facility", W0 + 3 * MIN + TICK, 23.4),
            reading("it", W0 + 3 * MIN + TICK, it_at(W0 + 3 * MIN + TICK)),
        ],
        W0 + 3 * MIN + TICK + 200,
    )
    # the facility meter is quiet until 5:00; windows 3 and 4 close on the IT meter's readings
    for ts in ticks(W0 + 3 * MIN + 2 * TICK, W0 + 5 * MIN - TICK):
        await rig.send([reading("it", ts, it_at(ts))], ts + 200)
    closed = {w.start_ms: w for w in await store.kpi_series("dc", W0, W0 + 5 * MIN)}
    assert closed[W0 + 3 * MIN].facility_kwh == pytest.approx(23.4)  # what the live path stored
    if restart:  # the pending drop is not stored: the new processor finds it from the stored readings
        rig.proc = Processor(
            rig.bus, store, rig.registry, SETTINGS, accounting=store, clock_ms=rig.clock, poll_timeout_s=0.0
        )
        await rig.proc.start()
    # 5:00 is back at the old level, facility_at(5:00): the drop was a glitch
    await rig.drive(W0 + 5 * MIN, W0 + 16 * MIN)
    rig.clock.ms += MIN
    await rig.proc.flush()
    await rig.proc.account()

    minutes = await store.kpi_series("dc", W0, W0 + 16 * MIN)
    # as if 23.4 never came: facility_at(5:00) - facility_at(3:00) = 1.5 x 12 ticks = 18 kWh over
    # [3:00, 5:00), 9 + 9; every minute 9 kWh facility, 6 kWh IT, PUE 9 / 6 = 1.5
    assert [w.facility_kwh for w in minutes] == pytest.approx([9.0] * 16)
    assert [w.it_kwh for w in minutes] == pytest.approx([6.0] * 16)
    assert [w.pue for w in minutes] == pytest.approx([1.5] * 16)
    # window 3 had closed with 23.4 (restated); window 4 was still open at 5:00 (lateness 10 s)
    assert [w.revision > 0 for w in minutes] == [False] * 3 + [True] + [False] * 12
    revisions = await store.kpi_revisions("dc", "1m", W0 + 3 * MIN)
    assert [r.reason for r in revisions] == ["glitch"]
    assert revisions[0].previous.facility_kwh == pytest.approx(23.4)
    # the quarter hour: 15 x 9 = 135 kWh facility, 15 x 6 = 90 kWh IT, PUE 1.5
    [quarter] = await store.kpi_series("dc", W0, W0 + 15 * MIN, period="15m")
    assert (quarter.facility_kwh, quarter.it_kwh) == (pytest.approx(135.0), pytest.approx(90.0))
    assert quarter.pue == pytest.approx(1.5)
    async with store.transaction("reading events") as conn:
        kinds = [
            r["kind"]
            for r in await conn.fetch(
                "SELECT kind FROM meter_events WHERE meter_id = 'facility' AND kind <> 'first' ORDER BY id"
            )
        ]
    assert kinds == ["reset", "glitch", "late"]


async def test_meter_replacement_recorded_after_the_fact(store: Store) -> None:
    rig = Rig(store)
    await rig.start()
    await rig.drive(W0, W0 + 3 * MIN)
    # at 3:05 the facility meter is swapped: the old one read 1027.75 (1000 + 18.5 ticks x 1.5), the new
    # one starts at 0.0 and reads 0.75 at 3:10, then +1.5 per tick
    for ts in ticks(W0 + 3 * MIN + TICK, W0 + 8 * MIN):
        value = 0.75 + 1.5 * (ts - W0 - 3 * MIN - TICK) / TICK
        await rig.send([reading("facility", ts, value), reading("it", ts, it_at(ts))], ts + 200)
    live = {w.start_ms: w for w in await store.kpi_series("dc", W0, W0 + 8 * MIN)}
    # without the record the drop 1027.0 -> 0.75 looks like a reset: only 0.75 counted for 3:00-3:10
    assert live[W0 + 3 * MIN].facility_kwh == pytest.approx(8.25)

    await store.inputs.add_replacement(
        MeterReplacement(
            site_id="dc", meter_id="facility", ts_ms=W0 + 3 * MIN + 5_000, old_final=1027.75, new_initial=0.0
        )
    )
    await rig.proc.account()
    minutes = await store.kpi_series("dc", W0, W0 + 7 * MIN)
    assert [w.facility_kwh for w in minutes] == pytest.approx([9.0] * 7)
    assert minutes[3].revision == 1
    [revision] = await store.kpi_revisions("dc", "1m", W0 + 3 * MIN)
    assert revision.reason == "meter_replacement"
    assert revision.previous.facility_kwh == pytest.approx(8.25)
    # the live path took the drop for a reset; the record explains it: the window says replacement
    assert "reset" in revision.previous.flags
    assert "replacement" in minutes[3].flags
    assert "reset" not in minutes[3].flags


async def test_factor_revision_restates_every_period(store: Store) -> None:
    rig = Rig(store)
    await rig.start()
    await rig.drive(W0, W0 + 16 * MIN)
    rig.clock.ms += MIN
    await rig.proc.flush()
    await rig.proc.account()
    [quarter] = await store.kpi_series("dc", W0, W0 + 15 * MIN, period="15m")
    # no grid meter: all 135 kWh purchased x 0.4976 (Hunan 2023)
    assert quarter.emissions_kg == pytest.approx(135 * 0.4976)

    await store.inputs.add_factor_version(
        Factor(
            id="grid.cn.hunan.2023",
            value=0.5,
            unit="kgCO2/kWh",
            source="test revision",
            data_year=2023,
            published="2026-06-30",
            status="verified",
            version=2,
        )
    )
    await rig.proc.account()
    [quarter] = await store.kpi_series("dc", W0, W0 + 15 * MIN, period="15m")
    assert quarter.emissions_kg == pytest.approx(67.5)
    assert quarter.factors_used["grid"] == "grid.cn.hunan.2023@2"
    assert quarter.revision == 1
    [revision] = await store.kpi_revisions("dc", "15m", W0)
    assert (revision.reason, revision.previous.emissions_kg) == ("factor_revision", pytest.approx(67.176))
    minute = await store.latest_kpis("dc")
    assert minute is not None
    assert minute.emissions_kg == pytest.approx(9 * 0.5)
    # windows closed after the revision use the new factor from the start
    await rig.drive(W0 + 16 * MIN + TICK, W0 + 18 * MIN)
    newest = await store.latest_kpis("dc")
    assert newest is not None
    assert newest.factors_used["grid"] == "grid.cn.hunan.2023@2"
    assert newest.revision == 0


async def test_backlog_after_the_site_fell_silent_is_restated(store: Store) -> None:
    """Windows that idle close with no data still move the committed frontier, so late data for them is
    restated instead of waiting for a window with data that never comes."""
    rig = Rig(store)
    await rig.start()
    await rig.drive(W0, W0 + 5 * MIN)
    rig.clock.ms = W0 + 12 * MIN  # silent: minutes 5..11 idle close without data
    await rig.proc.flush()
    backlog = [
        r
        for ts in ticks(W0 + 5 * MIN + TICK, W0 + 10 * MIN)
        for r in (reading("facility", ts, facility_at(ts)), reading("it", ts, it_at(ts)))
    ]
    await rig.send(backlog, W0 + 12 * MIN + 100)
    rig.clock.ms = W0 + 20 * MIN
    await rig.proc.flush()
    await rig.proc.account()
    assert all(r.done_ms is not None for r in await store.inputs.list_restatements(10))
    minutes = await store.kpi_series("dc", W0, W0 + 10 * MIN)
    assert [w.facility_kwh for w in minutes] == pytest.approx([9.0] * 10)
    assert [w.pue for w in minutes] == pytest.approx([1.5] * 10)


async def test_backlog_from_before_the_first_window_reaches_the_longer_windows(store: Store) -> None:
    rig = Rig(store)
    await rig.start()
    # the facility meter goes live at 00:30; the IT meter's gateway uploads its backlog from 00:00 at 00:40
    for ts in ticks(W0 + 30 * MIN, W0 + 40 * MIN):
        await rig.send([reading("facility", ts, facility_at(ts))], ts + 200)
    await rig.send([reading("it", ts, it_at(ts)) for ts in ticks(W0, W0 + 40 * MIN)], W0 + 40 * MIN + 300)
    await rig.drive(W0 + 40 * MIN + TICK, W0 + 61 * MIN)
    rig.clock.ms += MIN
    await rig.proc.flush()
    await rig.proc.account()
    quarters = await store.kpi_series("dc", W0, W0 + 60 * MIN, period="15m")
    assert [w.it_kwh for w in quarters] == pytest.approx([90.0] * 4)
    [hour] = await store.kpi_series("dc", W0, W0 + 60 * MIN, period="1h")
    # IT for the whole hour; facility only from 00:30 (30 minutes x 9 kWh), and PUE only over the
    # minutes where both reported: 270 / 180
    assert (hour.it_kwh, hour.facility_kwh) == (pytest.approx(360.0), pytest.approx(270.0))
    assert hour.pue == pytest.approx(1.5)
    assert hour.completeness == pytest.approx(90 / 120)


GLITCHY = """
sites:
  - id: dc
    name: Test DC
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh, rated_kw: 10000}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
"""


async def test_rederivation_next_to_a_glitch_counts_what_the_live_path_counts(store: Store) -> None:
    """A spike (99999 kWh on a 10 MW meter) just before an out-of-order reading: the re-derivation
    starts far enough back to recognise the spike, instead of taking it as the baseline."""
    rig = Rig(store)
    rig.registry = Registry.from_text(GLITCHY)
    rig.proc = Processor(
        rig.bus, store, rig.registry, SETTINGS, accounting=store, clock_ms=rig.clock, poll_timeout_s=0.0
    )
    await rig.start()

    def fac(seconds: int, value: float) -> Reading:
        return reading("facility", W0 + seconds * 1000, value)

    for t, v in [
        (0, 100.0),
        (90, 101.5),
        (150, 99999.0),
        (210, 103.5),
        (270, 104.5),
        (330, 105.5),
        (390, 106.5),
    ]:
        await rig.send([fac(t, v)], W0 + t * 1000 + 100)
    await rig.send([fac(240, 104.0)], W0 + 400_000)  # out of order, in the minute after the spike
    rig.clock.ms = W0 + 30 * MIN
    await rig.proc.flush()
    await rig.proc.account()
    minutes = await store.kpi_series("dc", W0, W0 + 6 * MIN)
    # 1 kWh per minute throughout; the spike counts nothing
    assert [w.facility_kwh for w in minutes] == pytest.approx([1.0] * 6)


PARK_YAML = """
sites:
  - id: park
    name: Test park
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
      - {id: pv, carrier: electricity, role: pv_generation, unit: kWh}
"""
FEB = 1_769_875_200_000  # 2026-02-01T00:00:00+08:00
MAR = 1_772_294_400_000  # 2026-03-01T00:00:00+08:00


async def test_market_based_month_from_certificates_and_value_added(store: Store) -> None:
    """A calendar month materialised from its minutes, with green certificates and value added entered
    through the store's inputs; more certificates later restate the month and its 12-month window."""
    registry = Registry.from_text(PARK_YAML)
    await store.sync_registry(registry)
    site = registry.sites["park"]
    meters = registry.site_meters("park")
    factors = registry.resolve_factors(site)
    minutes = [
        window_kpis(
            "park",
            t,
            t + MIN,
            minute_components(meters, amounts),
            WindowInputs(kind=site.kind, factors=factors),
        )
        for t, amounts in [(FEB, {"grid-in": 600.0, "pv": 100.0}), (MAR - MIN, {"grid-in": 400.0, "pv": 0.0})]
    ]
    async with store.transaction("seeding minutes") as conn:
        await restate.save_windows(conn, minutes, "test", "")
    await store.inputs.add_green_instrument("park", date(2026, 2, 1), "certificate", 300.0, "GEC batch 1")
    await store.inputs.set_value_added("park", date(2026, 2, 1), 1_000_000.0)
    accountant = Accountant(store, registry, committed=lambda: {"park": MAR}, closed=lambda: {"park": MAR})
    await accountant.start()
    await accountant.run_once()

    [month] = await store.kpi_series("park", FEB, MAR, period="1mo")
    # consumed 600 + 100 + 400 = 1100 kWh, purchased 1000: location 1000 x 0.4976 = 497.6 kg;
    # market (1000 - 300) x 0.6096 = 426.72 kg; market green share (100 PV + 300) / 1100
    assert month.electricity_kwh == pytest.approx(1100.0)
    assert month.emissions_kg == pytest.approx(497.6)
    assert month.emissions_market_kg == pytest.approx(426.72)
    assert month.green_certificates_kwh == pytest.approx(300.0)
    assert month.green_power_share_market == pytest.approx(400 / 1100)
    # 1100 x 0.1229 = 135.19 kgce per 100 x 10k CNY
    assert month.energy_intensity_kgce_per_10k_cny == pytest.approx(1.3519)
    assert month.max_demand_kw == pytest.approx(600 / 0.25)  # the quarter hour with 600 kWh imported
    # the 12 months ending with February: only February has data, and value added is missing for the
    # other 11 months, so no intensity per value added
    [year] = await store.kpi_series("park", FEB - 400 * 86_400_000, MAR, period="12mo")
    assert (year.start_ms, year.end_ms) == (1_740_758_400_000, MAR)  # 2025-03-01 .. 2026-03-01 local
    assert year.emissions_market_kg == pytest.approx(426.72)
    assert year.energy_intensity_kgce_per_10k_cny is None
    assert year.interim is False

    await store.inputs.add_green_instrument("park", date(2026, 2, 1), "contract", 200.0, "PPA 7")
    await accountant.run_once()
    [month] = await store.kpi_series("park", FEB, MAR, period="1mo")
    assert month.emissions_market_kg == pytest.approx(500 * 0.6096)
    assert month.revision == 1
    [revision] = await store.kpi_revisions("park", "1mo", FEB)
    assert (revision.reason, revision.previous.emissions_market_kg) == (
        "green_instruments",
        pytest.approx(426.72),
    )
    [year] = await store.kpi_series("park", FEB - 400 * 86_400_000, MAR, period="12mo")
    assert year.emissions_market_kg == pytest.approx(304.8)
