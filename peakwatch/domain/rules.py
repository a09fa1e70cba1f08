"""Threshold rules over KPI windows, evaluated in event time.

A rule breaches when ``value <op> threshold``. It goes ``inactive -> pending`` on the first breaching
window, ``pending -> firing`` once it has breached continuously for ``for_ms`` (measured from the start
of the first breaching window to the end of the current one), and ``firing -> resolved`` once the value
has *recovered* continuously for ``keep_firing_for_ms`` (0: the first recovered window).

Recovered means back on the safe side of ``recover_threshold`` when the rule has one, else simply not
breaching. A separate recovery threshold is hysteresis: a PUE oscillating around 1.5 fires once at
> 1.5 and resolves only below, say, 1.45, instead of flapping with every window.

A window with no value (``None``: e.g. no IT energy), or one the rule's gates refuse (completeness
below ``min_completeness``, IT load below ``min_it_kw``: a PUE computed on a near-idle hall or on half
the meters is not evidence), leaves the state as it is: no evidence either way. Staleness, routing and
notifications are issue #4's other parts.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal

import msgspec

from peakwatch.domain.models import SiteKind

Op = Literal[">", ">=", "<", "<="]
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
KPI_FIELDS: Final = frozenset(
    {
        "pue",
        "electrification_rate",
        "carbon_intensity_kg_per_kwh",
        "green_power_share",
        "emissions_kg",
        "electricity_kwh",
        "completeness",
    }
)


RESTATED: Final = "restated"
"""Why an alert closed when its evidence vanished: the windows it was judged on were recomputed (late or
corrected data) and no longer breach its rule (``AlertChange.reason``; processor/rejudge.py)."""


class AlertState(enum.StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class ThresholdRule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kpi: str
    op: Op
    threshold: float
    for_ms: int = 0
    severity: str = "warning"
    summary: str = ""
    site_kinds: tuple[SiteKind, ...] = ()
    """Empty means every kind."""
    site_ids: tuple[str, ...] = ()
    """Empty means every site."""
    site_labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Only sites carrying every one of these labels; empty means every site."""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Added to the alert's labels (``team: facilities``): what notification routes match on."""
    recover_threshold: float | None = None
    """Hysteresis: a firing alert recovers only on the safe side of this (``None``: of ``threshold``)."""
    keep_firing_for_ms: int = 0
    """A firing alert resolves only after this long recovered (a single good window does not end it)."""
    min_completeness: float = 0.0
    """Windows with a lower completeness (share of expected meter-minutes present) are no evidence."""
    min_it_kw: float | None = None
    """Windows whose mean IT load is below this are no evidence (PUE of a near-idle hall is noise)."""
    change_over_ms: int | None = None
    """Rate of change: compare the KPI's change over this span (value now minus the value of the
    window that ended this long before) instead of the KPI itself, e.g. PUE up by more than 0.1 in
    15 minutes. ``None``: compare the value."""

    def applies_to(self, site_id: str, kind: SiteKind, labels: Mapping[str, str] | None = None) -> bool:
        return (
            (not self.site_ids or site_id in self.site_ids)
            and (not self.site_kinds or kind in self.site_kinds)
            and _has_labels(labels or {}, self.site_labels)
        )

    def breaches(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)

    def recovered(self, value: float) -> bool:
        return not _OPS[self.op](
            value, self.threshold if self.recover_threshold is None else self.recover_threshold
        )

    def problem(self) -> str | None:
        """Why the rule cannot be used as written (``None``: it can)."""
        if self.recover_threshold is not None:
            upward = self.op in (">", ">=")
            if (upward and self.recover_threshold > self.threshold) or (
                not upward and self.recover_threshold < self.threshold
            ):
                side = "at or below" if upward else "at or above"
                return (
                    f"recover threshold {self.recover_threshold:g} must be {side} the threshold "
                    f"{self.threshold:g} (it is the safe side of a {self.op} rule)"
                )
        if self.for_ms < 0 or self.keep_firing_for_ms < 0:
            return "durations must not be negative"
        if self.change_over_ms is not None and self.change_over_ms <= 0:
            return "change_over must be positive"
        if not 0.0 <= self.min_completeness <= 1.0:
            return f"min_completeness {self.min_completeness:g} must be a share between 0 and 1"
        return None


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """What the gates look at besides the value: the window's completeness and mean IT load."""

    completeness: float = 1.0
    it_kw: float | None = None


def gated(rule: ThresholdRule, evidence: Evidence) -> str | None:
    """Why the window is no evidence for ``rule`` (``None``: it is)."""
    if evidence.completeness < rule.min_completeness:
        return f"completeness {evidence.completeness:.0%} below {rule.min_completeness:.0%}"
    if rule.min_it_kw is not None and (evidence.it_kw is None or evidence.it_kw < rule.min_it_kw):
        load = "unknown" if evidence.it_kw is None else f"{evidence.it_kw:.4g} kW"
        return f"IT load {load} below {rule.min_it_kw:g} kW"
    return None


class RuleState(msgspec.Struct, frozen=True, kw_only=True):
    """Where one rule stands for one site. ``since_ms``: start of the current breach."""

    state: AlertState = AlertState.INACTIVE
    since_ms: int | None = None
    value: float | None = None
    recovering_since_ms: int | None = None
    """While firing: start of the current run of recovered windows (``keep_firing_for_ms``)."""


