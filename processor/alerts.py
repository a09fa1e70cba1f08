"""Alert rules -> alert changes: threshold and rate rules over closed KPI windows, staleness on a clock.

One state per (rule, site), keyed by a stable fingerprint ``"<rule>@<site>"``. Only state changes
are emitted: ``pending``, ``firing``, ``resolved`` (from firing) and ``inactive`` (a pending alert that
never fired). Windows are evaluated in event-time order; a window that does not end after the last
one evaluated for that fingerprint is skipped, so a window closed again after a restart cannot move
the state twice.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from peakwatch.config import Registry
from peakwatch.domain.models import AlertChange, KpiWindow, Meter, Site
from peakwatch.domain.rules import (
    RESTATED,
    AlertState,
    RuleState,
    StalenessRule,
    ThresholdRule,
    gated,
    silent_due_ms,
    staleness,
)
from processor.rejudge import Tracked, advance, judged, rejudge_from, rejudged_state, remember_change
from processor.silence import NO_DUE, SeenMs, SilenceSchedule, Watched

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


def alert_labels(
    base: Mapping[str, str], site: Site | None, rule_labels: Mapping[str, str]
) -> dict[str, str]:
    """The labels routing matches on: the rule's own labels, then the site's registry labels and kind,
    then the identifying ones (``alertname``, ``site``, ``severity``, ``kpi``/``meter``). Later ones win:
    a rule (which a site admin may write) cannot pass its alerts off as another site's or kind's, so
    inhibition and silences keyed on site labels stay sound."""
    labels = dict(rule_labels)
    if site is not None:
        labels.update(site.labels)
        labels["site_kind"] = site.kind.value
    labels.update(base)
    return labels


def _compares(rule: ThresholdRule | StalenessRule) -> tuple[object, ...]:
    """What a rule's state means: when this changes, the old state says nothing about the new rule."""
    if isinstance(rule, StalenessRule):
        return ("staleness", rule.per)
    return ("threshold", rule.kpi, rule.op, rule.change_over_ms)


