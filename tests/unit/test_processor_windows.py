"""SiteWindows: watermark, lateness, idle advance, completeness and flags (processor/windows.py)."""

from __future__ import annotations

import pytest

from peakwatch.domain.models import KpiWindow
from processor.windows import SiteWindows, site_inputs
from tests.unit.fakes import make_registry

MIN = 60_000
W0 = 1_699_999_980_000  # a window boundary
LATENESS = 10_000
IDLE = 5_000


def dc_windows(lateness_ms: int = LATENESS) -> SiteWindows:
    reg = make_registry()
    return SiteWindows(
        reg.sites["dc"],
        reg.site_meters("dc"),
        site_inputs(reg, reg.factors, reg.sites["dc"]),
        window_ms=MIN,
        allowed_lateness_ms=lateness_ms,
        idle_close_ms=IDLE,
    )


@pytest.mark.parametrize(
    ("event_ms", "closes"),
    [
        pytest.param(W0 + MIN + LATENESS - 1, False, id="watermark-1ms-short"),
        pytest.param(W0 + MIN + LATENESS, True, id="watermark-at-end"),
    ],
)
def test_window_closes_when_watermark_passes_end(event_ms: int, closes: bool) -> None:
    sw = dc_windows()
    sw.add("facility", W0, 15.0)
    sw.observe(event_ms, now_ms=0)
    closed = sw.close_ready()
    assert [w.start_ms for w in closed] == ([W0] if closes else [])
    assert (W0 in sw.open) is not closes


def test_kpis_completeness_and_flags_of_closed_window() -> None:
    sw = dc_windows()
    sw.add("facility", W0, 10.0)
    sw.add("facility", W0, 5.0)
    sw.add("it", W0, 10.0)
    sw.flag(W0, "reset")
    sw.flag(W0, "reset")
    sw.flag(W0 + MIN, "first")
    sw.observe(W0 + MIN + LATENESS, now_ms=0)
    [w] = sw.close_ready()
    assert (w.site_id, w.start_ms, w.end_ms) == ("dc", W0, W0 + MIN)
    assert w.facility_kwh == pytest.approx(15.0)
    assert w.pue == pytest.approx(1.5)
    # facility and it covered the window; the cooling meter (3 configured) did not: 2/3
    assert w.completeness == pytest.approx(2 / 3)
    assert w.flags == ("reset",)


def test_late_amount_does_not_reopen_window() -> None:
    sw = dc_windows()
    sw.add("facility", W0, 1.0)
    sw.observe(W0 + MIN + LATENESS, now_ms=0)
    assert len(sw.close_ready()) == 1
    assert sw.add("it", W0, 2.0) is False
    assert sw.open == {}
    assert sw.close_ready() == []
    # within lateness of the next window it still counts
    assert sw.add("it", W0 + MIN, 2.0) is True


def test_watermark_never_goes_back() -> None:
    sw = dc_windows()
    sw.observe(W0 + 2 * MIN, now_ms=0)
    sw.observe(W0, now_ms=1)
    assert sw.watermark_ms == W0 + 2 * MIN - LATENESS


def test_idle_advance_closes_without_new_readings() -> None:
    sw = dc_windows()
    sw.add("facility", W0, 1.0)
    sw.observe(W0 + 30_000, now_ms=1_000)  # last reading 30 s into the window, received at wall 1 s
    sw.tick(1_000 + IDLE - 1)
    assert sw.event_ms == W0 + 30_000  # not idle yet
    sw.tick(1_000 + IDLE)
    assert sw.event_ms == W0 + 30_000 + IDLE  # advanced by the whole silence
    sw.tick(1_000 + IDLE + 500)
    assert sw.event_ms == W0 + 30_000 + IDLE + 500  # and keeps following the clock
    assert sw.close_ready() == []
    # the window closes once event time reached end + lateness: 40 s of silence after the last reading
    sw.tick(1_000 + 40_000 - 1)
    assert sw.close_ready() == []
    sw.tick(1_000 + 40_000)
    assert [w.start_ms for w in sw.close_ready()] == [W0]


def test_arrival_stops_idle_advance() -> None:
    sw = dc_windows()
    sw.observe(W0, now_ms=0)
    sw.tick(IDLE)
    assert sw.event_ms == W0 + IDLE
    sw.observe(W0 + 1_000, now_ms=IDLE + 100)  # a reading behind the advanced event time
    sw.tick(IDLE + 200)
    assert sw.event_ms == W0 + IDLE


