"""Threshold rules over closed KPI windows -> alert changes (the first alert stage; issue #4 adds the rest).

One state per (rule, site), keyed by a stable fingerprint ``"<rule>@<site>"``. Only state changes
are emitted: ``pending``, ``firing``, ``resolved`` (from firing) and ``inactive`` (a pending alert that
never fired). Windows are evaluated in event-time order; a window that does not end after the last
one evaluated for that fingerprint is skipped, so a window closed again after a restart cannot move
the state twice.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from peakwatch.config import Registry
from peakwatch.domain.models import AlertChange, KpiWindow
from peakwatch.domain.rules import AlertState, RuleState, ThresholdRule, evaluate

if TYPE_CHECKING:  # the store package imports asyncpg; the processor only needs the record's shape
    from peakwatch.store.records import AlertRecord

log = logging.getLogger(__name__)

SUMMARY_FIELDS = frozenset(
    {"value", "site", "site_name", "threshold", "rule", "kpi", "op", "state", "severity"}
)
"""Names a rule's ``summary`` template may use, e.g. ``"PUE {value:.2f} above {threshold} at {site}"``."""

_CLOSED = (AlertState.INACTIVE, AlertState.RESOLVED)


def fingerprint(rule_name: str, site_id: str) -> str:
    return f"{rule_name}@{site_id}"


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


class _Tracked:
    __slots__ = ("last_end_ms", "state")

    def __init__(self, state: RuleState, last_end_ms: int) -> None:
        self.state = state
        self.last_end_ms = last_end_ms


class RuleEngine:
    """Evaluates the registry's rules on every closed window of the sites they apply to."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._by_site: dict[str, tuple[ThresholdRule, ...]] = {
            site.id: tuple(r for r in registry.rules if r.applies_to(site.id, site.kind))
            for site in registry.sites.values()
        }
        self._tracked: dict[str, _Tracked] = {}
        for rule in registry.rules:
            if not template_is_safe(rule.summary):
                log.warning(
                    "rule %s: summary template %r uses fields other than %s; a default summary is used",
                    rule.name,
                    rule.summary,
                    sorted(SUMMARY_FIELDS),
                )

    def restore(self, alerts: Iterable[AlertRecord]) -> None:
        """Take over the open (pending or firing) alerts a previous processor left."""
        for a in alerts:
            try:
                state = AlertState(a.state)
            except ValueError:
                continue
            if state in _CLOSED:
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
            old = tracked.state
            new = evaluate(rule, old, value, window.start_ms, window.end_ms)
            tracked.state = new
            if new.state is old.state or (old.state in _CLOSED and new.state in _CLOSED):
                continue
            changes.append(self._change(rule, window, old, new))
        return changes

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
