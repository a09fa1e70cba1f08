"""Threshold rule state machine (peakwatch.domain.rules.evaluate), one window per step."""

from __future__ import annotations

import pytest

from peakwatch.domain.models import SiteKind
from peakwatch.domain.rules import (
    AlertState,
    Evidence,
    RuleState,
    StalenessRule,
    ThresholdRule,
    change_over,
    evaluate,
    gated,
    staleness,
)

MIN = 60_000
PUE_RULE = ThresholdRule(name="pue", kpi="pue", op=">", threshold=1.5, for_ms=5 * MIN)

P, F, R, N = AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED, AlertState.INACTIVE


def run(rule: ThresholdRule, values: list[float | None]) -> list[RuleState]:
    """Evaluate consecutive 1-minute windows [i min, (i+1) min)."""
    state = RuleState()
    states = []
    for i, value in enumerate(values):
        state = evaluate(rule, state, value, i * MIN, (i + 1) * MIN)
        states.append(state)
    return states


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # breach held 1..4 min: pending; the 5th window makes 5 min -> firing; then a good window resolves
        pytest.param([1.6, 1.6, 1.6, 1.6, 1.6, 1.4], [P, P, P, P, F, R], id="pending-firing-resolved"),
        # a non-breaching window while pending ends the episode without firing
        pytest.param([1.6, 1.6, 1.4, 1.6], [P, P, N, P], id="pending-then-inactive"),
        # None (no IT energy) is no evidence: state kept, the breach keeps counting from its start
        pytest.param([1.6, None, 1.6, 1.6, 1.6], [P, P, P, P, F], id="none-keeps-state"),
        pytest.param([None, 1.4, None], [N, N, N], id="none-and-fine"),
        # at the threshold is not above it
        pytest.param([1.5] * 6, [N] * 6, id="threshold-not-breached"),
        # after resolution the next breach starts a new episode
        pytest.param([1.6] * 5 + [1.4, 1.6, 1.4], [P, P, P, P, F, R, P, N], id="resolved-then-new-episode"),
        pytest.param([1.6] * 7, [P, P, P, P, F, F, F], id="stays-firing"),
    ],
)
def test_state_sequence(values: list[float | None], expected: list[AlertState]) -> None:
    assert [s.state for s in run(PUE_RULE, values)] == expected


def test_since_is_start_of_first_breaching_window() -> None:
    states = run(PUE_RULE, [1.4, 1.6, 1.7, 1.8, 1.9, 2.0])
    assert [s.since_ms for s in states] == [None, MIN, MIN, MIN, MIN, MIN]
    # firing once the breach spans [1 min, 6 min) = 5 min
    assert states[-1].state is F
    assert states[-1].value == 2.0


def test_zero_for_fires_immediately() -> None:
    rule = ThresholdRule(name="low", kpi="green_power_share", op="<", threshold=0.2)
    assert [s.state for s in run(rule, [0.1, 0.3])] == [F, R]


def test_none_leaves_firing_state_untouched() -> None:
    firing = RuleState(state=F, since_ms=0, value=1.9)
    assert evaluate(PUE_RULE, firing, None, 10 * MIN, 11 * MIN) is firing


@pytest.mark.parametrize(
    ("op", "value", "breaches"),
    [
        (">", 1.6, True),
        (">", 1.5, False),
        (">=", 1.5, True),
        ("<", 1.4, True),
        ("<", 1.5, False),
        ("<=", 1.5, True),
    ],
)
def test_operators(op: str, value: float, breaches: bool) -> None:
    rule = ThresholdRule(name="r", kpi="pue", op=op, threshold=1.5)  # type: ignore[arg-type]
    assert rule.breaches(value) is breaches