class RuleEngine:
    """Evaluates the registry's rules on every closed window of the sites they apply to."""

    def __init__(
        self, registry: Registry, rules: Iterable[ThresholdRule | StalenessRule] | None = None
    ) -> None:
        """``rules``: the rules to run (default: the registry's; the processor adds those made through
        the API)."""
        self._registry = registry
        self._tracked: dict[str, Tracked] = {}
        self._open: dict[str, AlertChange] = {}
        """The last change of every open (pending or firing) alert, to close it if its rule goes."""
        self._watch_started_ms: int | None = None
        self._orphans: list[AlertChange] = []
        """Open alerts no current rule produces: closed at the next step."""
        self._last_staleness_ms: int | None = None
        self._rejudged: list[AlertChange] = []
        """Changes re-judgements of restated windows made: emitted first at the next step."""
        self._configure((*registry.rules, *registry.staleness_rules) if rules is None else tuple(rules))

    def _configure(self, rules: tuple[ThresholdRule | StalenessRule, ...]) -> None:
        registry = self._registry
        self._rules = rules
        threshold = [r for r in rules if isinstance(r, ThresholdRule)]
        stale = [r for r in rules if isinstance(r, StalenessRule)]
        self._by_site: dict[str, tuple[ThresholdRule, ...]] = {
            site.id: tuple(r for r in threshold if r.applies_to(site.id, site.kind, site.labels))
            for site in registry.sites.values()
        }
        self._watch: list[Watched] = [
            Watched(rule, meter.site_id, meter, (), fingerprint(rule.name, meter.site_id, meter.id))
            for rule in stale
            if rule.per == "meter"
            for meter in registry.meters.values()
            if (site := registry.sites.get(meter.site_id)) is not None
            and rule.applies_to(site.id, site.kind, meter.role.value, site.labels)
        ]
        self._watch += [
            Watched(rule, site.id, None, meters, fingerprint(rule.name, site.id))
            for rule in stale
            if rule.per == "site"
            for site in registry.sites.values()
            if (
                meters := tuple(
                    m
                    for m in registry.site_meters(site.id)
                    if rule.applies_to(site.id, site.kind, m.role.value, site.labels)
                )
            )
        ]
        self._silence = SilenceSchedule()
        for rule in rules:
            if not template_is_safe(rule.summary):
                log.warning(
                    "rule %s: summary template %r uses fields other than %s; a default summary is used",
                    rule.name,
                    rule.summary,
                    sorted(SUMMARY_FIELDS),
                )

    def _current(self) -> set[str]:
        """Fingerprints the configured rules can produce."""
        current = {fingerprint(r.name, site_id) for site_id, rules in self._by_site.items() for r in rules}
        current |= {watched.fingerprint for watched in self._watch}
        return current

    def reload(self, rules: Iterable[ThresholdRule | StalenessRule]) -> None:
        """Run ``rules`` from now on. A rule that stays (same name, sites and comparison) keeps its state,
        so a changed threshold judges the next window without restarting ``for``; the open alerts of a
        rule that went (removed, no longer applying to a site or meter, or now comparing another KPI,
        operator or span) are closed at the next step."""
        rules = tuple(rules)
        before = {r.name: _compares(r) for r in self._rules}
        changed = {r.name for r in rules if r.name in before and before[r.name] != _compares(r)}
        self._configure(rules)
        current = self._current()
        # a rule that now compares something else is a new rule: its alerts close, its state starts over
        for fp in [fp for fp, change in self._open.items() if change.rule in changed]:
            self._orphans.append(self._open.pop(fp))
        for fp in [fp for fp in self._tracked if fp.split("@", 1)[0] in changed]:
            del self._tracked[fp]
        for fp in [fp for fp in self._open if fp not in current]:
            self._orphans.append(self._open.pop(fp))
        for fp in [fp for fp in self._tracked if fp not in current]:
            del self._tracked[fp]

    def restore(self, alerts: Iterable[AlertRecord]) -> None:
        """Take over the open (pending or firing) alerts a previous processor left. One whose rule no
        longer applies (a rule removed or rescoped, a meter or site gone) would stay open for ever:
        it is resolved at the first step."""
        current = self._current()
        self._silence.invalidate()
        for a in alerts:
            try:
                state = AlertState(a.state)
            except ValueError:
                continue
            if state in _CLOSED:
                continue
            change = AlertChange(
                fingerprint=a.fingerprint,
                rule=a.rule,
                site_id=a.site_id,
                state=a.state,
                severity=a.severity,
                summary=a.summary,
                value=a.value,
                started_ms=a.started_ms,
                at_ms=a.updated_ms,
                labels=a.labels,
            )
            if a.fingerprint not in current:
                self._orphans.append(change)
                continue
            self._open[a.fingerprint] = change
            self._tracked[a.fingerprint] = Tracked(
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
                tracked = self._tracked[fp] = Tracked(RuleState(), window.start_ms - 1)
            if window.end_ms <= tracked.last_end_ms:
                continue
            tracked.last_end_ms = window.end_ms
            seen = judged(window, rule.kpi)
            tracked.recent.append(seen)
            old, new = advance(rule, tracked, seen)
            if new.state is old.state or (old.state in _CLOSED and new.state in _CLOSED):
                continue
            changes.append(
                self._note(self._change(rule, window.site_id, window.start_ms, window.end_ms, old, new))
            )
        return changes

    # ------------------------------------------------------------------ restated windows

    def _replay_span(
        self, rule: ThresholdRule, site_id: str, from_ms: int, to_ms: int
    ) -> tuple[int, int] | None:
        tracked = self._tracked.get(fingerprint(rule.name, site_id))
        if tracked is None or from_ms >= tracked.last_end_ms:
            return None  # the restated windows were not judged yet: the live path judges them as they are
        state = tracked.state
        anchor = state.since_ms if state.state not in _CLOSED and state.since_ms is not None else None
        return rejudge_from(
            rule, state, anchor or tracked.closed_from_ms, tracked.last_end_ms, from_ms, to_ms
        )

    def rejudge_span(self, site_id: str, from_ms: int, to_ms: int) -> tuple[int, int] | None:
        """The stored windows a re-judgement of the site's rules needs after the windows in
        ``[from_ms, to_ms)`` were restated: ``[start, end)`` (``None``: no rule needs one)."""
        spans = [
            (span[0], self._tracked[fingerprint(rule.name, site_id)].last_end_ms)
            for rule in self._by_site.get(site_id, ())
            if (span := self._replay_span(rule, site_id, from_ms, to_ms)) is not None
        ]
        if not spans:
            return None
        return min(s for s, _ in spans), max(e for _, e in spans)

    def rejudge(
        self, site_id: str, from_ms: int, to_ms: int, stored: Sequence[KpiWindow], stored_to: int
    ) -> None:
        """Judge again, from a state with no alert, the windows of every rule of the site whose look-back
        reaches restated windows (from ``from_ms``): the stored ones up to ``stored_to`` (restated), then
        those judged live after it (not stored yet). An open alert whose evidence vanished closes with
        reason ``restated``; one whose breach now starts elsewhere gets the corrected start; a breach the
        restated windows now show opens. The changes go out at the next step, before its windows
        (``take_rejudged``)."""
        for rule in self._by_site.get(site_id, ()):
            span = self._replay_span(rule, site_id, from_ms, to_ms)
            if span is None:
                continue
            tracked = self._tracked[fingerprint(rule.name, site_id)]
            history_from, start = span
            replay = Tracked(RuleState(), start - 1)
            replayed = [
                judged(w, rule.kpi) for w in stored if history_from <= w.start_ms and w.end_ms <= stored_to
            ]
            for w in replayed + [w for w in tracked.recent if w.start_ms >= stored_to]:
                if w.start_ms >= start:
                    advance(rule, replay, w)
                elif (
                    rule.change_over_ms is not None
                    and w.value is not None
                    and gated(rule, w.evidence) is None
                ):
                    remember_change(replay, rule.change_over_ms, w.end_ms, w.value, w.end_ms - w.start_ms)
            old = tracked.state
            new, closing = rejudged_state(old, replay.state)
            tracked.state, tracked.history, tracked.closed_from_ms = (
                replay.state,
                replay.history,
                replay.closed_from_ms,
            )
            if new is None:
                continue
            change = self._change(
                rule, site_id, new.since_ms or start, tracked.last_end_ms, old, new, closing
            )
            self._rejudged.append(self._note(change))

    def take_rejudged(self) -> list[AlertChange]:
        """The alert changes re-judgements made since the last call, in order."""
        changes, self._rejudged = self._rejudged, []
        return changes

    def evaluate_staleness(self, now_ms: int, seen_ms: SeenMs, *, backlog: bool = False) -> list[AlertChange]:
        """Staleness rules on the clock. ``seen_ms(site, meter)``: when the meter last reported (``None``:
        not since watching began); it goes back only if the clock does. Not while the processor is
        catching up on a backlog: readings that wait in the spool are not silence. Only the open alerts
        are judged until a quiet meter may have fallen silent (``processor/silence.py``)."""
        if self._watch_started_ms is None:
            self._watch_started_ms = now_ms
        schedule = self._silence
        schedule.clock(now_ms)
        changes = self._resolve_orphans(now_ms)
        if backlog or not self._watch:
            return changes
        if self._last_staleness_ms is not None and now_ms - self._last_staleness_ms < STALENESS_EVERY_MS:
            return changes  # the orphans closed above still go out
        self._last_staleness_ms = now_ms
        started = self._watch_started_ms
        full, positions = schedule.entries(now_ms, len(self._watch))
        hot: list[int] = []
        due = NO_DUE
        high: int | None = None
        for at in positions:
            watched = self._watch[at]
            rule = watched.rule
            seen = watched.seen(seen_ms)
            tracked = self._tracked.get(watched.fingerprint)
            old = RuleState() if tracked is None else tracked.state
            new = staleness(rule, old, seen, now_ms, started)
            state = old.state
            if not (new.state is old.state or (old.state in _CLOSED and new.state in _CLOSED)):
                self._tracked[watched.fingerprint] = Tracked(new, now_ms)
                change = self._stale_change(rule, watched.site_id, watched.meter, new, now_ms)
                changes.append(self._note(change))
                state = new.state
            if state in _CLOSED:
                due = min(due, silent_due_ms(rule, seen, started))
            else:
                hot.append(at)
            if seen is not None and (high is None or seen > high):
                high = seen
        schedule.scanned(full, hot, due, high)
        return changes

    def _note(self, change: AlertChange) -> AlertChange:
        if change.state in (AlertState.PENDING, AlertState.FIRING):
            self._open[change.fingerprint] = change
        else:
            self._open.pop(change.fingerprint, None)
        return change

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
                labels=a.labels,
            )
            for a in orphans
        ]

    def _stale_change(
        self, rule: StalenessRule, site_id: str, meter: Meter | None, new: RuleState, now_ms: int
    ) -> AlertChange:
        """A staleness alert for one meter, or for the whole site (``meter`` ``None``: ``per: site``)."""
        site = self._registry.sites.get(site_id)
        assert new.since_ms is not None
        silent_s = (now_ms - new.since_ms) / 1000
        what = f"meter {meter.id} at {site_id}" if meter is not None else f"site {site_id}"
        fallback = (
            f"{what} silent for {silent_s:.0f} s"
            if new.state is AlertState.FIRING
            else f"{what} reports again"
        )
        summary = render_summary(
            rule.summary,
            {
                "value": silent_s,
                "silent_s": silent_s,
                "site": site_id,
                "site_name": site.name if site else site_id,
                "meter": meter.id if meter is not None else "",
                "threshold": rule.silent_ms / 1000,
                "rule": rule.name,
                "kpi": "silence",
                "op": ">=",
                "state": new.state.value,
                "severity": rule.severity,
            },
            fallback,
        )
        base = {"alertname": rule.name, "site": site_id, "severity": rule.severity}
        if meter is not None:
            base |= {"meter": meter.id, "meter_role": meter.role.value}
        return AlertChange(
            fingerprint=fingerprint(rule.name, site_id, None if meter is None else meter.id),
            rule=rule.name,
            site_id=site_id,
            state=new.state.value,
            severity=rule.severity,
            summary=summary,
            value=silent_s if new.state is AlertState.FIRING else None,
            started_ms=new.since_ms,
            at_ms=now_ms,
            labels=alert_labels(base, site, rule.labels),
        )

    def _change(
        self,
        rule: ThresholdRule,
        site_id: str,
        start_ms: int,
        end_ms: int,
        old: RuleState,
        new: RuleState,
        reason: str | None = None,
    ) -> AlertChange:
        site = self._registry.sites.get(site_id)
        value_text = "n/a" if new.value is None else f"{new.value:.4g}"
        fallback = (
            f"{rule.name} {new.state.value} at {site_id}: {rule.kpi} = {value_text} "
            f"(rule: {rule.op} {rule.threshold})"
        )
        summary = render_summary(
            rule.summary,
            {
                "value": new.value,
                "site": site_id,
                "site_name": site.name if site else site_id,
                "threshold": rule.threshold,
                "rule": rule.name,
                "kpi": rule.kpi,
                "op": rule.op,
                "state": new.state.value,
                "severity": rule.severity,
            },
            fallback,
        )
        if reason == RESTATED:
            summary += f" (restated: the recomputed windows no longer breach; {rule.kpi} now {value_text})"
        started = new.since_ms if new.since_ms is not None else old.since_ms
        return AlertChange(
            fingerprint=fingerprint(rule.name, site_id),
            rule=rule.name,
            site_id=site_id,
            state=new.state.value,
            severity=rule.severity,
            summary=summary,
            value=new.value,
            started_ms=started if started is not None else start_ms,
            at_ms=end_ms,
            labels=alert_labels(
                {"alertname": rule.name, "site": site_id, "severity": rule.severity, "kpi": rule.kpi},
                site,
                rule.labels,
            ),
            reason=reason,
        )