def test_no_idle_advance_before_any_reading() -> None:
    sw = dc_windows()
    sw.tick(10**9)
    assert sw.event_ms is None
    assert sw.close_ready() == []


def test_restore_sets_event_time_and_idle_clock() -> None:
    sw = dc_windows()
    sw.restore(W0 + MIN + LATENESS, now_ms=50)
    assert sw.is_closed(W0)
    assert not sw.is_closed(W0 + MIN)
    sw.tick(50 + IDLE - 1)
    assert sw.event_ms == W0 + MIN + LATENESS


def test_no_idle_close_while_readings_are_still_queued() -> None:
    # The bus holds a backlog (e.g. after a store outage): however long the wall clock ran, the site
    # is not silent, so its open window waits for the queued readings.
    sw = dc_windows()
    sw.add("facility", W0, 10.0)
    sw.observe(W0 + 30_000, now_ms=1_000)
    sw.tick(60_000, backlog=True)
    assert sw.close_ready() == []
    # Once the backlog is read, silence counts from then on.
    sw.tick(61_000)
    assert sw.close_ready() == []
    sw.tick(60_000 + IDLE + 41_000)
    assert [w.start_ms for w in sw.close_ready()] == [W0]


ROUND = 15_000
"""Both meters of the site report every 15 s, with the same timestamp (one round)."""


@pytest.mark.parametrize(
    ("before_end_ms", "lateness_ms", "late"),
    [
        # 2 s before the boundary: the idle advance through the 12 s of silence between rounds
        # reaches end + 10 s just before the next round, which then finds the window closed
        pytest.param(2_000, LATENESS, ["facility", "it"], id="10s-closed-by-idle-advance"),
        # 4 s before: the idle advance stops 2 s short, but the round's first reading (14 - 4 = 11 s
        # past the end) closes the window its own interval fed, before the second meter's reading
        pytest.param(4_000, LATENESS, ["it"], id="10s-closed-by-first-reading"),
        pytest.param(2_000, LATENESS + ROUND, [], id="25s-in-time"),
        pytest.param(4_000, LATENESS + ROUND, [], id="25s-in-time-4s"),
    ],
)
def test_15_s_rounds_at_real_time_are_late_only_when_lateness_is_below_the_interval(
    before_end_ms: int, lateness_ms: int, late: list[str]
) -> None:
    """bench.scaling's real-time runs, in small: round j stamped ``ts_j`` reaches the processor at wall
    15 j s (facility) and 15 j + 2.9 s (it), each meter counting 1 kWh per round; steps every 100 ms as
    in ``StepState.step``: place the amounts, observe, tick, close. The round after ``ts_1`` (2 or 4 s
    before W0's end) feeds W0 with the share of its interval before the boundary."""
    sw = dc_windows(lateness_ms)
    end = W0 + MIN
    ts = [end - before_end_ms + ROUND * (j - 1) for j in range(5)]  # ts_0 = end - x - 15 s, in W0
    arrivals = sorted(
        (ROUND * j + (0 if meter == "facility" else 2_900), j, meter)
        for j in range(5)
        for meter in ("facility", "it")
    )
    refused: list[str] = []
    closed: list[KpiWindow] = []
    for now in range(0, ROUND * 5, 100):
        while arrivals and arrivals[0][0] <= now:
            _, j, meter = arrivals.pop(0)
            if j:  # a round's reading closes the interval [ts_(j-1), ts_j)
                share = min(max(end - ts[j - 1], 0), ROUND) / ROUND
                accepted = [
                    sw.add(meter, start, amount)
                    for start, amount in ((W0, share), (end, 1 - share))
                    if amount
                ]
                if not all(accepted):
                    refused.append(meter)
            sw.observe(ts[j], now)
        sw.tick(now)
        closed.extend(sw.close_ready())
    assert refused == late
    [w0] = [w for w in closed if w.start_ms == W0]
    # W0 holds round 1 whole and round 2's share, 2 or 4 of its 15 s, unless that share came too late
    facility_share = 0.0 if "facility" in late else before_end_ms / ROUND
    assert w0.facility_kwh == pytest.approx(1.0 + facility_share)