@pytest.mark.parametrize(
    ("site_kinds", "site_ids", "site_id", "kind", "applies"),
    [
        ((), (), "a", SiteKind.PARK, True),
        ((SiteKind.DATA_CENTRE,), (), "a", SiteKind.PARK, False),
        ((SiteKind.DATA_CENTRE,), (), "a", SiteKind.DATA_CENTRE, True),
        ((), ("b",), "a", SiteKind.PARK, False),
        ((), ("a",), "a", SiteKind.PARK, True),
    ],
)
def test_applies_to(
    site_kinds: tuple[SiteKind, ...], site_ids: tuple[str, ...], site_id: str, kind: SiteKind, applies: bool
) -> None:
    rule = ThresholdRule(name="r", kpi="pue", op=">", threshold=1.5, site_kinds=site_kinds, site_ids=site_ids)
    assert rule.applies_to(site_id, kind) is applies


# ------------------------------------------------------------------------------------------ hysteresis, gates

HYSTERESIS = ThresholdRule(name="pue", kpi="pue", op=">", threshold=1.5, recover_threshold=1.45)


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        # oscillating around 1.5: fires once and stays firing until the value is back at or below 1.45
        pytest.param(HYSTERESIS, [1.51, 1.49, 1.52, 1.48, 1.46, 1.45], [F, F, F, F, F, R], id="hysteresis"),
        # without a recovery threshold the same series flaps
        pytest.param(
            ThresholdRule(name="pue", kpi="pue", op=">", threshold=1.5),
            [1.51, 1.49, 1.52, 1.48],
            [F, R, F, R],
            id="no-hysteresis-flaps",
        ),
        # a "below" rule recovers at or above its recovery threshold
        pytest.param(
            ThresholdRule(
                name="green", kpi="green_power_share", op="<", threshold=0.3, recover_threshold=0.35
            ),
            [0.2, 0.32, 0.34, 0.35, 0.36],
            [F, F, F, R, N],
            id="below-rule",
        ),
        # keep firing for 3 minutes of recovered windows; a relapse restarts the count
        pytest.param(
            ThresholdRule(name="pue", kpi="pue", op=">", threshold=1.5, keep_firing_for_ms=3 * MIN),
            [1.6, 1.4, 1.4, 1.6, 1.4, 1.4, 1.4],
            [F, F, F, F, F, F, R],
            id="keep-firing-for",
        ),
    ],
)
def test_recovery(rule: ThresholdRule, values: list[float | None], expected: list[AlertState]) -> None:
    assert [s.state for s in run(rule, values)] == expected


def test_gated_windows_are_no_evidence() -> None:
    rule = ThresholdRule(name="pue", kpi="pue", op=">", threshold=1.5, min_completeness=0.9, min_it_kw=50.0)
    windows = [
        (1.8, Evidence(completeness=0.5, it_kw=200.0)),  # half the meters: ignored
        (1.8, Evidence(completeness=1.0, it_kw=10.0)),  # near-idle hall: ignored
        (1.8, Evidence(completeness=1.0, it_kw=None)),  # load unknown: ignored
        (1.8, Evidence(completeness=1.0, it_kw=60.0)),  # fires
        (1.2, Evidence(completeness=0.2, it_kw=60.0)),  # a gated good value does not resolve it
        (1.2, Evidence(completeness=0.95, it_kw=60.0)),  # resolves
    ]
    state = RuleState()
    states = []
    for i, (value, evidence) in enumerate(windows):
        state = evaluate(rule, state, value, i * MIN, (i + 1) * MIN, evidence)
        states.append(state.state)
    assert states == [N, N, N, F, F, R]
    assert gated(rule, Evidence(completeness=0.5, it_kw=200.0)) == "completeness 50% below 90%"
    assert gated(rule, Evidence(completeness=1.0, it_kw=10.0)) == "IT load 10 kW below 50 kW"


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (ThresholdRule(name="x", kpi="pue", op=">", threshold=1.5, recover_threshold=1.6), "at or below"),
        (ThresholdRule(name="x", kpi="pue", op="<", threshold=0.3, recover_threshold=0.2), "at or above"),
        (ThresholdRule(name="x", kpi="pue", op=">", threshold=1.5, min_completeness=90), "between 0 and 1"),
        (ThresholdRule(name="x", kpi="pue", op=">", threshold=1.5, keep_firing_for_ms=-1), "negative"),
    ],
)
def test_rules_that_cannot_work_are_refused(rule: ThresholdRule, problem: str) -> None:
    found = rule.problem()
    assert found is not None
    assert problem in found


