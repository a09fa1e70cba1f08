"""Why a window was restated: which queued requests explain the difference, and a re-derived meter's
window flags.

Inputs are stored with their restatement request in one transaction, so when the accountant recomputes
a window for one request, the inputs of requests queued after it are already applied. The revision
must therefore name each request whose input the window's difference shows (``attribute``), never
the one that happened to run first: the revision history is the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from peakwatch.domain.models import KpiWindow, MeterFlag, RestatementReason
from peakwatch.store import restate

if TYPE_CHECKING:
    from peakwatch.store.records import RestatementRequest

_INPUT_FIELDS: Final[Mapping[RestatementReason, tuple[str, ...]]] = {
    RestatementReason.VALUE_ADDED: ("value_added_10k_cny",),
    RestatementReason.GREEN_INSTRUMENTS: ("green_certificates_kwh",),
}
"""What a monthly input changes in a window: only a window where that differs cites the input."""
_DATA_FIELDS: Final = ("components", "completeness", "estimated", "max_demand_kw")
"""What changed data changes in a window (everything else is computed from these and the inputs)."""
NOT_FLAGS: Final = frozenset({MeterFlag.FIRST.value, MeterFlag.LATE.value})
"""Meter events that do not flag a window (as on the live path)."""
REREAD: Final = frozenset({MeterFlag.RESET.value, MeterFlag.ROLLOVER.value, MeterFlag.REGISTER_DROP.value})
"""How the live path read a drop of the register. A re-derivation (with a replacement recorded since)
may read it otherwise, so these flags of the meter are withdrawn when it no longer reports them; flags
about arrival (out of order, duplicate) stay."""


def _factors_changed(old: KpiWindow, new: KpiWindow) -> set[str]:
    """Ids of the factors whose version (or use) differs between the two."""
    slots = old.factors_used.keys() | new.factors_used.keys()
    refs = {
        ref
        for s in slots
        if old.factors_used.get(s) != new.factors_used.get(s)
        for ref in (old.factors_used.get(s), new.factors_used.get(s))
        if ref is not None
    }
    return {ref.split("@", 1)[0] for ref in refs}


def attribute(
    handled: RestatementRequest, later: Sequence[RestatementRequest], old: KpiWindow, new: KpiWindow
) -> list[restate.Cause]:
    """The requests whose inputs explain how ``new`` differs from ``old``: the request being handled and
    the later pending ones of the site (their inputs are stored, so this recomputation applies them too).
    A request is cited only when the window's part that its kind of input feeds changed: a factor
    revision when the window's version of that factor changed, value added or certificates when the
    window's monthly value changed, data when the window's components changed. Nothing explains it (a
    registry change): the handled request alone."""
    factors = _factors_changed(old, new)
    causes: list[restate.Cause] = []
    for r in (handled, *later):
        if r is not handled and (r.to_ms <= new.start_ms or r.from_ms >= new.end_ms):
            continue  # a later request's range does not reach this window
        try:
            reason = RestatementReason(r.reason)
        except ValueError:
            continue
        if reason is RestatementReason.FACTOR_REVISION:
            hit = bool(factors) if r.factor_id is None else r.factor_id in factors
        elif reason in _INPUT_FIELDS:
            hit = restate.changed(old, new, _INPUT_FIELDS[reason])
        else:
            hit = restate.changed(old, new, _DATA_FIELDS)
        if hit:
            causes.append(_cause(r))
    return causes or [_cause(handled)]


def _cause(r: RestatementRequest) -> restate.Cause:
    return restate.Cause(request_id=r.id, reason=r.reason, detail=r.detail or r.reason)


class Flags:
    """A re-derived meter's window flags: what its derivation reports, and what the live path flagged for
    it that the derivation no longer sees."""

    __slots__ = ("added", "withdrawn")

    def __init__(self) -> None:
        self.added: dict[int, set[str]] = {}
        self.withdrawn: dict[int, set[str]] = {}
