"""Threshold rules over closed KPI windows -> alert changes (the first alert stage; issue #4 adds the rest).

One state per (rule, site), keyed by a stable fingerprint ``"<rule>@<site>"``. Only state changes
are emitted: ``pending``, ``firing``, ``resolved`` (from firing) and ``inactive`` (a pending alert that
never fired). Windows are evaluated in event-time order; a window that does not end after the last
one evaluated for that fingerprint is skipped, so a window closed again after a restart cannot move
the state twice.
"""

from __future__ import annotations

import collections
import logging
import string
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from peakwatch.config import Registry
from peakwatch.domain.models import AlertChange, KpiWindow, Meter
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

if TYPE_CHECKING:  # the store package imports asyncpg; the processor only needs the record's shape
    from peakwatch.store.records import AlertRecord

log = logging.getLogger(__name__)

SUMMARY_FIELDS = frozenset(
    {"value", "site", "site_name", "threshold", "rule", "kpi", "op", "state", "severity", "meter", "silent_s"}
)
"""Names a rule's ``summary`` template may use, e.g. ``"PUE {value:.2f} above {threshold} at {site}"``."""

_CLOSED = (AlertState.INACTIVE, AlertState.RESOLVED)


def fingerprint(rule_name: str, site_id: str, meter_id: str | None = None) -> str:
    return f"{rule_name}@{site_id}" if meter_id is None else f"{rule_name}@{site_id}/{meter_id}"


STALENESS_EVERY_MS = 1_000
"""Staleness is looked at once a second of wall time at most (a scan over every watched meter)."""


def template_is_safe(template: str) -> bool:
    """Only plain known names (no attribute or index access, no positional fields) are allowed."""
    try:
        for _literal, field, spec, _conversion in string.Formatter().parse(template):
            if field is not None and field not in SUMMARY_FIELDS:
                return False
            if spec and ("{" in spec or "}" in spec):
                return False
    except ValueError:
        return False
    return True


def render_summary(template: str, values: Mapping[str, object], fallback: str) -> str:
    """``template`` filled with ``values``, or ``fallback`` when the template cannot be used for them
    (unknown field, a format spec that does not fit the value such as ``{value:.2f}`` with no value)."""
    if not template or not template_is_safe(template):
        return fallback
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return fallback


def evidence(window: KpiWindow) -> Evidence:
    """What a rule's gates look at: completeness and the mean IT load over the window."""
    hours = (window.end_ms - window.start_ms) / 3_600_000
    it_kw = None if window.it_kwh is None or hours <= 0 else window.it_kwh / hours
    return Evidence(completeness=window.completeness, it_kw=it_kw)


class _Tracked:
    __slots__ = ("history", "last_end_ms", "state")

    def __init__(self, state: RuleState, last_end_ms: int) -> None:
        self.state = state
        self.last_end_ms = last_end_ms
        self.history: collections.deque[tuple[int, float]] = collections.deque()
        """Rate-of-change rules: recent ``(window end, value)``, as far back as the span needs."""


