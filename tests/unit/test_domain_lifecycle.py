"""Meter lifecycle rules (peakwatch.domain.energy): glitches, register jumps, power integration, gaps and
meter replacements, checked with hand-computed vectors through ``derive_intervals``."""

from __future__ import annotations

import pytest

from peakwatch.domain.derivation import Derivation, derive_intervals
from peakwatch.domain.energy import MeterRegister
from peakwatch.domain.models import (
    Carrier,
    Meter,
    MeterFlag,
    MeterReplacement,
    Reading,
    Register,
    Role,
)
from peakwatch.domain.outcomes import GLITCH_MARGIN, Outcome
from peakwatch.domain.power import MAX_POWER_GAP_MS, trapezoid_kwh
from peakwatch.domain.replacements import ReplacementPart, across_replacements

MIN = 60_000
W0 = 1_700_000_040_000  # a minute boundary
W = [W0 + i * MIN for i in range(30)]
"""W[i]: start of the i-th minute after W0."""
ALL = {"from_ms": 0, "to_ms": 1 << 62}


def meter(register: Register = Register.CUMULATIVE, unit: str = "kWh", **kw: float) -> Meter:
    return Meter(
        id="m",
        site_id="s",
        carrier=Carrier.ELECTRICITY,
        role=Role.GRID_IMPORT,
        register=register,
        unit=unit,
        **kw,  # type: ignore[arg-type]
    )


def energy(ts_ms: int, kwh: float) -> Reading:
    return Reading(site_id="s", meter_id="m", ts_ms=ts_ms, energy_kwh=kwh)


def power(ts_ms: int, kw: float) -> Reading:
    return Reading(site_id="s", meter_id="m", ts_ms=ts_ms, power_kw=kw)


def rep(ts_ms: int, old_final: float, new_initial: float) -> MeterReplacement:
    return MeterReplacement(
        site_id="s", meter_id="m", ts_ms=ts_ms, old_final=old_final, new_initial=new_initial
    )


def derive(m: Meter, readings: list[Reading], reps: tuple[MeterReplacement, ...] = ()) -> Derivation:
    return derive_intervals(m, readings, reps, MIN, **ALL)


def kinds(d: Derivation) -> list[MeterFlag]:
    return [e.kind for e in d.events]


# ---------------------------------------------------------------------------------------- glitches

RATED_100 = meter(rated_kw=100.0)
"""100 kW rated x 1.5 = 150 kW: at most 2.5 kWh per minute."""


def test_glitch_spike_counts_nothing_and_keeps_the_baseline() -> None:
    d = derive(
        RATED_100,
        [energy(W[i], v) for i, v in enumerate([1000.0, 1001.0, 5000.0, 1003.0, 1004.0])],
    )
    # 1001 -> 5000 in a minute is 239,940 kW: a spike. 1001 -> 1003 over [W1, W3) is 60 kW: 1 + 1
    assert d.amounts == pytest.approx({W[0]: 1.0, W[1]: 1.0, W[2]: 1.0, W[3]: 1.0})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.GLITCH]
    glitch = d.events[1]
    assert (glitch.ts_ms, glitch.previous, glitch.value) == (W[2], 1001.0, 5000.0)
    assert "counted 0, baseline kept at 1001.0" in glitch.detail
    assert d.estimated == set()


def test_register_jump_is_rebaselined_at_the_glitch_value() -> None:
    d = derive(
        RATED_100,
        [energy(W[i], v) for i, v in enumerate([1000.0, 1001.0, 5001.0, 5002.0, 5004.0])],
    )
    # 5002 is implausible against 1001 but 1 kWh after the held 5001: the register jumped at W2.
    # [W1, W2) counts 0 (the jump), [W2, W3) counts 5002 - 5001 = 1, [W3, W4) counts 2.
    assert d.amounts == pytest.approx({W[0]: 1.0, W[2]: 1.0, W[3]: 2.0})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.GLITCH, MeterFlag.GLITCH]
    jump = d.events[2]
    assert "register jump" in jump.detail
    assert (jump.ts_ms, jump.previous, jump.value) == (W[3], 1001.0, 5001.0)


def test_a_lower_second_glitch_is_held_instead() -> None:
    d = derive(
        RATED_100,
        [energy(W[0], 1000.0), energy(W[1], 5000.0), energy(W[2], 3000.0), energy(W[3], 3001.0)],
    )
    # 3000 < the held 5000: not a jump, held in its place; 3001 is 1 kWh after it: the jump is to 3000
    assert d.amounts == pytest.approx({W[2]: 1.0})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.GLITCH, MeterFlag.GLITCH, MeterFlag.GLITCH]
    assert d.events[3].value == 3000.0


