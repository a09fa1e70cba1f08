"""What the meter rules make of one reading (``Outcome``) and the events they report (``Note``).

Timestamps: a reading at the time of the one accounted last is a **duplicate** (the first value wins);
an older one is **out of order**: no energy, because the interval it falls in was accounted by the
readings around it; the live path stores it and asks for a re-derivation (``old_reading``).
"""

from __future__ import annotations

import enum
from typing import Final, Protocol

from peakwatch.domain.models import MeterFlag

GLITCH_MARGIN = 1.5
"""An amount implying more than this multiple of the meter's rated rate is a glitch, not energy."""
MS_PER_HOUR = 3_600_000
NEVER_MS: Final = -(1 << 62)
"""A timestamp before every reading (a meter never heard from)."""
FOREVER_MS: Final = 1 << 62
"""A timestamp after every reading."""

Note = tuple[MeterFlag, int, str, float | None, float | None]
"""An event as the rules report it: kind, time, detail, previous value, value."""


class Outcome(enum.Enum):
    """What became of a reading; the caller decides what to store."""

    ACCEPTED = "accepted"
    """Accounted (possibly as zero, with an event): store it."""
    DUPLICATE = "duplicate"
    """Same time as a reading already accounted: drop it, do not store it again."""
    OUT_OF_ORDER = "out_of_order"
    """Older than the meter's state: store it raw, no energy, re-derive from stored readings."""
    NEGATIVE = "negative"
    """A negative interval amount: refuse it (dead letter); the state is unchanged."""
    OUT_OF_RANGE = "out_of_range"
    """Not finite or beyond ``VALUE_CEILING``: refuse it (dead letter); the state is unchanged."""
    RETRACTED = "retracted"
    """Accounted, and it proved the drop before it a glitch: what the drop counted was taken back
    (negative amounts for its windows). Store it, and re-derive the meter from ``retract_ts`` (the
    pre-drop baseline's time) so that closed windows are restated."""


ACCEPTED: Final = Outcome.ACCEPTED
DUPLICATE: Final = Outcome.DUPLICATE
OUT_OF_ORDER: Final = Outcome.OUT_OF_ORDER
NEGATIVE: Final = Outcome.NEGATIVE
OUT_OF_RANGE: Final = Outcome.OUT_OF_RANGE
RETRACTED: Final = Outcome.RETRACTED


def old_reading(ts: int, value: float, ref_ts: int, ref: float, what: str, notes: list[Note]) -> Outcome:
    """A cumulative or power reading at or before the newest one accounted."""
    if ts == ref_ts:
        if value != ref:
            notes.append(
                (
                    MeterFlag.DUPLICATE,
                    ts,
                    f"second value {value} at the same time as {ref}: first kept",
                    ref,
                    value,
                )
            )
        return DUPLICATE
    notes.append(
        (
            MeterFlag.OUT_OF_ORDER,
            ts,
            f"reading older than {what} at {ref_ts}: stored, no energy",
            ref,
            value,
        )
    )
    return OUT_OF_ORDER


class RegisterState(Protocol):
    """What the power and interval rules read and move of a meter's register: the part of
    ``peakwatch.domain.energy.MeterRegister`` they need, so they depend on this module, not on it."""

    last_ts: int
    last_value: float | None
    rated: float | None
    rate_cap: float
    cap_per_ms: float
    recent: dict[int, float]
    floor_ts: int
