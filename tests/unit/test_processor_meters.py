"""MeterTracker: registers to per-window amounts (processor/meters.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pytest

from peakwatch.config import Registry
from peakwatch.domain.models import (
    MeterFlag,
    MeterInterval,
    MeterReplacement,
    MeterState,
    Reading,
    ReadingBatch,
)
from processor.meters import MeterTracker, StepOutput
from tests.unit.fakes import make_registry

MIN = 60_000
T0 = 1_700_000_020_000  # 40 s into the minute that starts at W0
W0 = T0 - T0 % MIN


def tracker(**kwargs: int) -> MeterTracker:
    return MeterTracker(make_registry(), MIN, **kwargs)


def fac(ts_ms: int, kwh: float | None, **fields: float) -> Reading:
    return Reading(site_id="dc", meter_id="facility", ts_ms=ts_ms, energy_kwh=kwh, **fields)


def cool(ts_ms: int, kwh: float) -> Reading:
    return Reading(site_id="dc", meter_id="cooling", ts_ms=ts_ms, energy_kwh=kwh)


@dataclass
class Step:
    amounts: dict[int, float]
    """Amount per window start."""
    out: StepOutput
    states: list[MeterState]


def feed(t: MeterTracker, readings: list[Reading], now_ms: int = 0) -> Step:
    out = StepOutput(now_ms)
    t.apply_batch(ReadingBatch("dc", readings), out)
    intervals, states = t.drain(out, now_ms)
    amounts: dict[int, float] = defaultdict(float)
    for iv in intervals:
        amounts[iv.window_start_ms] += iv.amount
    return Step(dict(amounts), out, states)


def test_first_reading_sets_baseline_then_deltas() -> None:
    t = tracker()
    intervals, events = t.apply(fac(T0, 100.0))
    assert intervals == []
    assert [e.kind for e in events] == [MeterFlag.FIRST]
    intervals, events = t.apply(fac(T0 + 10_000, 101.5))
    assert [(iv.window_start_ms, iv.amount) for iv in intervals] == [(W0, 1.5)]
    assert events == []


def test_five_minute_meter_fills_one_minute_windows_proportionally() -> None:
    t = tracker()
    t.apply(fac(W0 + 30_000, 1000.0))
    # 10 kWh over [W0+30 s, W0+330 s): 30 s in the first and last window, 60 s in four between
    amounts = feed(t, [fac(W0 + 330_000, 1010.0)]).amounts
    assert sorted(amounts) == [W0 + i * MIN for i in range(6)]
    assert [amounts[W0 + i * MIN] for i in range(6)] == pytest.approx([1.0, 2.0, 2.0, 2.0, 2.0, 1.0])
    assert sum(amounts.values()) == 10.0


@pytest.mark.parametrize(
    ("values", "total", "flags"),
    [
        # 100 -> 150 (+50) -> reset to 5 (+5) -> 20 (+15) = 70
        pytest.param([100.0, 150.0, 5.0, 20.0], 70.0, [MeterFlag.RESET], id="reset"),
        # 999990 -> 999999 (+9) -> rollover at 999999.99 to 3 (+0.99 + 3) = 12.99
        pytest.param([999_990.0, 999_999.0, 3.0], 12.99, [MeterFlag.ROLLOVER], id="rollover"),
        # a reset to 0 exactly, then normal counting: 50 + 0 + 7 = 57
        pytest.param([10.0, 60.0, 0.0, 7.0], 57.0, [MeterFlag.RESET], id="reset-to-zero"),
    ],
)
def test_reset_and_rollover_never_negative(values: list[float], total: float, flags: list[MeterFlag]) -> None:
    t = tracker()
    got = 0.0
    kinds: list[MeterFlag] = []
    for i, v in enumerate(values):
        intervals, events = t.apply(fac(T0 + i * 10_000, v))
        assert all(iv.amount >= 0 for iv in intervals)
        got += sum(iv.amount for iv in intervals)
        kinds += [e.kind for e in events if e.kind is not MeterFlag.FIRST]
    assert got == pytest.approx(total)
    assert kinds == flags


def test_reset_delivered_twice_is_not_doubled() -> None:
    t = tracker()
    readings = [
        fac(T0, 100.0),
        fac(T0 + 10_000, 150.0),
        fac(T0 + 20_000, 5.0),
        fac(T0 + 20_000, 5.0),
        fac(T0 + 30_000, 20.0),
        fac(T0 + 20_000, 5.0),
    ]
    step = feed(t, readings)
    amounts, out = step.amounts, step.out
    # 50 + 5 + 15: neither the duplicate (same ts) nor the late copy (older ts) adds energy
    assert sum(amounts.values()) == pytest.approx(70.0)
    assert out.duplicates == 1
    kinds = sorted(e.kind.value for e in out.events())
    assert kinds == ["first", "out_of_order", "reset"]
    # the same-ts duplicate is not stored again; the out-of-order copy is stored raw (the store ignores it)
    assert len(out.readings) == 5


def test_same_reading_object_twice_in_a_batch_is_stored_once() -> None:
    # The in-process bus can carry one Reading object twice (a replayed batch): the first is accepted
    # and stored, the second is a duplicate; dropping "the duplicate" must not drop the first as well.
    # Found by tests/integration/test_accounting_properties.py: the reading went missing from the
    # readings table, and a later re-derivation from stored readings lost its interval.
    t = tracker()
    feed(t, [fac(T0, 100.0)])
    again = fac(T0 + 10_000, 101.5)
    step = feed(t, [again, again])
    assert step.out.readings == [again]
    assert step.amounts == {W0: 1.5}
    assert step.out.duplicates == 1


def test_replayed_sequence_changes_nothing() -> None:
    t = tracker()
    seq = [fac(T0 + i * 10_000, 100.0 + 2 * i) for i in range(12)]
    first = feed(t, seq).amounts
    step = feed(t, seq)
    replay, out = step.amounts, step.out
    assert sum(first.values()) == pytest.approx(22.0)
    assert replay == {}
    assert out.duplicates == 1  # the newest reading; the others are older than the baseline
    # eleven out-of-order readings give a single aggregated event
    events = out.events()
    assert [e.kind for e in events] == [MeterFlag.OUT_OF_ORDER]
    assert "10 more" in events[0].detail


def test_conflicting_duplicate_keeps_first_value_and_reports() -> None:
    t = tracker()
    feed(t, [fac(T0, 100.0), fac(T0 + 10_000, 110.0)])
    step = feed(t, [fac(T0 + 10_000, 111.0), fac(T0 + 20_000, 112.0)])
    amounts, out = step.amounts, step.out
    assert sum(amounts.values()) == pytest.approx(2.0)  # from the kept 110
    [event] = out.events()
    assert (event.kind, event.previous, event.value) == (MeterFlag.DUPLICATE, 110.0, 111.0)


def test_reading_without_main_quantity_is_stored_without_energy() -> None:
    t = tracker()
    feed(t, [fac(T0, 100.0)])
    step = feed(t, [fac(T0 + 5_000, None, power_kw=42.0), fac(T0 + 10_000, 101.0)])
    amounts, out = step.amounts, step.out
    assert amounts == {W0: 1.0}  # the power-only reading does not move the baseline
    assert len(out.readings) == 2


def test_power_only_meter_gets_no_state() -> None:
    t = tracker()
    assert feed(t, [fac(T0, None, power_kw=42.0)]).states == []


def test_interval_register_goes_to_window_ending_at_ts() -> None:
    t = tracker()
    # 3 kWh for the minute ending on the boundary W0 + 60 s belongs to window W0
    amounts = feed(t, [cool(W0 + MIN, 3.0), cool(W0 + 2 * MIN, 4.0)]).amounts
    assert amounts == {W0: 3.0, W0 + MIN: 4.0}


def test_interval_register_duplicates_and_late_within_retention() -> None:
    t = tracker()
    feed(t, [cool(W0 + MIN, 3.0), cool(W0 + 3 * MIN, 5.0)])
    # replay of both, and the missing minute arriving late (still within the de-duplication retention)
    step = feed(t, [cool(W0 + MIN, 3.0), cool(W0 + 3 * MIN, 5.0), cool(W0 + 2 * MIN, 4.0)])
    amounts, out = step.amounts, step.out
    assert amounts == {W0 + MIN: 4.0}
    assert out.duplicates == 2
    assert len(out.readings) == 1


def test_interval_register_older_than_retention_is_refused() -> None:
    t = tracker(dedup_retention_ms=5 * MIN)
    feed(t, [cool(W0 + MIN, 3.0), cool(W0 + 10 * MIN, 5.0)])
    t.prune(now_ms=10**13)
    assert list(t.slot("dc", "cooling").recent) == [W0 + 10 * MIN]  # type: ignore[union-attr]
    # the first reading again: it may have been counted, but the tracker no longer knows -> no energy
    step = feed(t, [cool(W0 + MIN, 3.0), cool(W0 + 6 * MIN, 1.0)])
    amounts, out = step.amounts, step.out
    assert amounts == {W0 + 5 * MIN: 1.0}
    assert [e.kind for e in out.events()] == [MeterFlag.OUT_OF_ORDER]
    assert len(out.readings) == 2  # stored raw all the same


def test_restore_continues_from_stored_baseline() -> None:
    t = tracker()
    t.restore(
        [
            MeterState(site_id="dc", meter_id="facility", last_ts_ms=T0, last_value=500.0, last_seen_ms=1),
            MeterState(site_id="dc", meter_id="cooling", last_ts_ms=W0 + MIN, last_value=3.0, last_seen_ms=1),
            MeterState(site_id="dc", meter_id="gone", last_ts_ms=T0, last_value=1.0, last_seen_ms=1),
        ]
    )
    step = feed(
        t, [fac(T0 + 10_000, 502.0), cool(W0 + MIN, 3.0), cool(W0 + 30_000, 9.0), cool(W0 + 2 * MIN, 4.0)]
    )
    amounts, out = step.amounts, step.out
    # facility: 2 kWh from the stored baseline, no FIRST event; cooling: the replay is a duplicate, an
    # older reading cannot be de-duplicated after a restart and is refused; the next minute counts
    assert amounts == {W0: 2.0, W0 + MIN: 4.0}
    assert [e.kind for e in out.events()] == [MeterFlag.OUT_OF_ORDER]


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (Reading(site_id="dc", meter_id="nope", ts_ms=T0, energy_kwh=1.0), "unknown_meter"),
        (Reading(site_id="dc", meter_id="cooling", ts_ms=T0, energy_kwh=-1.0), "negative_interval_amount"),
    ],
)
def test_dead_letters(reading: Reading, reason: str) -> None:
    t = tracker()
    out = StepOutput(now_ms=123)
    t.apply_batch(ReadingBatch("dc", [reading]), out)
    assert [(d.reason, d.received_ms, d.meter_id) for d in out.dead_letters] == [
        (reason, 123, reading.meter_id)
    ]
    assert out.readings == []


def test_unknown_site_is_dead_lettered() -> None:
    t = tracker()
    out = StepOutput()
    t.apply_batch(ReadingBatch("elsewhere", [Reading(site_id="elsewhere", meter_id="m", ts_ms=T0)]), out)
    assert [d.reason for d in out.dead_letters] == ["unknown_site"]


def test_states_and_max_ts_per_step() -> None:
    t = tracker()
    out = StepOutput(now_ms=777)
    t.apply_batch(ReadingBatch("dc", [fac(T0, 100.0), fac(T0 + 10_000, 101.0), cool(T0 + 5_000, 1.0)]), out)
    _, states = t.drain(out, 777)
    assert out.site_max_ts == {"dc": T0 + 10_000}
    assert {(s.meter_id, s.last_ts_ms, s.last_value, s.last_seen_ms) for s in states} == {
        ("facility", T0 + 10_000, 101.0, 777),
        ("cooling", T0 + 5_000, 1.0, 777),
    }


def test_register_max_is_in_the_meter_unit_not_the_canonical_one() -> None:
    # A MWh register with a 100,000 MWh modulus: readings arrive in kWh (the collector normalised them).
    registry = Registry.from_text(
        """