def test_an_implausible_reset_is_a_glitch() -> None:
    readings = [energy(W[0], 1000.0), energy(W[1], 50.0), energy(W[2], 50.5)]
    # unrated: 1000 -> 50 is a reset (50 <= 10 % of 1000), 50 kWh counted, then 0.5
    plain = derive(meter(), readings)
    assert plain.amounts == pytest.approx({W[0]: 50.0, W[1]: 0.5})
    assert kinds(plain) == [MeterFlag.FIRST, MeterFlag.RESET]
    # rated 100 kW: 50 kWh in a minute is 3,000 kW, so it was no reset; 50.5 confirms a jump to 50
    rated = derive(RATED_100, readings)
    assert rated.amounts == pytest.approx({W[1]: 0.5})
    assert kinds(rated) == [MeterFlag.FIRST, MeterFlag.GLITCH, MeterFlag.GLITCH]
    assert rated.events[1].detail.startswith("reset of 50.0 in 60 s")


def test_rated_power_in_time_is_not_a_glitch() -> None:
    # exactly 1.5 x 100 kW for 2 minutes = 5 kWh: still plausible
    d = derive(RATED_100, [energy(W[0], 0.0), energy(W[2], 5.0)])
    assert d.amounts == pytest.approx({W[0]: 2.5, W[1]: 2.5})
    assert kinds(d) == [MeterFlag.FIRST]


def test_interval_glitch_counts_zero() -> None:
    m = meter(Register.INTERVAL, rated_kw=60.0)  # 90 kW: 1.5 kWh per minute
    d = derive(
        m,
        [
            energy(W[1], 1.0),  # first: no previous, not checked
            energy(W[2], 1.2),
            energy(W[3], 5.0),  # 5 kWh in one minute: glitch
            energy(W[5], 2.9),  # 2 minutes since W3: up to 3 kWh
        ],
    )
    assert d.amounts == {W[0]: 1.0, W[1]: 1.2, W[4]: 2.9}
    assert kinds(d) == [MeterFlag.GLITCH]
    assert (d.events[0].ts_ms, d.events[0].value) == (W[3], 5.0)


def test_interval_glitch_check_uses_the_previous_reading_in_time() -> None:
    reg = MeterRegister(meter(Register.INTERVAL, rated_kw=60.0))
    pending: dict[int, float] = {}
    notes: list[tuple[MeterFlag, int, str, float | None, float | None]] = []
    reg.account(W[1], 1.0, pending, MIN, notes)
    reg.account(W[4], 1.0, pending, MIN, notes)
    # a late fill-in at W3: one minute after W1? no, two; its previous reading is W1 -> up to 3 kWh
    assert reg.account(W[3], 2.9, pending, MIN, notes) is Outcome.ACCEPTED
    assert pending == {W[0]: 1.0, W[3]: 1.0, W[2]: 2.9}
    assert notes == []


# ---------------------------------------------------------------------------------- power meters


def test_trapezoid_over_window_boundaries_is_estimated() -> None:
    m = meter(Register.POWER, unit="kW")
    d = derive(m, [power(W0 + 30_000, 10.0), power(W0 + 150_000, 20.0), power(W0 + 210_000, 20.0)])
    # (10 + 20) / 2 kW x 120 s = 0.5 kWh over [30 s, 150 s): 30 s, 60 s, 30 s -> 0.125, 0.25, 0.125
    # 20 kW x 60 s = 1/3 kWh over [150 s, 210 s): 1/6 in minute 2, 1/6 in minute 3
    assert d.amounts == pytest.approx({W[0]: 0.125, W[1]: 0.25, W[2]: 0.125 + 1 / 6, W[3]: 1 / 6})
    assert d.estimated == {W[0], W[1], W[2], W[3]}
    assert kinds(d) == [MeterFlag.FIRST]


def test_trapezoid_kwh() -> None:
    assert trapezoid_kwh(10.0, 20.0, 120_000) == pytest.approx(0.5)
    assert trapezoid_kwh(3.0, 3.0, 3_600_000) == 3.0


def test_power_gap_gives_no_energy() -> None:
    m = meter(Register.POWER, unit="kW")
    d = derive(m, [power(W[0], 10.0), power(W[16], 10.0), power(W[17], 10.0)])
    # 16 minutes without a sample: nothing for [W0, W16); then 10 kW x 1 min = 1/6 kWh
    assert d.amounts == pytest.approx({W[16]: 1 / 6})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.GAP]
    assert d.events[1].ts_ms == W[16]