# ------------------------------------------------------------------------------------------ staleness

SILENT = StalenessRule(name="meter_silent", silent_ms=5 * MIN)


@pytest.mark.parametrize(
    ("last_seen", "now", "before", "after"),
    [
        (10, 4 * MIN, N, N),  # 4 min quiet: fine
        (10, 5 * MIN + 10, N, F),  # 5 min: fires, from the last sign of life
        (10, 9 * MIN, F, F),  # still quiet
        (8 * MIN, 9 * MIN, F, R),  # reported again
        (8 * MIN, 9 * MIN, N, N),
        (None, 5 * MIN - 1, N, N),  # never seen: counted from when watching began (at 0)
        (None, 5 * MIN, N, F),
    ],
)
def test_staleness(last_seen: int | None, now: int, before: AlertState, after: AlertState) -> None:
    current = RuleState(state=before, since_ms=0 if before is F else None)
    new = staleness(SILENT, current, last_seen, now, watching_since_ms=0)
    assert new.state is after
    if after is F and before is N:
        assert new.since_ms == (0 if last_seen is None else last_seen)


def test_staleness_after_a_restart_gives_one_period_of_grace() -> None:
    """Last seen 20 minutes before the processor (re)started: its own downtime is not the meter's
    silence; an alert that was firing stays firing until the meter reports."""
    start = 20 * MIN
    assert staleness(SILENT, RuleState(), 0, start + MIN, start).state is N
    fired = staleness(SILENT, RuleState(), 0, start + 5 * MIN, start)
    assert fired.state is F
    assert fired.since_ms == 0  # reported as silent since its real last reading
    firing = RuleState(state=F, since_ms=0)
    assert staleness(SILENT, firing, 0, start + MIN, start) is firing
    assert staleness(SILENT, firing, start + MIN, start + 2 * MIN, start).state is R


def test_staleness_scope() -> None:
    rule = StalenessRule(name="s", silent_ms=1, site_kinds=(SiteKind.DATA_CENTRE,), meter_roles=("it_load",))
    assert rule.applies_to("dc", SiteKind.DATA_CENTRE, "it_load")
    assert not rule.applies_to("dc", SiteKind.DATA_CENTRE, "cooling")
    assert not rule.applies_to("p", SiteKind.PARK, "it_load")


# ------------------------------------------------------------------------------------------ rate of change


@pytest.mark.parametrize(
    ("history", "end", "value", "span", "expected"),
    [
        ([], 15 * MIN, 1.5, 15 * MIN, None),  # nothing yet
        ([(MIN, 1.3)], 15 * MIN, 1.5, 15 * MIN, None),  # only 14 minutes back: not enough history
        ([(0, 1.3), (MIN, 1.35)], 15 * MIN, 1.5, 15 * MIN, pytest.approx(0.2)),  # vs the window ended at 0
        ([(0, 1.3), (MIN, 1.35)], 16 * MIN, 1.5, 15 * MIN, pytest.approx(0.15)),  # the newest old enough
        ([(0, 1.6)], 15 * MIN, 1.5, 15 * MIN, pytest.approx(-0.1)),  # a fall is negative
        ([(0, 1.3)], 16 * MIN, 1.5, 15 * MIN, pytest.approx(0.2)),  # one window late: still the span
        ([(0, 1.2)], 10 * 60 * MIN, 1.35, 5 * MIN, None),  # 10 hours apart: a drift, not a jump
    ],
)
def test_change_over(
    history: list[tuple[int, float]], end: int, value: float, span: int, expected: object
) -> None:
    assert change_over(history, end, value, span, tolerance_ms=MIN) == expected
