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
    ("state", "anchor", "last_end", "restated", "expected"),
    [
        # an alert open since 100 min, windows from 120 restated: exact replay from its start
        (FIRING, 100 * MIN, 200 * MIN, (120 * MIN, 130 * MIN), (100 * MIN, 100 * MIN)),
        # restated before the alert's start: from 90 back by for + keep_firing_for (5 + 10) = 75
        (FIRING, 100 * MIN, 200 * MIN, (90 * MIN, 95 * MIN), (75 * MIN, 75 * MIN)),
        # closed since 150 min, windows from 160 restated: exact replay from 150
        (INACTIVE, 150 * MIN, 200 * MIN, (160 * MIN, 170 * MIN), (150 * MIN, 150 * MIN)),
        # closed since 150 min, every restated window before it: nothing after the anchor changed
        (INACTIVE, 150 * MIN, 200 * MIN, (120 * MIN, 150 * MIN), None),
        # a factor revision restating since 2000: 2000 - 15 min is beyond 7 days, so from the anchor
        (INACTIVE, 29 * DAY, 30 * DAY, (0, 30 * DAY), (29 * DAY, 29 * DAY)),
        # ... unless the anchor is older than 7 days too: not re-judged
        (INACTIVE, 20 * DAY, 30 * DAY, (0, 30 * DAY), None),
    ],
)
def test_rejudge_from(
    state: RuleState, anchor: int, last_end: int, restated: tuple[int, int], expected: tuple[int, int] | None
) -> None:
    assert REJUDGE_MAX_MS == 7 * DAY
    assert rejudge_from(RULE, state, anchor, last_end, *restated) == expected


def test_a_rate_rule_reads_its_baselines_before_the_replay() -> None:
    rate = ThresholdRule(name="pue_jump", kpi="pue", op=">", threshold=0.1, change_over_ms=15 * MIN)
    # exact from the anchor at 100 min; the baselines from 100 - 15 = 85
    assert rejudge_from(rate, INACTIVE, 100 * MIN, 200 * MIN, 120 * MIN, 130 * MIN) == (85 * MIN, 100 * MIN)


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