def test_power_gap_of_exactly_the_limit_is_integrated() -> None:
    assert MAX_POWER_GAP_MS == 15 * MIN
    d = derive(meter(Register.POWER, unit="kW"), [power(W[0], 10.0), power(W[15], 10.0)])
    # 10 kW x 15 min = 2.5 kWh, 1/6 kWh in each minute
    assert d.amounts == pytest.approx({W[i]: 1 / 6 for i in range(15)})
    assert sum(d.amounts.values()) == pytest.approx(2.5)


@pytest.mark.parametrize("bad", [100.0, -5.0], ids=["above-rated", "negative"])
def test_power_glitch_sample_is_ignored(bad: float) -> None:
    m = meter(Register.POWER, unit="kW", rated_kw=50.0)  # samples above 75 kW are glitches
    d = derive(m, [power(W[0], 40.0), power(W[1], bad), power(W[2], 40.0)])
    # the glitch is skipped: 40 kW for 2 minutes = 4/3 kWh over [W0, W2)
    assert d.amounts == pytest.approx({W[0]: 2 / 3, W[1]: 2 / 3})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.GLITCH]
    assert "ignored" in d.events[1].detail


def test_power_sample_at_the_glitch_limit_is_kept() -> None:
    m = meter(Register.POWER, unit="kW", rated_kw=50.0)
    d = derive(m, [power(W[0], 50.0 * GLITCH_MARGIN), power(W[1], 75.0)])
    assert d.amounts == pytest.approx({W[0]: 1.25})


# --------------------------------------------------------------------------------- replacements


def test_replacement_between_two_readings() -> None:
    m = meter()
    readings = [energy(W0 + 30_000, 12_345.0), energy(W0 + 150_000, 3.5)]
    # without the record, 12,345 -> 3.5 looks like a reset: 3.5 counted
    assert derive(m, readings).amounts == pytest.approx({W[0]: 0.875, W[1]: 1.75, W[2]: 0.875})
    # old meter 12,345 -> 12,346.5 over [30 s, 90 s): 0.75 + 0.75; new meter 2.0 -> 3.5 over
    # [90 s, 150 s): 0.75 + 0.75
    d = derive(m, readings, (rep(W0 + 90_000, 12_346.5, 2.0),))
    assert d.amounts == pytest.approx({W[0]: 0.75, W[1]: 1.5, W[2]: 0.75})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.REPLACEMENT]
    event = d.events[1]
    assert (event.ts_ms, event.previous, event.value) == (W0 + 90_000, 12_346.5, 2.0)
    assert "negative" not in event.detail


def test_replacement_with_a_negative_part_counts_it_zero() -> None:
    readings = [energy(W0 + 30_000, 12_345.0), energy(W0 + 150_000, 3.5)]
    # old_final below the last reading (a typo): -1 over [30 s, 90 s) counts 0 (like a zero delta, the
    # windows it covers still get a row: the meter reported for them)
    d = derive(meter(), readings, (rep(W0 + 90_000, 12_344.0, 2.0),))
    assert d.amounts == pytest.approx({W[0]: 0.0, W[1]: 0.75, W[2]: 0.75})
    assert "gives -1.0, negative: counted 0" in d.events[1].detail


def test_replacement_at_the_reading_time() -> None:
    # the new meter's first reading is taken at the swap: 1.5 over [30 s, 120 s), 0 at the swap
    d = derive(
        meter(),
        [energy(W0 + 30_000, 12_345.0), energy(W0 + 120_000, 2.0), energy(W0 + 180_000, 3.0)],
        (rep(W0 + 120_000, 12_346.5, 2.0),),
    )
    assert d.amounts == pytest.approx({W[0]: 0.5, W[1]: 1.0, W[2]: 1.0})


def test_replacement_before_the_first_reading_is_ignored() -> None:
    d = derive(meter(), [energy(W[1], 10.0), energy(W[2], 11.0)], (rep(W[0], 99.0, 0.0),))
    assert d.amounts == {W[1]: 1.0}


def test_across_replacements_chain() -> None:
    parts = across_replacements(0, 100.0, 300, 7.0, [rep(100, 110.0, 0.0), rep(200, 50.0, 5.0)])
    assert parts == [
        ReplacementPart(0, 100, 10.0, 10.0),
        ReplacementPart(100, 200, 50.0, 50.0),
        ReplacementPart(200, 300, 2.0, 2.0),
    ]
    [_, after] = across_replacements(0, 100.0, 300, 1.0, [rep(100, 110.0, 2.0)])
    assert after == ReplacementPart(100, 300, -1.0, 0.0)