class RuleEngine:
    """Evaluates the registry's rules on every closed window of the sites they apply to."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._by_site: dict[str, tuple[ThresholdRule, ...]] = {
            site.id: tuple(r for r in registry.rules if r.applies_to(site.id, site.kind, site.labels))
            for site in registry.sites.values()
        }
        self._tracked: dict[str, _Tracked] = {}
        self._watched: list[tuple[StalenessRule, Meter]] = [
            (rule, meter)
            for rule in registry.staleness_rules
            for meter in registry.meters.values()
            if (site := registry.sites.get(meter.site_id)) is not None
            and rule.applies_to(site.id, site.kind, meter.role.value, site.labels)
        ]
        self._watch_started_ms: int | None = None
        self._orphans: list[AlertRecord] = []
        """Restored open alerts no current rule produces: resolved at the first step."""
        self._last_staleness_ms: int | None = None
        templates = [(r.name, r.summary) for r in registry.rules]
        templates += [(r.name, r.summary) for r in registry.staleness_rules]
        for name, summary in templates:
            if not template_is_safe(summary):
                log.warning(
                    "rule %s: summary template %r uses fields other than %s; a default summary is used",
                    name,
                    summary,
                    sorted(SUMMARY_FIELDS),
                )

    def restore(self, alerts: Iterable[AlertRecord]) -> None:
        """Take over the open (pending or firing) alerts a previous processor left. One whose rule no
        longer applies (a rule removed or rescoped, a meter or site gone) would stay open for ever:
        it is resolved at the first step."""
        current = {fingerprint(r.name, site_id) for site_id, rules in self._by_site.items() for r in rules}
        current |= {fingerprint(r.name, m.site_id, m.id) for r, m in self._watched}
        for a in alerts:
            try:
                state = AlertState(a.state)
            except ValueError:
                continue
            if state in _CLOSED:
                continue
            if a.fingerprint not in current:
                self._orphans.append(a)
                continue
            self._tracked[a.fingerprint] = _Tracked(
                RuleState(state=state, since_ms=a.started_ms, value=a.value), a.updated_ms
            )

    def state(self, rule_name: str, site_id: str) -> RuleState:
        tracked = self._tracked.get(fingerprint(rule_name, site_id))
        return RuleState() if tracked is None else tracked.state

    def evaluate(self, window: KpiWindow) -> list[AlertChange]:
        rules = self._by_site.get(window.site_id, ())
        if not rules:
            return []
        changes: list[AlertChange] = []
        for rule in rules:
            fp = fingerprint(rule.name, window.site_id)
            tracked = self._tracked.get(fp)
            if tracked is None:
                tracked = self._tracked[fp] = _Tracked(RuleState(), window.start_ms - 1)
            if window.end_ms <= tracked.last_end_ms:
                continue
            tracked.last_end_ms = window.end_ms
            value = getattr(window, rule.kpi)
            window_evidence = evidence(window)
            if rule.change_over_ms is not None and value is not None:
                # a window the gates refuse is no evidence, and no baseline for later changes either
                value = (
                    None
                    if gated(rule, window_evidence) is not None
                    else self._change_over(
                        tracked, rule.change_over_ms, window.end_ms, value, window.end_ms - window.start_ms
                    )
                )
            old = tracked.state
            new = evaluate(rule, old, value, window.start_ms, window.end_ms, window_evidence)
            tracked.state = new
            if new.state is old.state or (old.state in _CLOSED and new.state in _CLOSED):
                continue
            changes.append(self._change(rule, window, old, new))
        return changes

    @staticmethod
    def _change_over(
        tracked: _Tracked, span_ms: int, end_ms: int, value: float, window_ms: int
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

    def evaluate_staleness(
        self, now_ms: int, seen_ms: Callable[[str, str], int | None], *, backlog: bool = False
    ) -> list[AlertChange]:
        """Staleness rules on the clock. ``seen_ms(site, meter)``: when the meter last reported (``None``:
        not since watching began). Not while the processor is catching up on a backlog: readings that
        wait in the spool are not silence."""
        if self._watch_started_ms is None:
            self._watch_started_ms = now_ms
        changes = self._resolve_orphans(now_ms)
        if backlog or not self._watched:
            return changes
        if self._last_staleness_ms is not None and now_ms - self._last_staleness_ms < STALENESS_EVERY_MS:
            return []
        self._last_staleness_ms = now_ms
        for rule, meter in self._watched:
            fp = fingerprint(rule.name, meter.site_id, meter.id)
            tracked = self._tracked.get(fp)
            old = RuleState() if tracked is None else tracked.state
            new = staleness(rule, old, seen_ms(meter.site_id, meter.id), now_ms, self._watch_started_ms)
            if new.state is old.state or (old.state in _CLOSED and new.state in _CLOSED):
                continue
            self._tracked[fp] = _Tracked(new, now_ms)
            changes.append(self._stale_change(rule, meter, new, now_ms))
        return changes

    def _resolve_orphans(self, now_ms: int) -> list[AlertChange]:
        orphans, self._orphans = self._orphans, []
        return [
            AlertChange(
                fingerprint=a.fingerprint,
                rule=a.rule,
                site_id=a.site_id,
                state=(
                    AlertState.RESOLVED if a.state == AlertState.FIRING.value else AlertState.INACTIVE
                ).value,
                severity=a.severity,
                summary=f"{a.summary} (closed: its rule, site or meter is no longer configured)",
                value=a.value,
                started_ms=a.started_ms,
                at_ms=now_ms,
            )
            for a in orphans
        ]

    def _stale_change(self, rule: StalenessRule, meter: Meter, new: RuleState, now_ms: int) -> AlertChange:
        site = self._registry.sites.get(meter.site_id)
        assert new.since_ms is not None
        silent_s = (now_ms - new.since_ms) / 1000
        fallback = (
            f"meter {meter.id} at {meter.site_id} silent for {silent_s:.0f} s"
            if new.state is AlertState.FIRING
            else f"meter {meter.id} at {meter.site_id} reports again"
        )
        summary = render_summary(
            rule.summary,
            {
                "value": silent_s,
                "silent_s": silent_s,
                "site": meter.site_id,
                "site_name": site.name if site else meter.site_id,
                "meter": meter.id,
                "threshold": rule.silent_ms / 1000,
                "rule": rule.name,
                "kpi": "silence",
                "op": ">=",
                "state": new.state.value,
                "severity": rule.severity,
            },
            fallback,
        )
        return AlertChange(
            fingerprint=fingerprint(rule.name, meter.site_id, meter.id),
            rule=rule.name,
            site_id=meter.site_id,
            state=new.state.value,
            severity=rule.severity,
            summary=summary,
            value=silent_s if new.state is AlertState.FIRING else None,
            started_ms=new.since_ms,
            at_ms=now_ms,
        )

    def _change(self, rule: ThresholdRule, window: KpiWindow, old: RuleState, new: RuleState) -> AlertChange:
        site = self._registry.sites.get(window.site_id)
        value_text = "n/a" if new.value is None else f"{new.value:.4g}"
        fallback = (
            f"{rule.name} {new.state.value} at {window.site_id}: {rule.kpi} = {value_text} "
            f"(rule: {rule.op} {rule.threshold})"
        )
        summary = render_summary(
            rule.summary,
            {
                "value": new.value,
                "site": window.site_id,
                "site_name": site.name if site else window.site_id,
                "threshold": rule.threshold,
                "rule": rule.name,
                "kpi": rule.kpi,
                "op": rule.op,
                "state": new.state.value,
                "severity": rule.severity,
            },
            fallback,
        )
        started = new.since_ms if new.since_ms is not None else old.since_ms
        return AlertChange(
            fingerprint=fingerprint(rule.name, window.site_id),
            rule=rule.name,
            site_id=window.site_id,
            state=new.state.value,
            severity=rule.severity,
            summary=summary,
            value=new.value,
            started_ms=started if started is not None else window.start_ms,
            at_ms=window.end_ms,
        )
