"""Re-judging restated windows: the alert rules look again at windows whose values were recomputed.

A live window can be restated later (late readings, a correction, a factor revision): a PUE of 5.4
live may be 1.35 once the missing IT readings arrived. An alert whose evidence was such a window must
not keep it. After a restatement the rule engine replays each rule of the site from a state with no
alert over the windows its look-back needs (``rejudge_from``), and compares the outcome with the state
it holds (``rejudged_state``).

Bounded and deterministic: only the rules of the restated site, only when the restatement reaches a
window they judged, and only the windows from the restated range (or the open alert's start, when
earlier) back by the rule's look-back (``for`` + ``keep_firing_for`` + ``change_over``), at most
``REJUDGE_MAX_MS`` before the last window judged.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from peakwatch.domain.models import KpiWindow
from peakwatch.domain.rules import RESTATED, AlertState, Evidence, RuleState, ThresholdRule

REJUDGE_MAX_MS: Final = 7 * 86_400_000
"""A re-judgement replays at most a week of windows before the last window judged."""
RECENT_WINDOWS: Final = 1_024
"""Windows judged live that each rule remembers: those not stored yet when a re-judgement runs (the
committed frontier trails the live path by a few steps) come from here."""
_OPEN: Final = (AlertState.PENDING, AlertState.FIRING)


class Judged(NamedTuple):
    """A window as a rule judges it: its span, the rule's KPI and the gates' evidence."""

    start_ms: int
    end_ms: int
    value: float | None
    evidence: Evidence


def evidence(window: KpiWindow) -> Evidence:
    """What a rule's gates look at: completeness and the mean IT load over the window."""
    hours = (window.end_ms - window.start_ms) / 3_600_000
    it_kw = None if window.it_kwh is None or hours <= 0 else window.it_kwh / hours
    return Evidence(completeness=window.completeness, it_kw=it_kw)


def judged(window: KpiWindow, kpi: str) -> Judged:
    value = getattr(window, kpi)
    return Judged(window.start_ms, window.end_ms, None if value is None else float(value), evidence(window))


def lookback_ms(rule: ThresholdRule) -> int:
    """How far before a window the windows that decide the rule's state there can lie."""
    return rule.for_ms + rule.keep_firing_for_ms + (rule.change_over_ms or 0)


def rejudge_from(rule: ThresholdRule, state: RuleState, last_end_ms: int, restated_from_ms: int) -> int:
    """Where the replay starts: the restated range or the open alert's start, whichever is earlier, back
    by the rule's look-back; never more than ``REJUDGE_MAX_MS`` before the last window judged."""
    start = restated_from_ms
    if state.state in _OPEN and state.since_ms is not None:
        start = min(start, state.since_ms)
    return max(start - lookback_ms(rule), last_end_ms - REJUDGE_MAX_MS)


def rejudged_state(held: RuleState, replayed: RuleState) -> tuple[RuleState | None, str | None]:
    """The alert change a re-judgement makes (``None``: none) and its reason. An open alert whose breach
    the replay no longer shows (or no longer long enough to fire) closes with reason ``restated``; an
    open breach that starts elsewhere, or that the restated windows now show, is (re)stated as the
    replay sees it, with its corrected start."""
    was_open, now_open = held.state in _OPEN, replayed.state in _OPEN
    fired_no_more = held.state is AlertState.FIRING and replayed.state is not AlertState.FIRING
    if was_open and (not now_open or fired_no_more):
        closed = AlertState.RESOLVED if held.state is AlertState.FIRING else AlertState.INACTIVE
        return RuleState(state=closed, since_ms=held.since_ms, value=replayed.value), RESTATED
    if now_open and (not was_open or held.state is not replayed.state or held.since_ms != replayed.since_ms):
        return replayed, None
    return None, None