# ------------------------------------------------------------------------------- low glitches

TOUR = [106_680.0, 123.4, 106_715.0, 106_750.0]
"""README tour: a facility register near 106,680 kWh, one low reading, then back at the old level."""
RATED_3000 = meter(rated_kw=3000.0)
"""3,000 kW rated x 1.5 = 4,500 kW: at most 75 kWh per minute."""


@pytest.mark.parametrize(
    ("m", "events"),
    [
        # unrated: 123.4 (<= 10 % of 106,680) is a provisional reset, taken back by 106,715
        (meter(), [MeterFlag.FIRST, MeterFlag.RESET, MeterFlag.GLITCH]),
        # rated: 123.4 kWh in a minute is 7,404 kW > 4,500: a glitch at once, the baseline stays
        (RATED_3000, [MeterFlag.FIRST, MeterFlag.GLITCH]),
    ],
    ids=["unrated", "rated"],
)
def test_the_tour_low_reading_is_a_glitch_not_a_reset(m: Meter, events: list[MeterFlag]) -> None:
    d = derive(m, [energy(W[i], v) for i, v in enumerate(TOUR)])
    # as if 123.4 never came: 106,715 - 106,680 = 35 over [W0, W2) = 17.5 + 17.5; then
    # 106,750 - 106,715 = 35 in [W2, W3). Total 70 = 106,750 - 106,680.
    assert d.amounts == pytest.approx({W[0]: 17.5, W[1]: 17.5, W[2]: 35.0})
    assert kinds(d) == events
    assert d.events[-1].ts_ms == W[1]  # flagged at the low reading
    assert d.events[-1].value == 123.4


def test_the_tour_glitch_live_takes_back_the_reset() -> None:
    reg, notes = MeterRegister(meter()), []  # type: ignore[var-annotated]
    pending: dict[int, float] = {}
    assert reg.account(W[0], 106_680.0, pending, MIN, notes) is Outcome.ACCEPTED
    assert reg.account(W[1], 123.4, pending, MIN, notes) is Outcome.ACCEPTED
    # provisional reset: 123.4 (<= 10 % of 106,680 = 10,668) counted over [W0, W1)
    assert pending == {W[0]: 123.4}
    assert [n[0] for n in notes] == [MeterFlag.FIRST, MeterFlag.RESET]
    taken: dict[int, float] = {}  # the next step's amounts (W0 has been written already)
    assert reg.account(W[2], 106_715.0, taken, MIN, notes) is Outcome.RETRACTED
    # -123.4 back to W0, then 35 over [W0, W2): W0 = -123.4 + 17.5 = -105.9, W1 = 17.5
    assert taken == pytest.approx({W[0]: -105.9, W[1]: 17.5})
    assert reg.retract_ts == W[0]
    assert (reg.last_ts, reg.last_value) == (W[2], 106_715.0)
    # the written 123.4 plus the correction: 123.4 - 105.9 = 17.5, the glitch-free amount
    assert pending[W[0]] + taken[W[0]] == pytest.approx(17.5)


def test_a_small_low_glitch_under_rated_power_is_taken_back() -> None:
    # rated 3,000 kW: 5 kWh in a minute (300 kW) is a plausible reset, so it counts 5 for now;
    # 106,715 is 35 above 106,680 in 2 minutes (1,050 kW <= 4,500): the 5 is taken back, 17.5 + 17.5
    d = derive(RATED_3000, [energy(W[0], 106_680.0), energy(W[1], 5.0), energy(W[2], 106_715.0)])
    assert d.amounts == pytest.approx({W[0]: 17.5, W[1]: 17.5})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.RESET, MeterFlag.GLITCH]


def test_a_real_reset_keeps_counting_from_zero() -> None:
    d = derive(meter(), [energy(W[i], v) for i, v in enumerate([106_680.0, 0.4, 35.4, 70.4])])
    # 0.4 counted as the reset over [W0, W1); 35.4 < 106,680 confirms it: 35 + 35 after
    assert d.amounts == pytest.approx({W[0]: 0.4, W[1]: 35.0, W[2]: 35.0})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.RESET]


def test_a_register_drop_contradicted_counts_the_whole_interval() -> None:
    # 60,000 is 56 % of 106,680: a register drop (0 counted); 106,715 contradicts it: 35 over [W0, W2)
    d = derive(meter(), [energy(W[0], 106_680.0), energy(W[1], 60_000.0), energy(W[2], 106_715.0)])
    assert d.amounts == pytest.approx({W[0]: 17.5, W[1]: 17.5})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.REGISTER_DROP, MeterFlag.GLITCH]


