"""Register deltas and window splitting: hand-computed vectors (peakwatch.domain.energy)."""

from __future__ import annotations

import pytest

from peakwatch.domain.energy import MeterRegister, register_delta
from peakwatch.domain.models import Carrier, Meter, MeterFlag, Role
from peakwatch.domain.outcomes import Note
from peakwatch.domain.spreading import interval_window_ms, split_interval, window_start_ms

MIN = 60_000
DLT645_MAX = 1_000_000.0  # six-digit kWh register: shows 999,999.99, then 0.00


@pytest.mark.parametrize(
    ("previous", "value", "register_max", "delta", "flag"),
    [
        pytest.param(100.0, 150.5, None, 50.5, None, id="normal"),
        pytest.param(100.0, 100.0, None, 0.0, None, id="unchanged"),
        pytest.param(100.0, 150.5, DLT645_MAX, 50.5, None, id="normal-with-max"),
        # restarted at zero: the energy since the restart is the new value
        pytest.param(500.0, 20.0, None, 20.0, MeterFlag.RESET, id="reset"),
        # a negative register after a reset is never negative energy
        pytest.param(500.0, -3.0, None, 0.0, MeterFlag.RESET, id="reset-negative-value"),
        # 1,000,000 - 999,990.00 + 15.00 = 25.00
        pytest.param(999_990.0, 15.0, DLT645_MAX, 25.0, MeterFlag.ROLLOVER, id="rollover"),
        # 999,999.99 -> 0.00 is one 0.01 kWh step
        pytest.param(999_999.99, 0.0, DLT645_MAX, 0.01, MeterFlag.ROLLOVER, id="rollover-last-step"),
        # previous exactly at 90 % of max: rollover, 1000 - 900 + 10 = 110
        pytest.param(900.0, 10.0, 1000.0, 110.0, MeterFlag.ROLLOVER, id="rollover-zone-edge"),
        # previous 899 < 900 (90 % of 1000): a reset, delta = value
        pytest.param(899.0, 10.0, 1000.0, 10.0, MeterFlag.RESET, id="below-zone-is-reset"),
        # a drop from a low value is a reset even when register_max is configured
        pytest.param(1000.0, 5.0, DLT645_MAX, 5.0, MeterFlag.RESET, id="drop-from-low-value-is-reset"),
        # exactly 10 % of the previous value is still a reset
        pytest.param(500.0, 50.0, None, 50.0, MeterFlag.RESET, id="reset-zone-edge"),
        # a drop to 66 % (a replaced meter, a register set by hand) is no reset: no energy, new baseline
        pytest.param(150_000.0, 100_000.0, None, 0.0, MeterFlag.REGISTER_DROP, id="register-drop"),
        pytest.param(150_000.0, 100_000.0, DLT645_MAX, 0.0, MeterFlag.REGISTER_DROP, id="drop-with-max"),
        pytest.param(500.0, 51.0, None, 0.0, MeterFlag.REGISTER_DROP, id="just-above-reset-zone"),
        # a small step back near the top of the register is no rollover (it would count ~1,000,000 kWh)
        pytest.param(999_990.0, 999_989.99, DLT645_MAX, 0.0, MeterFlag.REGISTER_DROP, id="drop-near-top"),
        # 950,000 -> 940,000 (a replaced meter): no rollover either
        pytest.param(950_000.0, 940_000.0, DLT645_MAX, 0.0, MeterFlag.REGISTER_DROP, id="drop-in-top-zone"),
        # a previous value above the modulus was no register reading (a glitch): no "rollover" of
        # 1,000,000 - 1,050,000 + 10 < 0, but a reset (10 <= 10 % of 1,050,000)
        pytest.param(1_050_000.0, 10.0, DLT645_MAX, 10.0, MeterFlag.RESET, id="above-max-is-no-rollover"),
        # exactly at the modulus (a register never shows it, but a rollover from there is 0 + value)
        pytest.param(DLT645_MAX, 2.0, DLT645_MAX, 2.0, MeterFlag.ROLLOVER, id="rollover-from-max"),
    ],
)
def test_register_delta(
    previous: float, value: float, register_max: float | None, delta: float, flag: MeterFlag | None
) -> None:
    got_delta, got_flag = register_delta(previous, value, register_max)
    assert got_delta == pytest.approx(delta, abs=1e-6)
    assert got_delta >= 0
    assert got_flag is flag


@pytest.mark.parametrize(
    ("t0_ms", "t1_ms", "amount", "expected"),
    [
        pytest.param(10_000, 50_000, 8.0, [(0, 8.0)], id="inside-one-window"),
        # [0, 60000) ends exactly on the boundary: all of it is in window 0
        pytest.param(0, MIN, 6.0, [(0, 6.0)], id="ends-on-boundary"),
        pytest.param(MIN, 90_000, 3.0, [(MIN, 3.0)], id="starts-on-boundary"),
        # [30 s, 150 s) = 120 s: 30 s in window 0, 60 s in window 1, 30 s in window 2 -> 12 x 30/120 ...
        pytest.param(30_000, 150_000, 12.0, [(0, 3.0), (MIN, 6.0), (2 * MIN, 3.0)], id="spans-three"),
        # a meter reporting every 5 minutes fills five 1-minute windows equally
        pytest.param(0, 5 * MIN, 10.0, [(i * MIN, 2.0) for i in range(5)], id="five-minutes"),
        # zero-length interval: all of it in the window that contains t0
        pytest.param(MIN, MIN, 1.0, [(MIN, 1.0)], id="zero-length"),
    ],
)
def test_split_interval(t0_ms: int, t1_ms: int, amount: float, expected: list[tuple[int, float]]) -> None:
    parts = split_interval(t0_ms, t1_ms, amount, MIN)
    assert [w for w, _ in parts] == [w for w, _ in expected]
    assert [share for _, share in parts] == pytest.approx([share for _, share in expected])


