"""From meter readings to interval amounts: the meter lifecycle rules, applied once for the live path
and for re-derivation from stored readings.

The per-reading rules live in ``MeterRegister.account``. The processor's tracker (``processor/meters.py``)
and ``derive_intervals`` (``peakwatch.domain.derivation``: a meter's amounts rebuilt from its stored
readings after late or out-of-order data, or a replacement recorded afterwards) both call it, so a
re-derivation gives exactly what the live path gave for the same readings in time order. This module
holds the cumulative-register rules; the others are where they apply: power meters
(``peakwatch.domain.power``), interval registers (``interval_registers``), meter replacements
(``replacements``), spreading amounts over windows and the long-gap rule (``spreading``), outcomes,
duplicates and out-of-order readings (``outcomes``). Rules (docs/kpis.md repeats them for operators):

* **Cumulative register**: the first reading sets the baseline. A later one is differenced,
  ``delta = value - baseline``, and the delta is spread linearly over the windows ``[baseline ts, ts)``
  overlaps.
* A negative delta is never negative energy. With ``register_max`` (the register's modulus, e.g.
  1,000,000 for a six-digit kWh register that shows 999,999.99 and then 0) configured, the previous
  value in the top 10 % of the register (and not above it: that was no register reading) and the new
  one in the bottom 10 %, it is a **rollover**: ``register_max - previous + value``. Otherwise a drop
  to at most 10 % of the previous value is a **reset** (the register restarted at zero): ``value``.
  Any other drop is a **register drop**: it moves the baseline and counts nothing, because nothing
  justifies any particular amount.
* **Low glitch**: a drop (reset, rollover or register drop) is provisional until the next reading.
  If that reading is at or above the pre-drop baseline (and, with ``rated_kw``, its increase over the
  pre-drop baseline is plausible over ``[pre-drop ts, ts)``), the low reading was a glitch: what the
  drop counted is taken back from the windows it went to (negative amounts, which reach closed windows
  as late data), ``value - pre-drop baseline`` is spread over ``[pre-drop ts, ts)``, the event is a
  ``glitch`` at the low reading's time, and the outcome ``RETRACTED`` asks for a re-derivation, so the
  stored windows end up as if the low reading never came. Any other next reading confirms the drop.
  A register that restarts from zero and climbs back past its old value before its next reading is
  indistinguishable from a glitch and counted as one. The pending drop is not stored: a restarted
  processor re-establishes it from the stored reading before the baseline (``suspect_drop``).
* **Glitch** (``Meter.rated_kw`` set): an amount implying more than ``GLITCH_MARGIN`` × the rated rate
  over the interval cannot be energy. It counts 0 and the baseline stays (a spike: the next reading is
  compared with the old baseline again). The glitch value is *held*: when the next reading is again
  implausible against the baseline but plausible against (and at least) the held value, the register
  really jumped; the baseline moves to the held value, the jump counts 0, and counting resumes from
  there. A reset or a rollover whose amount is implausible is a glitch too (it was no reset). The held
  value is not persisted: after a restart the next implausible reading is held afresh.
* **Bounds** (``peakwatch.domain.units``): a value that is not finite or beyond ``VALUE_CEILING`` in
  magnitude is refused before any difference (``OUT_OF_RANGE``: the processor dead-letters it,
  re-derivation skips it), and a power meter without ``rated_kw`` has the rate cap ``RATE_CEILING``, so
  every amount is finite and far from overflow. ``split_interval`` splits without overflow.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Sequence
from typing import Final

from peakwatch.domain.interval_registers import account_interval
from peakwatch.domain.models import Meter, MeterFlag, MeterReplacement, Quantity, Register
from peakwatch.domain.outcomes import (
    ACCEPTED,
    FOREVER_MS,
    GLITCH_MARGIN,
    MS_PER_HOUR,
    NEVER_MS,
    OUT_OF_RANGE,
    RETRACTED,
    Note,
    Outcome,
    old_reading,
)
from peakwatch.domain.power import account_power
from peakwatch.domain.replacements import across_replacements, describe_part
from peakwatch.domain.spreading import GAP_BUCKET_MS, LONG_GAP_MS, spread
from peakwatch.domain.units import RATE_CEILING, in_range, meter_quantity

ROLLOVER_ZONE = 0.1
"""A rollover goes from the top ``ROLLOVER_ZONE`` share of ``register_max`` to the bottom one."""
RESET_ZONE = 0.1
"""A drop to at most this share of the previous value is a reset to zero; a smaller drop is not."""

_DROP_WORDS: Final[dict[MeterFlag, str]] = {
    MeterFlag.ROLLOVER: "rolled over at its maximum",
    MeterFlag.RESET: "restarted from zero (reset)",
    MeterFlag.REGISTER_DROP: "dropped without a reset (replaced meter or glitch): new baseline",
}


def register_delta(
    previous: float, value: float, register_max: float | None
) -> tuple[float, MeterFlag | None]:
    """The amount between two successive register values, never negative, with the event if any."""
    delta = value - previous
    if delta >= 0:
        return delta, None
    if (
        register_max is not None
        and (1.0 - ROLLOVER_ZONE) * register_max <= previous <= register_max
        and value < ROLLOVER_ZONE * register_max
    ):
        return (register_max - previous) + max(value, 0.0), MeterFlag.ROLLOVER
    if value <= RESET_ZONE * previous:
        return max(value, 0.0), MeterFlag.RESET
    return 0.0, MeterFlag.REGISTER_DROP


class MeterRegister:
    """One meter's configuration and accounting state, mutated reading by reading by ``account``.

    The processor's per-meter slot extends this class, so the hot path reads the same attributes
    (``last_ts``, ``last_value``, ``cap_per_ms``, ``fast_until``) without indirection.
    """

    __slots__ = (
        "cap_per_ms",
        "cumulative",
        "drop_counted",
        "drop_ts",
        "drop_value",
        "estimated",
        "fast_until",
        "floor_ts",
        "hold_ts",
        "hold_value",
        "last_ts",
        "last_value",
        "quantity",
        "rate_cap",
        "rated",
        "recent",
        "register",
        "register_max",
        "rep_ts",
        "reps",
        "retract_ts",
    )

    def __init__(self, meter: Meter) -> None:
        quantity, scale = meter_quantity(meter.unit)
        self.quantity: Quantity = quantity
        self.register: Register = meter.register
        self.cumulative = meter.register is Register.CUMULATIVE
        self.estimated = meter.register is Register.POWER
        """Amounts are integrated from power, not read from a register."""
        # register_max is configured in the meter's unit; readings arrive in the canonical unit
        self.register_max = None if meter.register_max is None else meter.register_max * scale
        self.rated = meter.rated_kw
        ceiling = RATE_CEILING if self.estimated else math.inf  # registers: VALUE_CEILING bounds them
        self.rate_cap = ceiling if meter.rated_kw is None else min(meter.rated_kw * GLITCH_MARGIN, ceiling)
        """Largest plausible rate (canonical unit per hour; kW for electricity). Without ``rated_kw``: the
        global ``RATE_CEILING`` for power samples; none for registers, whose values ``VALUE_CEILING``
        bounds (an increase within a millisecond says nothing about a rate)."""
        self.cap_per_ms = self.rate_cap / MS_PER_HOUR
        self.last_ts: int = NEVER_MS
        """Cumulative: the baseline's time. Power: the last sample's. Interval: the newest reading's."""
        self.last_value: float | None = None
        """Cumulative: the baseline (``None``: none yet). Power: the last sample. Interval: informative."""
        self.hold_ts: int = NEVER_MS
        self.hold_value: float | None = None
        """Cumulative: the last glitch value (``None``: none held), a candidate for a register jump."""
        self.drop_ts: int = NEVER_MS
        self.drop_value: float | None = None
        """Cumulative: the baseline before the drop (reset, rollover, register drop) that set the current
        one, until the next reading confirms the drop or contradicts it (``None``: no drop pending)."""
        self.drop_counted = 0.0
        """What that drop counted over ``[drop_ts, last_ts)``: taken back if it proves a glitch."""
        self.retract_ts: int = NEVER_MS
        """The pre-drop baseline's time of the last drop proved a glitch (``RETRACTED``)."""
        self.recent: dict[int, float] = {}
        """Interval registers: amounts by timestamp, to drop duplicates."""
        self.floor_ts: int = NEVER_MS
        """Interval registers: readings at or before this cannot be de-duplicated any more."""
        self.rep_ts: list[int] = []
        self.reps: list[MeterReplacement] = []
        """Recorded replacements, oldest first (``rep_ts`` holds their times for bisection)."""
        self.fast_until: int = NEVER_MS
        """A cumulative reading before this time with ``0 <= delta <= cap`` needs no rule but
        differencing (no glitch held, no replacement in between): the caller may inline it."""
        self._refresh()

    # ------------------------------------------------------------------ state

    def _refresh(self) -> None:
        if (
            not self.cumulative
            or self.hold_value is not None
            or self.drop_value is not None
            or self.last_value is None
        ):
            self.fast_until = NEVER_MS
            return
        i = bisect_right(self.rep_ts, self.last_ts)
        self.fast_until = self.rep_ts[i] if i < len(self.rep_ts) else FOREVER_MS

    def restore(self, last_ts: int, last_value: float | None) -> None:
        """Continue from a stored state (the held glitch, if any, is not stored and is forgotten; so is a
        pending drop: ``suspect_drop`` re-establishes it from the stored reading before). A stored value
        out of range (written before the bounds existed) is no baseline: the next reading sets one."""
        if last_value is not None and not in_range(last_value):
            last_value = None
        self.last_ts = last_ts
        self.last_value = last_value
        self.hold_ts, self.hold_value = NEVER_MS, None
        self.drop_value = None
        if self.register is Register.INTERVAL:
            # Only the newest timestamp is known: anything older may have been counted already.
            self.recent = {} if last_value is None else {last_ts: last_value}
            self.floor_ts = last_ts
        self._refresh()

    def suspect_drop(self, previous_ts: int, previous: float) -> None:
        """After ``restore``: ``(previous_ts, previous)`` is the stored reading before the baseline. If the
        baseline was a counted drop from it (no replacement in between), the drop is pending again, as if
        the processor had not restarted."""
        last_value, last_ts = self.last_value, self.last_ts
        if not self.cumulative or last_value is None or previous_ts >= last_ts or not in_range(previous):
            return
        if bisect_right(self.rep_ts, previous_ts) != bisect_right(self.rep_ts, last_ts):
            return
        delta, flag = register_delta(previous, last_value, self.register_max)
        if flag is not None and delta <= self.cap_per_ms * (last_ts - previous_ts):
            self.drop_ts, self.drop_value, self.drop_counted = previous_ts, previous, delta
            self.fast_until = NEVER_MS

    def add_replacement(self, rep: MeterReplacement) -> bool:
        """Record a replacement (one at the same time as a recorded one supersedes it). Returns whether
        accounting has already passed it (cumulative only): then only a re-derivation applies it."""
        i = bisect_right(self.rep_ts, rep.ts_ms)
        if i and self.rep_ts[i - 1] == rep.ts_ms:
            self.reps[i - 1] = rep
        else:
            insort(self.rep_ts, rep.ts_ms)
            self.reps.insert(i, rep)
        self._refresh()
        return self.cumulative and self.last_value is not None and rep.ts_ms <= self.last_ts

    # ------------------------------------------------------------------ the rules

    def account(
        self, ts: int, value: float, pending: dict[int, float], size_ms: int, notes: list[Note]
    ) -> Outcome:
        """Apply one reading: amounts are added to ``pending`` (window start -> amount) and events
        appended to ``notes``."""
        if not in_range(value):
            return OUT_OF_RANGE
        if self.cumulative:
            since = self.last_ts
            outcome = self._cumulative(ts, value, pending, size_ms, notes)
            if self.last_ts == ts and since != NEVER_MS and ts - since > LONG_GAP_MS:
                notes.append(
                    (
                        MeterFlag.GAP,
                        ts,
                        f"no reading for {(ts - since) / MS_PER_HOUR:g} h: "
                        f"spread in {GAP_BUCKET_MS // 60_000}-minute buckets (long-gap rule)",
                        None,
                        value,
                    )
                )
            return outcome
        if self.estimated:
            return account_power(self, ts, value, pending, size_ms, notes)
        return account_interval(self, ts, value, pending, size_ms, notes)

    def _cumulative(
        self, ts: int, value: float, pending: dict[int, float], size_ms: int, notes: list[Note]
    ) -> Outcome:
        last_value = self.last_value
        if last_value is None:
            self._move(ts, value)
            notes.append((MeterFlag.FIRST, ts, "first reading: baseline set, no energy yet", None, value))
            return ACCEPTED
        last_ts = self.last_ts
        held = self.hold_value
        if held is None or ts == last_ts:
            if ts <= last_ts:
                return old_reading(ts, value, last_ts, last_value, "the baseline", notes)
        elif ts <= self.hold_ts:
            return old_reading(ts, value, self.hold_ts, held, "the held glitch", notes)
        if self.rep_ts:
            lo = bisect_right(self.rep_ts, last_ts)
            hi = bisect_right(self.rep_ts, ts)
            if hi > lo:
                self._replace(ts, value, self.reps[lo:hi], pending, size_ms, notes)
                return ACCEPTED
        drop = self.drop_value
        if drop is not None:
            self.drop_value = None  # this reading settles the drop either way
            if value >= drop and value - drop <= self.cap_per_ms * (ts - self.drop_ts):
                self._retract(ts, value, drop, pending, size_ms, notes)
                return RETRACTED
        delta, flag = register_delta(last_value, value, self.register_max)
        if delta <= self.cap_per_ms * (ts - last_ts):
            if flag is not None:
                notes.append(
                    (
                        flag,
                        ts,
                        f"register {_DROP_WORDS[flag]}: {last_value} -> {value}, counted {delta}",
                        last_value,
                        value,
                    )
                )
            spread(pending, last_ts, ts, delta, size_ms)
            self._move(ts, value)
            if flag is not None:  # the next reading confirms the drop, or proves it a glitch
                self.drop_ts, self.drop_value, self.drop_counted = last_ts, last_value, delta
                self.fast_until = NEVER_MS
            return ACCEPTED
        hold_ts = self.hold_ts
        if held is not None and value >= held and value - held <= self.cap_per_ms * (ts - hold_ts):
            counted = value - held
            notes.append(
                (
                    MeterFlag.GLITCH,
                    ts,
                    f"register jump: {last_value} -> {held} at {hold_ts} confirmed by {value}; "
                    f"baseline moved to {held}, the jump counted 0, {counted} counted since",
                    last_value,
                    held,
                )
            )
            spread(pending, hold_ts, ts, counted, size_ms)
            self._move(ts, value)
            return ACCEPTED
        what = "increase" if flag is None else flag.value
        notes.append(
            (
                MeterFlag.GLITCH,
                ts,
                f"{what} of {delta} in {(ts - last_ts) / 1000:g} s implies "
                f"{delta * MS_PER_HOUR / (ts - last_ts):.6g}/h, above {GLITCH_MARGIN} x rated {self.rated}: "
                f"counted 0, baseline kept at {last_value}",
                last_value,
                value,
            )
        )
        self.hold_ts, self.hold_value = ts, value
        self.fast_until = NEVER_MS
        return ACCEPTED

    def _retract(
        self, ts: int, value: float, drop: float, pending: dict[int, float], size_ms: int, notes: list[Note]
    ) -> None:
        """The reading after a drop is back at (or above) the pre-drop baseline ``drop``: the drop was a
        glitch. What it counted is taken back from its windows, and ``value - drop`` is spread over
        ``[drop_ts, ts)``, as if the low reading had never come."""
        t0, low_ts, low, counted = self.drop_ts, self.last_ts, self.last_value, self.drop_counted
        if counted:
            spread(pending, t0, low_ts, -counted, size_ms)
        amount = value - drop
        spread(pending, t0, ts, amount, size_ms)
        notes.append(
            (
                MeterFlag.GLITCH,
                low_ts,
                f"drop {drop} -> {low} contradicted by {value} at {ts}: a glitch, not a reset; "
                f"the {counted} it counted taken back, {amount} counted from {drop} since {t0}",
                drop,
                low,
            )
        )
        self.retract_ts = t0
        self._move(ts, value)

    def _replace(
        self,
        ts: int,
        value: float,
        reps: Sequence[MeterReplacement],
        pending: dict[int, float],
        size_ms: int,
        notes: list[Note],
    ) -> None:
        assert self.last_value is not None
        parts = across_replacements(self.last_ts, self.last_value, ts, value, reps)
        for p in parts:
            if p.t1_ms > p.t0_ms:
                spread(pending, p.t0_ms, p.t1_ms, p.amount, size_ms)
            else:  # replaced at the reading's own time: the part belongs to the window ending there
                spread(pending, p.t1_ms - 1, p.t1_ms, p.amount, size_ms)
        for i, rep in enumerate(reps):
            before, after = parts[i], parts[i + 1]
            notes.append(
                (
                    MeterFlag.REPLACEMENT,
                    rep.ts_ms,
                    f"meter replaced: old meter {describe_part(before, 'up to its final', rep.old_final)}; "
                    f"new meter {describe_part(after, 'from its initial', rep.new_initial)}",
                    rep.old_final,
                    rep.new_initial,
                )
            )
        self._move(ts, value)

    def _move(self, ts: int, value: float) -> None:
        """New baseline; a held glitch is settled (it was a spike, or the jump it announced is taken)."""
        self.last_ts = ts
        self.last_value = value
        self.hold_ts, self.hold_value = NEVER_MS, None
        self.drop_value = None
        self._refresh()
