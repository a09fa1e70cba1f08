"""Event time versus wall clock: speeds, schedules, backfill."""

from __future__ import annotations

import itertools

import pytest

from simulators.pacing import MAX, REALTIME, Speed, due_offset_s, parse_speed, plan

NOW = 1_700_000_123_456  # not on a step boundary


@pytest.mark.parametrize(
    ("text", "factor"),
    [
        ("realtime", 1.0),
        ("Real-Time", 1.0),
        ("max", None),
        ("60x", 60.0),
        ("60", 60.0),
        (" 2.5X ", 2.5),
        ("1x", 1.0),
    ],
)
def test_parse_speed(text: str, factor: float | None) -> None:
    assert parse_speed(text).factor == factor


@pytest.mark.parametrize("text", ["", "fast-ish", "0", "-3x", "x60"])
def test_parse_speed_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="speed"):
        parse_speed(text)


def test_speed_names() -> None:
    assert [str(s) for s in (REALTIME, MAX, Speed(60.0))] == ["realtime", "max", "60x"]


def test_default_start_is_now_aligned_down_and_due_times_follow_the_wall_clock() -> None:
    schedule = plan(NOW, step_ms=10_000)
    assert schedule.start_ms == 1_700_000_120_000
    times = list(plan(NOW, step_ms=10_000, count=3).times())
    assert times == [1_700_000_120_000, 1_700_000_130_000, 1_700_000_140_000]
    # realtime: a step is due when the wall clock reaches its timestamp
    assert [due_offset_s(ts, schedule, REALTIME) for ts in times] == pytest.approx([-3.456, 6.544, 16.544])
    assert due_offset_s(times[1], schedule, Speed(10.0)) == pytest.approx(0.6544)
    assert due_offset_s(times[2], schedule, MAX) == 0.0


def test_backfill_steps_are_due_at_once_then_realtime() -> None:
    schedule = plan(NOW, step_ms=10_000, backfill_ms=600_000)
    assert schedule.start_ms == 1_700_000_120_000 - 600_000  # aligned below now - 10 min
    times = list(itertools.islice(schedule.times(), 62))
    past = [ts for ts in times if due_offset_s(ts, schedule, REALTIME) <= 0]
    assert len(past) == 61  # the 10 minutes plus the step at the current boundary
    assert due_offset_s(times[61], schedule, REALTIME) == pytest.approx((times[61] - NOW) / 1000)


def test_explicit_start_replays_from_there_at_the_chosen_speed() -> None:
    start = NOW - 86_400_000
    schedule = plan(NOW, step_ms=60_000, start_ms=start, duration_ms=3_600_000)
    times = list(schedule.times())
    assert len(times) == 60
    assert times[0] == start - start % 60_000
    assert due_offset_s(times[0], schedule, Speed(60.0)) == 0.0
    assert due_offset_s(times[10], schedule, Speed(60.0)) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"step_ms": 0},
        {"step_ms": 1000, "backfill_ms": -1},
        {"step_ms": 1000, "start_ms": 5, "backfill_ms": 5},
        {"step_ms": 1000, "count": -1},
    ],
)
def test_plan_refuses_inconsistent_requests(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"."):
        plan(NOW, **kwargs)


def test_count_and_duration_both_limit() -> None:
    assert len(list(plan(NOW, step_ms=1000, count=5, duration_ms=3000).times())) == 3
    assert len(list(plan(NOW, step_ms=1000, count=0).times())) == 0