@pytest.mark.parametrize(
    ("t0_ms", "t1_ms", "amount"),
    [(7, 190_003, 0.1), (12_345, 1_000_000, 123.456), (1, 179_999, 1 / 3), (59_999, 60_001, 0.7)],
)
def test_split_interval_sum_is_exact(t0_ms: int, t1_ms: int, amount: float) -> None:
    parts = split_interval(t0_ms, t1_ms, amount, MIN)
    assert sum(share for _, share in parts) == amount
    # shares are proportional to the overlap of each window with [t0, t1)
    span = t1_ms - t0_ms
    for start, share in parts[:-1]:
        overlap = min(start + MIN, t1_ms) - max(start, t0_ms)
        assert share == pytest.approx(amount * overlap / span)


@pytest.mark.parametrize(
    ("ts_ms", "window_ms"),
    [
        pytest.param(1, 0, id="just-after-epoch"),
        pytest.param(MIN, 0, id="on-boundary-belongs-to-window-ending-there"),
        pytest.param(MIN + 1, MIN, id="just-after-boundary"),
        pytest.param(2 * MIN - 1, MIN, id="end-of-window"),
        pytest.param(0, -MIN, id="epoch-itself"),
    ],
)
def test_interval_window_ms(ts_ms: int, window_ms: int) -> None:
    assert interval_window_ms(ts_ms, MIN) == window_ms


@pytest.mark.parametrize(
    ("ts_ms", "start_ms"),
    [(0, 0), (59_999, 0), (MIN, MIN), (1_700_000_123_456, 1_700_000_100_000)],
)
def test_window_start_ms(ts_ms: int, start_ms: int) -> None:
    assert window_start_ms(ts_ms, MIN) == start_ms


# ---------------------------------------------------------------------------------- long gaps

DAY = 86_400_000
QUARTER = 15 * MIN


@pytest.mark.parametrize(
    ("t0_ms", "t1_ms", "amount", "expected"),
    [
        # exactly one day is no long gap: 1440 minutes of 1440 / 1440 = 1.0
        pytest.param(0, DAY, 1440.0, [(i * MIN, 1.0) for i in range(1440)], id="one-day-in-minutes"),
        # 00:07:30 -> day 2 00:00 = 2880 - 7.5 = 2872.5 min at 1 kWh/min: the first bucket's 7.5 min
        # (7.5 kWh) go to the minute holding 00:07:30, then 191 buckets of 15 kWh at each quarter hour
        # (7.5 + 191 x 15 = 2872.5)
        pytest.param(
            450_000,
            2 * DAY,
            2872.5,
            [(7 * MIN, 7.5)] + [(k * QUARTER, 15.0) for k in range(1, 192)],
            id="two-days-in-quarter-hours",
        ),
        # 0 -> 1 day 5.5 min = 1445.5 min at 1 kWh/min: 96 buckets of 15 kWh, then [day, day + 5.5 min)
        # with 5.5 kWh in the minute starting at the day (96 x 15 + 5.5 = 1445.5)
        pytest.param(
            0,
            DAY + 330_000,
            1445.5,
            [(k * QUARTER, 15.0) for k in range(96)] + [(DAY, 5.5)],
            id="ends-inside-a-bucket",
        ),
        # 60 days at 4 kWh/h = 1 kWh per quarter hour: 60 x 96 = 5,760 rows instead of 86,400
        pytest.param(
            0, 60 * DAY, 5760.0, [(k * QUARTER, 1.0) for k in range(5760)], id="sixty-days-5760-rows"
        ),
    ],
)
def test_long_gap_is_spread_in_quarter_hours(
    t0_ms: int, t1_ms: int, amount: float, expected: list[tuple[int, float]]
) -> None:
    parts = split_interval(t0_ms, t1_ms, amount, MIN)
    assert parts == expected  # every share above is exact in binary floating point


def test_reading_after_a_long_gap_is_flagged() -> None:
    meter = Meter(id="m", site_id="s", carrier=Carrier.ELECTRICITY, role=Role.GRID_IMPORT)
    reg = MeterRegister(meter)
    pending: dict[int, float] = {}
    notes: list[Note] = []
    reg.account(0, 100.0, pending, MIN, notes)  # baseline
    reg.account(DAY, 196.0, pending, MIN, notes)  # exactly a day: minutes, no gap
    assert [n[0] for n in notes] == [MeterFlag.FIRST]
    # day 1 -> day 3 + 15 min = 48.25 h, 193 kWh = 4 kWh/h = 1 kWh per quarter hour
    reg.account(3 * DAY + QUARTER, 389.0, pending, MIN, notes)
    assert [(n[0], n[1]) for n in notes] == [(MeterFlag.FIRST, 0), (MeterFlag.GAP, 3 * DAY + QUARTER)]
    assert "48.25 h" in notes[1][2]
    gap = {w: a for w, a in pending.items() if w >= DAY}
    assert gap == {DAY + k * QUARTER: 1.0 for k in range(193)}
