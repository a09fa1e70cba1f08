"""Re-judging restated windows (processor/rejudge.py): where a replay starts and what it changes,
with hand-computed vectors."""

from __future__ import annotations

import pytest

from peakwatch.domain.rules import RESTATED, AlertState, RuleState, ThresholdRule
from processor.rejudge import REJUDGE_MAX_MS, rejudge_from, rejudged_state

MIN = 60_000
DAY = 86_400_000
RULE = ThresholdRule(
    name="pue_high", kpi="pue", op=">", threshold=2.0, for_ms=5 * MIN, keep_firing_for_ms=10 * MIN
)
FIRING = RuleState(state=AlertState.FIRING, since_ms=100 * MIN, value=5.4)
INACTIVE = RuleState()


@pytest.mark.parametrize(
    ("state", "last_end", "restated_from", "expected"),
    [
        # restated 120 min, no alert open: 120 - (5 + 10) look-back = 105
        (INACTIVE, 200 * MIN, 120 * MIN, 105 * MIN),
        # an alert open since 100 min: from its start, 100 - 15 = 85
        (FIRING, 200 * MIN, 120 * MIN, 85 * MIN),
        # restated before the alert's start: 90 - 15 = 75
        (FIRING, 200 * MIN, 90 * MIN, 75 * MIN),
        # a factor revision restating since 2000: at most 7 days before the last window judged
        (INACTIVE, 30 * DAY, 0, 30 * DAY - 7 * DAY),
    ],
)
def test_rejudge_from(state: RuleState, last_end: int, restated_from: int, expected: int) -> None:
    assert REJUDGE_MAX_MS == 7 * DAY
    assert rejudge_from(RULE, state, last_end, restated_from) == expected


def test_a_firing_alert_whose_breach_vanished_resolves_with_the_reason() -> None:
    replayed = RuleState(state=AlertState.INACTIVE, value=1.35)
    change, reason = rejudged_state(FIRING, replayed)
    assert reason == RESTATED
    # closes the alert as it was (its start), with the value the restated windows show
    assert change == RuleState(state=AlertState.RESOLVED, since_ms=100 * MIN, value=1.35)


def test_a_pending_alert_whose_breach_vanished_goes_inactive() -> None:
    pending = RuleState(state=AlertState.PENDING, since_ms=100 * MIN, value=5.4)
    change, reason = rejudged_state(pending, RuleState(value=1.35))
    assert (change, reason) == (
        RuleState(state=AlertState.INACTIVE, since_ms=100 * MIN, value=1.35),
        RESTATED,
    )


def test_a_firing_alert_that_would_only_be_pending_now_resolves() -> None:
    # restated, the breach holds 3 of the 5 minutes `for` needs: it should never have fired
    replayed = RuleState(state=AlertState.PENDING, since_ms=104 * MIN, value=2.5)
    change, reason = rejudged_state(FIRING, replayed)
    assert reason == RESTATED
    assert change is not None
    assert change.state is AlertState.RESOLVED


def test_a_breach_that_starts_later_moves_the_start() -> None:
    replayed = RuleState(state=AlertState.FIRING, since_ms=104 * MIN, value=15.0)
    assert rejudged_state(FIRING, replayed) == (replayed, None)


def test_a_breach_the_restated_windows_show_opens() -> None:
    replayed = RuleState(state=AlertState.PENDING, since_ms=104 * MIN, value=2.5)
    assert rejudged_state(INACTIVE, replayed) == (replayed, None)


def test_nothing_changes_when_the_replay_agrees() -> None:
    same = RuleState(state=AlertState.FIRING, since_ms=100 * MIN, value=4.0)  # another value, same breach
    assert rejudged_state(FIRING, same) == (None, None)
    assert rejudged_state(INACTIVE, RuleState(state=AlertState.RESOLVED, since_ms=1, value=1.0)) == (
        None,
        None,
    )
