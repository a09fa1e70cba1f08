"""Re-judging restated windows: the alert rules look again at windows whose values were recomputed.

A live window can be restated later (late readings, a correction, a factor revision): a PUE of 5.4
live may be 1.35 once the missing IT readings arrived. An alert whose evidence was such a window must
not keep it. After a restatement the rule engine replays each rule of the site from a state with no
alert over the windows that decide its state now (``rejudge_from``), and compares the outcome with the
state it holds (``rejudged_state``).

Exact where it can be: a rule's state depends only on the windows since its *anchor* (an open alert's
start, before which the rule was closed; or the moment it closed), so restated windows after the
anchor are replayed from the anchor exactly. Bounded: only the rules of the restated site, only when
the restatement reaches a window they judged, restated windows before the anchor back by the rule's
look-back only, and never more than ``REJUDGE_MAX_MS`` of windows. Also the rule state the engine
keeps per fingerprint (``Tracked``, ``advance``), shared by live judging and replays.
"""

from __future__ import annotations

import collections
from typing import Final, NamedTuple

from peakwatch.domain.models import KpiWindow
from peakwatch.domain.rules import (
    RESTATED,
    AlertState,
    Evidence,
    RuleState,
    ThresholdRule,
    change_over,
    evaluate,
    gated,
)

REJUDGE_MAX_MS: Final = 7 * 86_400_000
"""A re-judgement replays at most a week of windows before the last window judged."""
RECENT_WINDOWS: Final = 1_024
"""Windows judged live that each rule remembers: those not stored yet when a re-judgement runs (the
committed frontier trails the live path by a few steps) come from here."""
_OPEN: Final = (AlertState.PENDING, AlertState.FIRING)
_CLOSED: Final = (AlertState.INACTIVE, AlertState.RESOLVED)


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


def rejudge_from(
    rule: ThresholdRule,
    state: RuleState,
    anchor_ms: int,
    last_end_ms: int,
    restated_from: int,
    restated_to: int,
) -> tuple[int, int] | None:
    """``(history_from, judge_from)``: the windows a replay reads (a rate rule's baselines) and those it
    judges, from a state with no alert; ``None``: nothing to re-judge.

    ``anchor_ms`` is where the held state began: an open alert's start, before which the rule was closed,
    or the moment it closed, after which its state depends only on later windows. Restated windows all
    after the anchor: the replay from the anchor is exact. Some before it: the replay starts at the
    restated range back by the rule's look-back (``for`` + ``keep_firing_for`` + ``change_over``), or
    from the anchor when that would reach more than ``REJUDGE_MAX_MS`` before the last window judged (a
    factor revision restates everything). A closed state whose anchor is after every restated window
    cannot change; an anchor older than ``REJUDGE_MAX_MS`` is not re-judged (bounded cost)."""
    if state.state not in _OPEN and restated_to <= anchor_ms:
        return None
    oldest = last_end_ms - REJUDGE_MAX_MS
    start = anchor_ms if restated_from >= anchor_ms else restated_from - lookback_ms(rule)
    if start < oldest:
        start = anchor_ms
    if start < oldest:
        return None
    return start - (rule.change_over_ms or 0), start


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


class Tracked:
    """Where one rule stands for one site (or meter), with what judging its next windows needs."""

    __slots__ = ("closed_from_ms", "history", "last_end_ms", "recent", "state")

    def __init__(self, state: RuleState, last_end_ms: int) -> None:
        self.state = state
        self.last_end_ms = last_end_ms
        self.closed_from_ms = last_end_ms + 1
        """While closed: since when (the end of the window that closed it, or the first window judged);
        from there on the state depends only on later windows (``rejudge``)."""
        self.history: collections.deque[tuple[int, float]] = collections.deque()
        """Rate-of-change rules: recent ``(window end, value)``, as far back as the span needs."""
        self.recent: collections.deque[Judged] = collections.deque(maxlen=RECENT_WINDOWS)
        """The last windows judged live: a re-judgement takes those not yet stored from here."""


def advance(rule: ThresholdRule, tracked: Tracked, w: Judged) -> tuple[RuleState, RuleState]:
    """Judge window ``w``: the rule's state before and after (the rate-of-change history moves along)."""
    value = w.value
    if rule.change_over_ms is not None and value is not None:
        # a window the gates refuse is no evidence, and no baseline for later changes either
        value = (
            None
            if gated(rule, w.evidence) is not None
            else remember_change(tracked, rule.change_over_ms, w.end_ms, value, w.end_ms - w.start_ms)
        )
    old = tracked.state
    new = tracked.state = evaluate(rule, old, value, w.start_ms, w.end_ms, w.evidence)
    if new.state in _CLOSED and old.state not in _CLOSED:
        tracked.closed_from_ms = w.end_ms
    return old, new


def remember_change(
    tracked: Tracked, span_ms: int, end_ms: int, value: float, window_ms: int
) -> float | None:
    """The change over ``span_ms`` (against a window that ended within one window of the span's
    start); remembers ``value`` and forgets what no later window needs. The history lives in memory:
    after a restart a rate rule waits one span before it judges again."""
    history = tracked.history
    change = change_over(history, end_ms, value, span_ms, window_ms)
    history.append((end_ms, value))
    while len(history) > 1 and history[1][0] <= end_ms - span_ms:
        history.popleft()  # the newest window at least a span old stays: the next one compares to it
    return change
