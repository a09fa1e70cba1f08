"""Threshold rule state machine (peakwatch.domain.rules.evaluate), one window per step."""

from __future__ import annotations

import pytest

from peakwatch.domain.models import SiteKind
from peakwatch.domain.rules import AlertState, RuleState, ThresholdRule, evaluate

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
