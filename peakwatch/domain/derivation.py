"""Re-derivation: a meter's amounts rebuilt from its stored readings with the live path's rules.

After late or out-of-order data, or a replacement recorded afterwards, the accountant re-derives the
meter's ledger: the readings are accounted oldest first by a fresh ``MeterRegister``, so a
re-derivation gives exactly what the live path gave for the same readings in time order.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import msgspec

from peakwatch.domain.energy import MeterRegister
from peakwatch.domain.models import Meter, MeterEvent, MeterReplacement, Reading, Register
from peakwatch.domain.outcomes import Note
from peakwatch.domain.units import in_range


class Derivation(msgspec.Struct, frozen=True, kw_only=True):
    """A meter's amounts re-derived from its readings."""

    amounts: dict[int, float]
    """Window start -> amount (canonical unit), for windows starting in the requested range."""
    estimated: set[int]
    """Window starts among ``amounts`` whose amount was integrated from power."""
    events: list[MeterEvent]
    """Every event the rules reported, in reading order (including ``first`` for the first reading and
    events of the bracket readings outside the range): the caller filters by time."""


def derive_intervals(
    meter: Meter,
    readings: Iterable[Reading],
    replacements: Iterable[MeterReplacement],
    window_ms: int,
    *,
    from_ms: int,
    to_ms: int,
) -> Derivation:
    """Re-derive ``meter``'s amounts for the windows starting in ``[from_ms, to_ms)`` from its readings.

    ``readings`` may come in any order and repeat: one value per timestamp is kept (the first given),
    then they are accounted oldest first with the same rules as the live path, starting without state.
    Include the readings just outside the range (the last one before ``from_ms`` and the first one at or
    after ``to_ms``) so that every interval overlapping the range is complete. ``replacements`` go in
    the order they were recorded: a later record at the same time corrects an earlier one. Readings
    without the meter's main quantity, negative interval amounts and values out of range (refused on
    the live path, so never stored, or stored before the bounds existed) and readings or replacements
    of other meters are ignored.
    """
    reg = MeterRegister(meter)
    for rep in replacements:
        if rep.site_id == meter.site_id and rep.meter_id == meter.id:
            reg.add_replacement(rep)
    get = operator.attrgetter(reg.quantity.value)
    interval = meter.register is Register.INTERVAL
    values: dict[int, float] = {}
    for r in readings:
        v = get(r)
        if (
            v is None
            or (interval and v < 0)
            or not in_range(v)
            or r.meter_id != meter.id
            or r.site_id != meter.site_id
        ):
            continue
        values.setdefault(r.ts_ms, v)
    pending: dict[int, float] = {}
    notes: list[Note] = []
    for ts in sorted(values):
        reg.account(ts, values[ts], pending, window_ms, notes)
    amounts = {w: a for w, a in pending.items() if from_ms <= w < to_ms}
    return Derivation(
        amounts=amounts,
        estimated=set(amounts) if reg.estimated else set(),
        events=[
            MeterEvent(
                site_id=meter.site_id,
                meter_id=meter.id,
                ts_ms=ts,
                kind=kind,
                detail=detail,
                previous=previous,
                value=value,
            )
            for kind, ts, detail, previous, value in notes
        ],
    )