sites:
  - id: s
    name: S
    kind: park
    meters:
      - {id: big, carrier: electricity, role: grid_import, unit: MWh, register_max: 100000}
"""
    )
    tracker = MeterTracker(registry, 60_000)
    t0 = 1_700_000_040_000
    tracker.apply(Reading(site_id="s", meter_id="big", ts_ms=t0, energy_kwh=99_999_000.0))
    intervals, events = tracker.apply(
        Reading(site_id="s", meter_id="big", ts_ms=t0 + 60_000, energy_kwh=1_000.0)
    )
    # 100,000 MWh = 100,000,000 kWh: 100,000,000 - 99,999,000 + 1,000 = 2,000 kWh over the minute
    assert sum(iv.amount for iv in intervals) == pytest.approx(2_000.0)
    assert [e.kind for e in events] == [MeterFlag.ROLLOVER]


def test_a_register_drop_is_described_as_one() -> None:
    registry = Registry.from_text(
        """
sites:
  - id: s
    name: S
    kind: park
    meters:
      - {id: m, carrier: electricity, role: grid_import, unit: kWh}
"""
    )
    tracker = MeterTracker(registry, 60_000)
    t0 = 1_700_000_040_000
    tracker.apply(Reading(site_id="s", meter_id="m", ts_ms=t0, energy_kwh=150_000.0))
    intervals, events = tracker.apply(
        Reading(site_id="s", meter_id="m", ts_ms=t0 + 60_000, energy_kwh=100_000.0)
    )
    assert sum(iv.amount for iv in intervals) == 0.0
    [event] = events
    assert event.kind is MeterFlag.REGISTER_DROP
    assert "new baseline" in event.detail


# ------------------------------------------------------------------ lifecycle (issue #3)

LIFECYCLE = Registry.from_text(
    """
