"""Properties of the meter lifecycle rules over generated reading sequences (resets, rollovers, glitches,
register jumps, power and interval meters, replacements):

* re-derivation (``derive_intervals``) gives exactly what the live tracker gives for the same readings
  in time order: amounts (bit for bit), estimated windows and events;
* it does not depend on the order of its input nor on duplicated readings;
* energy is conserved: the windows add up to the register's increase, less what glitches removed.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peakwatch.config import Registry
from peakwatch.domain.derivation import derive_intervals
from peakwatch.domain.energy import MeterRegister
from peakwatch.domain.models import (
    Carrier,
    Meter,
    MeterFlag,
    MeterReplacement,
    Reading,
    ReadingBatch,
    Register,
    Role,
    Site,
    SiteKind,
)
from peakwatch.domain.outcomes import Note
from peakwatch.domain.power import MAX_POWER_GAP_MS
from processor.meters import MeterTracker, StepOutput

MIN = 60_000
T0 = 1_700_000_040_000
ALL = {"from_ms": 0, "to_ms": 1 << 62}
REGISTER_MAX = 10_000.0
PROFILE = settings(
    max_examples=int(os.environ.get("PEAKWATCH_TEST_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Scenario:
    meter: Meter
    readings: list[Reading]
    """Sorted by time, one per timestamp."""
    replacements: list[MeterReplacement]


def _meter(register: Register, rated_kw: float | None, register_max: float | None) -> Meter:
    return Meter(
        id="m",
        site_id="s",
        carrier=Carrier.ELECTRICITY,
        role=Role.GRID_IMPORT,
        register=register,
        unit="kW" if register is Register.POWER else "kWh",
        register_max=register_max,
        rated_kw=rated_kw,
    )


_gaps = st.one_of(st.integers(1, 2 * MIN), st.integers(1, 20 * MIN), st.sampled_from([MIN, 15 * MIN]))
_amount = st.floats(0, 50, allow_nan=False, allow_infinity=False)


@st.composite
def times(draw: st.DrawFn) -> list[int]:
    gaps = draw(st.lists(_gaps, min_size=1, max_size=40))
    ts = [T0 + draw(st.integers(0, MIN))]
    for g in gaps[1:]:
        ts.append(ts[-1] + g)
    return ts


@st.composite
def cumulative_values(draw: st.DrawFn, n: int, register_max: float | None, monotone: bool) -> list[float]:
    """A register that mostly counts up, with spikes, jumps, resets, drops and rollovers."""
    ops = (
        ["inc", "inc", "inc", "spike", "jump"]
        if monotone
        else ["inc", "inc", "spike", "jump", "reset", "drop"]
    )
    if register_max is not None and not monotone:
        ops.append("rollover")
    value = draw(st.floats(0, 9_000 if register_max else 1e6, allow_nan=False))
    values = [value]
    for _ in range(n - 1):
        op = draw(st.sampled_from(ops))
        if op == "inc":
            value += draw(_amount)
            if register_max is not None and value >= register_max:
                value -= register_max
            values.append(value)
        elif op == "spike":  # one implausible value, then back (not in a monotone sequence)
            values.append(value + draw(st.floats(1_000, 5_000)))
            if not monotone:
                continue
            value = values[-1]
        elif op == "jump":  # the register moves for good
            value += draw(st.floats(1_000, 5_000))
            if register_max is not None and value >= register_max:
                value = register_max - 1
            values.append(value)
        elif op == "reset":
            value = draw(st.floats(0, 5))
            values.append(value)
        elif op == "drop":
            value *= 0.5
            values.append(value)
        else:  # rollover from the top of the register
            value = draw(st.floats(0, 5))
            values[-1] = max(values[-1], REGISTER_MAX - draw(st.floats(0.01, 5)))
            values.append(value)
    return values[:n]


@st.composite
def scenarios(draw: st.DrawFn, monotone: bool = False) -> Scenario:
    register = Register.CUMULATIVE if monotone else draw(st.sampled_from(list(Register)))
    rated = draw(st.one_of(st.none(), st.sampled_from([10.0, 100.0, 1_000.0])))
    register_max = (
        draw(st.sampled_from([None, REGISTER_MAX]))
        if register is Register.CUMULATIVE and not monotone
        else None
    )
    ts = draw(times())
    m = _meter(register, rated, register_max)
    replacements: list[MeterReplacement] = []
    if register is Register.CUMULATIVE:
        values = draw(cumulative_values(len(ts), register_max, monotone))
        readings = [
            Reading(site_id="s", meter_id="m", ts_ms=t, energy_kwh=v) for t, v in zip(ts, values, strict=True)
        ]
        if not monotone and len(ts) > 1:
            for _ in range(draw(st.integers(0, 3))):
                i = draw(st.integers(1, len(ts) - 1))
                at = draw(st.integers(ts[i - 1] + 1, ts[i]))
                replacements.append(
                    MeterReplacement(
                        site_id="s",
                        meter_id="m",
                        ts_ms=at,
                        old_final=draw(st.floats(0, 1e6, allow_nan=False)),
                        new_initial=draw(st.floats(0, 100, allow_nan=False)),
                    )
                )
    elif register is Register.POWER:
        kw = st.one_of(st.floats(0, 2_000, allow_nan=False), st.floats(-10, 0, allow_nan=False))
        readings = [Reading(site_id="s", meter_id="m", ts_ms=t, power_kw=draw(kw)) for t in ts]
    else:
        kwh = st.one_of(_amount, st.floats(-1, 0, allow_nan=False, exclude_max=True), st.floats(0, 1e4))
        readings = [Reading(site_id="s", meter_id="m", ts_ms=t, energy_kwh=draw(kwh)) for t in ts]
    return Scenario(m, readings, replacements)


def _track(s: Scenario, cuts: list[int]) -> tuple[dict[int, float], set[int], StepOutput]:
    """The readings through a fresh tracker, in order, in one processor step of several batches."""
    registry = Registry([Site(id="s", name="S", kind=SiteKind.PARK)], [s.meter])
    tracker = MeterTracker(registry, MIN)
    tracker.add_replacements(s.replacements)
    out = StepOutput()
    bounds = sorted({0, len(s.readings), *(c % (len(s.readings) + 1) for c in cuts)})
    for a, b in itertools.pairwise(bounds):
        tracker.apply_batch(ReadingBatch("s", s.readings[a:b]), out)
    intervals, _ = tracker.drain(out, 0)
    amounts = {iv.window_start_ms: iv.amount for iv in intervals}
    assert len(amounts) == len(intervals)  # one row per window in one step
    return amounts, {iv.window_start_ms for iv in intervals if iv.estimated}, out


@PROFILE
@given(scenarios(), st.lists(st.integers(0, 100), max_size=4))
def test_rederivation_equals_the_live_path(s: Scenario, cuts: list[int]) -> None:
    amounts, estimated, out = _track(s, cuts)
    derived = derive_intervals(s.meter, s.readings, s.replacements, MIN, **ALL)
    assert derived.amounts == amounts  # exactly: same operations in the same order
    assert derived.estimated == estimated
    assert derived.events == out.events()
    assert out.rederive == []
    assert out.duplicates == 0
    negatives = [r for r in s.readings if s.meter.register is Register.INTERVAL and (r.energy_kwh or 0.0) < 0]
    assert len(out.dead_letters) == len(negatives)
    assert all(a >= 0 for a in amounts.values())


@PROFILE
@given(scenarios(), st.randoms(use_true_random=False), st.data())
def test_rederivation_ignores_order_and_duplicates(s: Scenario, rnd: object, data: st.DataObject) -> None:
    assert isinstance(rnd, random.Random)
    sorted_ = derive_intervals(s.meter, s.readings, s.replacements, MIN, **ALL)
    shuffled = list(s.readings) + data.draw(st.lists(st.sampled_from(s.readings), max_size=10))
    rnd.shuffle(shuffled)
    # replacements keep their recording order: a later record at the same time corrects an earlier one
    reps = list(s.replacements) * 2
    again = derive_intervals(s.meter, shuffled, reps, MIN, **ALL)
    assert again == sorted_
    # a sub-range gives the same amounts for its windows
    lo = data.draw(st.integers(T0 - MIN, s.readings[-1].ts_ms + MIN))
    hi = data.draw(st.integers(lo, s.readings[-1].ts_ms + 2 * MIN))
    part = derive_intervals(s.meter, shuffled, reps, MIN, from_ms=lo, to_ms=hi)
    assert part.amounts == {w: a for w, a in sorted_.amounts.items() if lo <= w < hi}


@PROFILE
@given(scenarios(monotone=True))
def test_windows_add_up_to_the_register_increase_less_glitches(s: Scenario) -> None:
    reg = MeterRegister(s.meter)
    pending: dict[int, float] = {}
    notes: list[Note] = []
    for r in s.readings:
        assert r.energy_kwh is not None
        reg.account(r.ts_ms, r.energy_kwh, pending, MIN, notes)
    first = s.readings[0].energy_kwh
    assert first is not None
    assert reg.last_value is not None
    # a register jump moved the baseline from `previous` to `value` without counting it; spikes that
    # came back cost nothing; an unconfirmed glitch at the end leaves the baseline where it was
    jumps = sum(
        (n[4] or 0.0) - (n[3] or 0.0) for n in notes if n[0] is MeterFlag.GLITCH and "register jump" in n[2]
    )
    total = sum(pending.values())
    assert math.isclose(total, reg.last_value - first - jumps, rel_tol=1e-9, abs_tol=1e-6)
    if s.meter.rated_kw is None:
        last = s.readings[-1].energy_kwh
        assert last is not None
        assert math.isclose(total, last - first, rel_tol=1e-9, abs_tol=1e-6)
        assert [n[0] for n in notes] == [MeterFlag.FIRST]


@PROFILE
@given(times(), st.floats(0, 500, allow_nan=False))
def test_constant_power_integrates_to_power_times_covered_time(ts: list[int], kw: float) -> None:
    m = _meter(Register.POWER, None, None)
    readings = [Reading(site_id="s", meter_id="m", ts_ms=t, power_kw=kw) for t in ts]
    d = derive_intervals(m, readings, (), MIN, **ALL)
    covered = sum(b - a for a, b in itertools.pairwise(ts) if b - a <= MAX_POWER_GAP_MS)
    assert math.isclose(sum(d.amounts.values()), kw * covered / 3_600_000, rel_tol=1e-9, abs_tol=1e-9)
    assert d.estimated == set(d.amounts)
    gaps = sum(1 for a, b in itertools.pairwise(ts) if b - a > MAX_POWER_GAP_MS)
    assert [e.kind for e in d.events].count(MeterFlag.GAP) == gaps