def evaluate(
    rule: ThresholdRule,
    current: RuleState,
    value: float | None,
    start_ms: int,
    end_ms: int,
    evidence: Evidence | None = None,
) -> RuleState:
    """The rule's next state after the window ``[start_ms, end_ms)`` whose KPI is ``value``."""
    if value is None or (evidence is not None and gated(rule, evidence) is not None):
        return current
    if current.state is AlertState.FIRING:
        if not rule.recovered(value):
            return RuleState(state=AlertState.FIRING, since_ms=current.since_ms, value=value)
        recovering = current.recovering_since_ms if current.recovering_since_ms is not None else start_ms
        if end_ms - recovering >= rule.keep_firing_for_ms:
            return RuleState(state=AlertState.RESOLVED, since_ms=current.since_ms, value=value)
        return RuleState(
            state=AlertState.FIRING, since_ms=current.since_ms, value=value, recovering_since_ms=recovering
        )
    if rule.breaches(value):
        since = current.since_ms if current.state in (AlertState.PENDING, AlertState.FIRING) else start_ms
        assert since is not None
        held_ms = end_ms - since
        state = AlertState.FIRING if held_ms >= rule.for_ms else AlertState.PENDING
        return RuleState(state=state, since_ms=since, value=value)
    return RuleState(state=AlertState.INACTIVE, value=value)


class StalenessRule(msgspec.Struct, frozen=True, kw_only=True):
    """Fires for a meter that has not reported for ``silent_ms`` of wall-clock time, evaluated on the
    processor's clock: a dead meter sends nothing that could trigger a rule, so waiting for data would
    never raise it. One alert per meter; it resolves when the meter reports again."""

    name: str
    silent_ms: int
    severity: str = "warning"
    summary: str = ""
    site_kinds: tuple[SiteKind, ...] = ()
    site_ids: tuple[str, ...] = ()
    site_labels: dict[str, str] = msgspec.field(default_factory=dict)
    meter_roles: tuple[str, ...] = ()
    """Meter roles it watches (``it_load``, ``pv_generation`` ...); empty means every meter."""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    per: Literal["meter", "site"] = "meter"
    """``meter``: one alert per silent meter. ``site``: one alert when every watched meter of the site
    is silent (the site is offline: its uplink or collector is down), which can inhibit the site's
    meter and KPI alerts (docs/alerting.md)."""

    def applies_to(
        self, site_id: str, kind: SiteKind, role: str, labels: Mapping[str, str] | None = None
    ) -> bool:
        return (
            (not self.site_ids or site_id in self.site_ids)
            and (not self.site_kinds or kind in self.site_kinds)
            and (not self.meter_roles or role in self.meter_roles)
            and _has_labels(labels or {}, self.site_labels)
        )


def _has_labels(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def silent_due_ms(rule: StalenessRule, last_seen_ms: int | None, watching_since_ms: int) -> int:
    """When a quiet meter counts as silent if nothing is reported until then: ``silent_ms`` after the
    later of its last report and the start of watching (``staleness``; the processor's scan also
    bounds its work with it, processor/silence.py)."""
    reported = last_seen_ms is not None and last_seen_ms > watching_since_ms
    basis = last_seen_ms if reported and last_seen_ms is not None else watching_since_ms
    return basis + rule.silent_ms


def staleness(
    rule: StalenessRule, current: RuleState, last_seen_ms: int | None, now_ms: int, watching_since_ms: int
) -> RuleState:
    """The rule's state for a meter last seen at ``last_seen_ms`` (``None``: never), judged by a
    processor watching since ``watching_since_ms``. Silence is counted from the later of the two: a
    restarted processor gives every meter one ``silent_ms`` of grace (its own downtime is not the
    meter's silence), and an alert that was firing stays firing until the meter reports. Firing starts
    at the last sign of life; there is no pending stage, the silence is its own duration."""
    reported = last_seen_ms is not None and last_seen_ms > watching_since_ms
    if current.state is AlertState.FIRING and not reported:
        return current
    due_ms = silent_due_ms(rule, last_seen_ms, watching_since_ms)
    if now_ms >= due_ms:
        since_ms = watching_since_ms if last_seen_ms is None else last_seen_ms
        return RuleState(state=AlertState.FIRING, since_ms=since_ms)
    if current.state is AlertState.FIRING:
        return RuleState(state=AlertState.RESOLVED, since_ms=current.since_ms)
    return RuleState(state=AlertState.INACTIVE)


def change_over(
    history: Sequence[tuple[int, float]], end_ms: int, value: float, span_ms: int, tolerance_ms: int
) -> float | None:
    """``value`` minus the value of the newest window in ``history`` (``(end_ms, value)``, oldest first)
    that ended at least ``span_ms`` before ``end_ms``, if it ended no more than ``tolerance_ms`` earlier
    than that; ``None`` otherwise (not enough history yet, or a gap: a slow drift over hours is not a
    jump within the span)."""
    before: tuple[int, float] | None = None
    for ended, old in history:
        if ended > end_ms - span_ms:
            break
        before = (ended, old)
    if before is None or before[0] < end_ms - span_ms - tolerance_ms:
        return None
    return value - before[1]