sites:
  - id: s
    name: S
    kind: data_centre
    meters:
      - {id: rated, carrier: electricity, role: facility_total, unit: kWh, rated_kw: 100}
      - {id: pw, carrier: electricity, role: it_load, unit: kW, rated_kw: 50}
      - {id: iv, carrier: electricity, role: cooling, unit: kWh, register: interval, rated_kw: 60}
"""
)


def energy(meter_id: str, ts_ms: int, kwh: float) -> Reading:
    return Reading(site_id="s", meter_id=meter_id, ts_ms=ts_ms, energy_kwh=kwh)


def power(ts_ms: int, kw: float) -> Reading:
    return Reading(site_id="s", meter_id="pw", ts_ms=ts_ms, power_kw=kw)


def run(t: MeterTracker, readings: list[Reading]) -> tuple[list[MeterInterval], StepOutput]:
    out = StepOutput(now_ms=5)
    t.apply_batch(ReadingBatch("s", readings), out)
    intervals, _ = t.drain(out, 5)
    return intervals, out


def test_glitch_spike_and_register_jump_on_the_live_path() -> None:
    t = MeterTracker(LIFECYCLE, MIN)
    # 100 kW rated: at most 2.5 kWh a minute. Spike at W0+2m, back at W0+3m; jump at W0+5m, confirmed
    values = [1000.0, 1001.0, 9000.0, 1003.0, 1004.0, 7000.0, 7001.0]
    intervals, out = run(t, [energy("rated", W0 + i * MIN, v) for i, v in enumerate(values)])
    amounts = {iv.window_start_ms: iv.amount for iv in intervals}
    assert amounts == pytest.approx(
        {W0: 1.0, W0 + MIN: 1.0, W0 + 2 * MIN: 1.0, W0 + 3 * MIN: 1.0, W0 + 5 * MIN: 1.0}
    )
    assert [(e.kind, e.ts_ms) for e in out.events()] == [
        (MeterFlag.FIRST, W0),
        (MeterFlag.GLITCH, W0 + 2 * MIN),
        (MeterFlag.GLITCH, W0 + 5 * MIN),
        (MeterFlag.GLITCH, W0 + 6 * MIN),
    ]
    assert "register jump" in out.events()[3].detail
    assert len(out.readings) == 7  # glitches are stored (flagged), not dropped
    assert not any(iv.estimated for iv in intervals)


def test_held_glitch_replay_is_a_duplicate_and_older_readings_are_out_of_order() -> None:
    t = MeterTracker(LIFECYCLE, MIN)
    run(t, [energy("rated", W0, 1000.0), energy("rated", W0 + 2 * MIN, 9000.0)])  # held glitch
    intervals, out = run(
        t,
        [
            energy("rated", W0 + 2 * MIN, 9000.0),  # replay of the glitch: duplicate
            energy("rated", W0, 1000.0),  # replay of the baseline: duplicate
            energy("rated", W0 + MIN, 1001.0),  # between baseline and glitch: out of order
        ],
    )
    assert intervals == []
    assert out.duplicates == 2
    assert [e.kind for e in out.events()] == [MeterFlag.OUT_OF_ORDER]
    assert out.rederive == [("s", "rated", W0 + MIN)]


def test_power_meter_is_integrated_and_estimated() -> None:
    t = MeterTracker(LIFECYCLE, MIN)
    intervals, out = run(t, [power(W0 + 30_000, 10.0), power(W0 + 150_000, 20.0)])
    # (10 + 20) / 2 kW x 120 s = 0.5 kWh: 30 s, 60 s, 30 s of it in three minutes
    assert {iv.window_start_ms: iv.amount for iv in intervals} == pytest.approx(
        {W0: 0.125, W0 + MIN: 0.25, W0 + 2 * MIN: 0.125}
    )
    assert all(iv.estimated for iv in intervals)
    assert [e.kind for e in out.events()] == [MeterFlag.FIRST]
    # the state survives a restart; a sample above 1.5 x 50 kW is ignored
    slot = t.slot("s", "pw")
    assert slot is not None
    t2 = MeterTracker(LIFECYCLE, MIN)
    t2.restore([slot.state(0)])
    intervals, out = run(t2, [power(W0 + 180_000, 80.0), power(W0 + 210_000, 20.0)])
    # 20 kW from 150 s to 210 s = 1/3 kWh: 1/6 in minute 2, 1/6 in minute 3
    assert {iv.window_start_ms: iv.amount for iv in intervals} == pytest.approx(
        {W0 + 2 * MIN: 1 / 6, W0 + 3 * MIN: 1 / 6}
    )
    assert [e.kind for e in out.events()] == [MeterFlag.GLITCH]


def test_power_gap_and_out_of_order_sample() -> None:
    t = MeterTracker(LIFECYCLE, MIN)
    intervals, out = run(t, [power(W0, 10.0), power(W0 + 16 * MIN, 10.0), power(W0 + 5 * MIN, 10.0)])
    assert intervals == []
    assert [e.kind for e in out.events()] == [MeterFlag.FIRST, MeterFlag.GAP, MeterFlag.OUT_OF_ORDER]
    assert out.rederive == [("s", "pw", W0 + 5 * MIN)]
    assert len(out.readings) == 3


def test_interval_glitch_and_out_of_order_beyond_dedup() -> None:
    t = MeterTracker(LIFECYCLE, MIN, dedup_retention_ms=5 * MIN)
    # 60 kW rated: 1.5 kWh a minute at most
    intervals, out = run(t, [energy("iv", W0 + MIN, 1.0), energy("iv", W0 + 2 * MIN, 4.0)])
    assert {iv.window_start_ms: iv.amount for iv in intervals} == {W0: 1.0}
    assert [e.kind for e in out.events()] == [MeterFlag.GLITCH]
    run(t, [energy("iv", W0 + 20 * MIN, 1.0)])
    t.prune(now_ms=10**13)
    intervals, out = run(t, [energy("iv", W0 + 3 * MIN, 1.0), energy("iv", W0 + 4 * MIN, 1.0)])
    assert intervals == []
    assert [e.kind for e in out.events()] == [MeterFlag.OUT_OF_ORDER]  # aggregated: one event
    assert out.rederive == [("s", "iv", W0 + 3 * MIN), ("s", "iv", W0 + 4 * MIN)]


def test_cumulative_out_of_order_is_listed_for_rederivation() -> None:
    t = tracker()
    _, out = run_dc(
        t, [fac(T0, 100.0), fac(T0 + 20_000, 102.0), fac(T0 + 10_000, 101.0), fac(T0 + 20_000, 102.0)]
    )
    assert out.rederive == [("dc", "facility", T0 + 10_000)]  # not the duplicate
    assert out.duplicates == 1


def run_dc(t: MeterTracker, readings: list[Reading]) -> tuple[list[MeterInterval], StepOutput]:
    out = StepOutput()
    t.apply_batch(ReadingBatch("dc", readings), out)
    intervals, _ = t.drain(out, 0)
    return intervals, out


def test_replacement_on_the_live_path() -> None:
    t = tracker()
    t.add_replacements(
        [
            MeterReplacement(
                site_id="dc", meter_id="facility", ts_ms=W0 + 90_000, old_final=12_346.5, new_initial=2.0
            ),
            MeterReplacement(site_id="dc", meter_id="nope", ts_ms=W0, old_final=1.0, new_initial=0.0),
        ]
    )
    intervals, out = run_dc(t, [fac(W0 + 30_000, 12_345.0), fac(W0 + 150_000, 3.5), fac(W0 + 210_000, 4.5)])
    # 1.5 on the old meter over [30 s, 90 s), 1.5 on the new one over [90 s, 150 s), then 1.0
    amounts = {iv.window_start_ms: iv.amount for iv in intervals}
    assert amounts == pytest.approx({W0: 0.75, W0 + MIN: 1.5, W0 + 2 * MIN: 0.75 + 0.5, W0 + 3 * MIN: 0.5})
    assert [e.kind for e in out.events()] == [MeterFlag.FIRST, MeterFlag.REPLACEMENT]


def test_replacement_recorded_later_supersedes_and_applies_ahead_only() -> None:
    t = tracker()
    run_dc(t, [fac(W0, 500.0), fac(W0 + MIN, 501.0)])
    rep = MeterReplacement(
        site_id="dc", meter_id="facility", ts_ms=W0 + 90_000, old_final=9.0, new_initial=0.0
    )
    fixed = MeterReplacement(
        site_id="dc", meter_id="facility", ts_ms=W0 + 90_000, old_final=503.0, new_initial=0.0
    )
    t.add_replacements([rep])
    t.add_replacements([fixed])  # same time: the correction wins
    intervals, out = run_dc(t, [fac(W0 + 2 * MIN, 1.0)])
    # 503 - 501 over [60 s, 90 s) and 1 - 0 over [90 s, 120 s): all in minute 1
    assert {iv.window_start_ms: iv.amount for iv in intervals} == pytest.approx({W0 + MIN: 3.0})
    assert [e.kind for e in out.events()] == [MeterFlag.REPLACEMENT]
