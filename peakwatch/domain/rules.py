"""Threshold rules over KPI windows: the first alert, evaluated in event time.

A rule breaches when ``value <op> threshold``. It goes ``inactive -> pending`` on the first breaching
window, ``pending -> firing`` once it has breached continuously for ``for_ms`` (measured from the start
of the first breaching window to the end of the current one), and ``firing -> resolved`` on the first
window that does not breach. A window with no value (``None``: e.g. no IT energy) leaves the state as
it is: no evidence either way. The full engine (hysteresis, staleness, routing) is issue #4.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
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

    def applies_to(self, site_id: str, kind: SiteKind) -> bool:
        return (not self.site_ids or site_id in self.site_ids) and (
            not self.site_kinds or kind in self.site_kinds
        )

    def breaches(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)


class RuleState(msgspec.Struct, frozen=True, kw_only=True):
    """Where one rule stands for one site. ``since_ms``: start of the current breach."""

    state: AlertState = AlertState.INACTIVE
    since_ms: int | None = None
    value: float | None = None


def evaluate(
    rule: ThresholdRule, current: RuleState, value: float | None, start_ms: int, end_ms: int
) -> RuleState:
    """The rule's next state after the window ``[start_ms, end_ms)`` whose KPI is ``value``."""
    if value is None:
        return current
    if rule.breaches(value):
        since = current.since_ms if current.state in (AlertState.PENDING, AlertState.FIRING) else start_ms
        assert since is not None
        held_ms = end_ms - since
        state = (
            AlertState.FIRING
            if current.state is AlertState.FIRING or held_ms >= rule.for_ms
            else AlertState.PENDING
        )
        return RuleState(state=state, since_ms=since, value=value)
    if current.state is AlertState.FIRING:
        return RuleState(state=AlertState.RESOLVED, since_ms=current.since_ms, value=value)
    return RuleState(state=AlertState.INACTIVE, value=value)