def test_rollover_real_and_glitch() -> None:
    m = meter(register_max=1_000_000.0)
    real = derive(m, [energy(W[0], 999_990.0), energy(W[1], 5.0), energy(W[2], 20.0)])
    # 1,000,000 - 999,990 + 5 = 15 over [W0, W1), then 20 - 5 = 15
    assert real.amounts == pytest.approx({W[0]: 15.0, W[1]: 15.0})
    assert kinds(real) == [MeterFlag.FIRST, MeterFlag.ROLLOVER]
    glitch = derive(m, [energy(W[0], 999_990.0), energy(W[1], 5.0), energy(W[2], 999_995.0)])
    # 999,995 is back above 999,990: the 15 taken back, 5 over [W0, W2) = 2.5 + 2.5
    assert glitch.amounts == pytest.approx({W[0]: 2.5, W[1]: 2.5})
    assert kinds(glitch) == [MeterFlag.FIRST, MeterFlag.ROLLOVER, MeterFlag.GLITCH]


def test_a_glitch_then_a_real_reset() -> None:
    values = [106_680.0, 123.4, 106_715.0, 0.5, 35.5]
    d = derive(meter(), [energy(W[i], v) for i, v in enumerate(values)])
    # 17.5 + 17.5 (glitch taken back), 0.5 (reset over [W2, W3)), 35.5 - 0.5 = 35 confirms it
    assert d.amounts == pytest.approx({W[0]: 17.5, W[1]: 17.5, W[2]: 0.5, W[3]: 35.0})
    assert kinds(d) == [MeterFlag.FIRST, MeterFlag.RESET, MeterFlag.GLITCH, MeterFlag.RESET]


def test_a_glitch_with_an_out_of_order_reading_in_its_span() -> None:
    readings = [energy(W[0], 106_680.0), energy(W[1], 123.4), energy(W[2], 106_715.0)]
    readings.insert(2, energy(W[0] + 30_000, 106_690.0))  # arrives late, belongs before the glitch
    d = derive(meter(), readings)
    # 10 over [W0, W0+30s); glitch taken back; 106,715 - 106,690 = 25 over [W0+30s, W2) (90 s):
    # W0 gets 25 x 30/90 = 8.333..., W1 25 x 60/90 = 16.666...; W0 = 10 + 8.333... = 18.333...
    assert d.amounts == pytest.approx({W[0]: 10 + 25 / 3, W[1]: 50 / 3})
    assert kinds(d)[-1] is MeterFlag.GLITCH


def test_a_restarted_register_re_establishes_the_pending_drop() -> None:
    reg, notes = MeterRegister(meter()), []  # type: ignore[var-annotated]
    pending: dict[int, float] = {}
    reg.restore(W[1], 123.4)  # the stored baseline is the low reading
    reg.suspect_drop(W[0], 106_680.0)  # the stored reading before it
    assert reg.account(W[2], 106_715.0, pending, MIN, notes) is Outcome.RETRACTED
    # the 123.4 counted before the restart is taken back from W0; 35 over [W0, W2)
    assert pending == pytest.approx({W[0]: -123.4 + 17.5, W[1]: 17.5})
    plain = MeterRegister(meter())
    plain.restore(W[1], 123.4)
    plain.suspect_drop(W[0], 123.0)  # not a drop: nothing pending, plain differencing
    assert plain.account(W[2], 124.4, pending, MIN, notes) is Outcome.ACCEPTED


# -------------------------------------------------------------------------------- re-derivation


def test_derive_intervals_keeps_the_requested_windows_and_first_value() -> None:
    readings = [
        energy(W[3], 103.0),
        energy(W[1], 101.0),
        energy(W[0], 100.0),
        energy(W[1], 999.0),  # same time, different value: the first given (101) wins
        energy(W[2], 102.0),
        Reading(site_id="s", meter_id="m", ts_ms=W[2] + 1, power_kw=5.0),  # no main quantity
        Reading(site_id="s", meter_id="other", ts_ms=W[2] + 2, energy_kwh=1e6),  # another meter
    ]
    d = derive_intervals(meter(), readings, (), MIN, from_ms=W[1], to_ms=W[2] + 1)
    assert d.amounts == {W[1]: 1.0, W[2]: 1.0}
    assert kinds(d) == [MeterFlag.FIRST]


def test_derive_intervals_ignores_negative_interval_amounts() -> None:
    m = meter(Register.INTERVAL)
    d = derive(m, [energy(W[1], -1.0), energy(W[1], 2.0), energy(W[2], 3.0)])
    assert d.amounts == {W[0]: 2.0, W[1]: 3.0}
