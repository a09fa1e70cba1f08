"""Interval registers: each value is the amount of the period ending at its timestamp.

The amount goes to the window containing ``ts - 1 ms``. An amount above ``GLITCH_MARGIN`` × rated × the
time since the meter's previous interval reading counts 0 (a glitch); the very first one is not
checked. A negative amount is refused (the processor dead-letters it). Amounts are kept by timestamp
to drop duplicates, back to ``floor_ts``.
"""

from __future__ import annotations

from peakwatch.domain.models import MeterFlag
from peakwatch.domain.outcomes import (
    ACCEPTED,
    DUPLICATE,
    GLITCH_MARGIN,
    NEGATIVE,
    NEVER_MS,
    OUT_OF_ORDER,
    Note,
    Outcome,
    RegisterState,
)
from peakwatch.domain.spreading import interval_window_ms


def account_interval(
    register: RegisterState, ts: int, value: float, pending: dict[int, float], size_ms: int, notes: list[Note]
) -> Outcome:
    """One interval amount: to the window it measured, unless a duplicate, too old or implausible."""
    recent = register.recent
    seen = recent.get(ts)
    if seen is not None:
        if value != seen:
            notes.append(
                (
                    MeterFlag.DUPLICATE,
                    ts,
                    f"second amount {value} for the same interval as {seen}: first kept",
                    seen,
                    value,
                )
            )
        return DUPLICATE
    if ts <= register.floor_ts:
        notes.append(
            (
                MeterFlag.OUT_OF_ORDER,
                ts,
                f"interval reading at or before {register.floor_ts}, beyond de-duplication: "
                "stored, no energy",
                None,
                value,
            )
        )
        return OUT_OF_ORDER
    if value < 0:
        return NEGATIVE
    last_ts = register.last_ts
    previous = last_ts if ts > last_ts else max((t for t in recent if t < ts), default=NEVER_MS)
    recent[ts] = value
    if previous != NEVER_MS and value > register.cap_per_ms * (ts - previous):
        notes.append(
            (
                MeterFlag.GLITCH,
                ts,
                f"interval amount {value} in {(ts - previous) / 1000:g} s is above "
                f"{GLITCH_MARGIN} x rated {register.rated}: counted 0",
                None,
                value,
            )
        )
    else:
        w = interval_window_ms(ts, size_ms)
        pending[w] = pending.get(w, 0.0) + value
    if ts > last_ts:
        register.last_ts = ts
        register.last_value = value
    return ACCEPTED
