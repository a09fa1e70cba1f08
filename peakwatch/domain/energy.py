"""From meter readings to interval amounts: the meter lifecycle rules, applied once for the live path
and for re-derivation from stored readings.

The per-reading rules live in ``MeterRegister.account``. The processor's tracker (``processor/meters.py``)
and ``derive_intervals`` (which rebuilds a meter's amounts from its stored readings after late or
out-of-order data, or a replacement recorded afterwards) both call it, so a re-derivation gives exactly
what the live path gave for the same readings in time order. Rules (docs/kpis.md repeats them for
operators):

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
* **Meter replacement** (recorded with the old meter's final and the new meter's initial register): a
  replacement at ``ts_r`` between two readings replaces differencing for that pair:
  ``old_final - previous`` over ``[previous ts, ts_r)`` plus ``value - new_initial`` over ``[ts_r, ts)``.
  A negative part (a typo in the record) counts 0 and says so. Replacements are not glitch-checked:
  an operator entered them.
* **Power meter** (``register: power``): energy is integrated by the trapezoid rule between successive
  samples, ``(p0 + p1) / 2 × Δt`` over ``[t0, t1)``, and flagged *estimated*. Samples further apart than
  ``MAX_POWER_GAP_MS`` give no energy (a ``gap`` event; nothing says what happened in between) and the
  baseline moves on. A sample above ``GLITCH_MARGIN`` × rated, or negative, is ignored (a glitch).
* **Interval register**: each value is the amount of the period ending at ``ts`` and goes to the window
  containing ``ts - 1 ms``. An amount above ``GLITCH_MARGIN`` × rated × the time since the meter's
  previous interval reading counts 0 (a glitch); the very first one is not checked. A negative amount
  is refused (the processor dead-letters it).
* **Long gap**: an interval longer than ``LONG_GAP_MS`` (a meter silent for over a day) is spread in
  ``GAP_BUCKET_MS`` (15-minute) buckets instead of minutes: each bucket's linear share goes to the
  first minute of the bucket inside the interval, so a gap costs at most 96 ledger rows a day and
  every 15-minute, hourly, daily and monthly total stays the exact linear share (every zone offset
  in use is a multiple of 15 minutes). The reading that ends such a cumulative gap is flagged ``gap``.
* **Bounds** (``peakwatch.domain.units``): a value that is not finite or beyond ``VALUE_CEILING`` in
  magnitude is refused before any difference (``OUT_OF_RANGE``: the processor dead-letters it,
  re-derivation skips it), and a power meter without ``rated_kw`` has the rate cap ``RATE_CEILING``, so
  every amount is finite and far from overflow. ``split_interval`` scales by the fraction of the interval
  (never ``amount × ms``), so even ``float64``'s extremes split without overflow.
* Timestamps: a reading at the time of the one accounted last is a **duplicate** (the first value wins);
  an older one is **out of order**: no energy, because the interval it falls in was accounted by the
  readings around it; the live path stores it and asks for a re-derivation.
"""

from __future__ import annotations

import enum
import math
import operator
from bisect import bisect_right, insort
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

import msgspec

from peakwatch.domain.models import (
    Meter,
    MeterEvent,
    MeterFlag,
    MeterReplacement,
    Quantity,
    Reading,
    Register,
)
from peakwatch.domain.units import RATE_CEILING, in_range, meter_quantity

ROLLOVER_ZONE = 0.1
"""A rollover goes from the top ``ROLLOVER_ZONE`` share of ``register_max`` to the bottom one."""
RESET_ZONE = 0.1
"""A drop to at most this share of the previous value is a reset to zero; a smaller drop is not."""
GLITCH_MARGIN = 1.5
"""An amount implying more than this multiple of the meter's rated rate is a glitch, not energy."""
MAX_POWER_GAP_MS = 15 * 60_000
"""Power samples further apart than this are not integrated: a straight line over a longer silence
would be invented energy (and 15 minutes is the demand interval)."""
MS_PER_HOUR = 3_600_000
LONG_GAP_MS = 86_400_000
"""An interval longer than this is spread in ``GAP_BUCKET_MS`` buckets, not minutes: a meter silent for
46 days would otherwise write 66,000 ledger rows, each a minute of invented detail."""
GAP_BUCKET_MS = 15 * 60_000
"""Bucket of a long gap: every zone offset in use is a multiple of 15 minutes, so each bucket lies
inside one 15-minute, hourly, daily and monthly window of the site's zone."""

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


def window_start_ms(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window (aligned to the epoch) that contains ``ts_ms``."""
    return ts_ms - ts_ms % size_ms


def split_interval(t0_ms: int, t1_ms: int, amount: float, size_ms: int) -> list[tuple[int, float]]:
    """Spread ``amount`` consumed over ``[t0_ms, t1_ms)`` linearly across tumbling windows.

    Returns ``(window_start_ms, share)`` pairs whose shares, added in order, give exactly ``amount`` (each
    share is a multiple of ``amount``'s ulp, the last one the remainder); every share is finite for any
    finite ``amount``, up to float64's maximum. ``t0_ms == t1_ms`` puts it all in the window containing
    ``t0_ms``. An interval longer than ``LONG_GAP_MS`` is split in ``GAP_BUCKET_MS``
    buckets, each share going to the first window of its bucket inside the interval (the long-gap rule).
    """
    if t1_ms <= t0_ms:
        return [(window_start_ms(t0_ms, size_ms), amount)]
    span = t1_ms - t0_ms
    first = window_start_ms(t0_ms, size_ms)
    if first == window_start_ms(t1_ms - 1, size_ms):
        return [(first, amount)]
    step = GAP_BUCKET_MS if span > LONG_GAP_MS and GAP_BUCKET_MS % size_ms == 0 else size_ms
    last = window_start_ms(t1_ms - 1, step)
    parts: list[tuple[int, float]] = []
    ulp = math.ulp(amount)
    units = amount / ulp  # exact: an integer below 2**53 (amount × fraction would round subnormals up)
    assigned = 0.0
    start = window_start_ms(t0_ms, step)
    while start < last:
        lo = max(start, t0_ms)
        hi = start + step
        # the fraction first (amount × ms overflows near float max), then truncated to amount's ulp grid:
        # every partial sum is then a float exactly and never beyond amount, so the remainder is exact and
        # has amount's sign (rounding up could over-assign a tiny amount and leave a negative remainder)
        share = math.trunc(units * ((hi - lo) / span)) * ulp
        parts.append((max(start, first), share))
        assigned += share
        start = hi
    parts.append((max(last, first), amount - assigned))
    return parts


def interval_window_ms(ts_ms: int, size_ms: int) -> int:
    """Window of an interval-register reading, which measures the period *ending* at ``ts_ms``.

    A reading stamped exactly on a boundary (12:01:00) belongs to the window that ends there (12:00).
    """
    return window_start_ms(ts_ms - 1, size_ms)


def spread(pending: dict[int, float], t0_ms: int, t1_ms: int, amount: float, size_ms: int) -> None:
    """Add ``amount`` over ``[t0_ms, t1_ms)`` to ``pending`` (window start -> amount) in the one order
    both the live path and re-derivation use, so their float sums are identical."""
    w = t0_ms - t0_ms % size_ms
    if t1_ms <= w + size_ms:
        pending[w] = pending.get(w, 0.0) + amount
    else:
        for ws, share in split_interval(t0_ms, t1_ms, amount, size_ms):
            pending[ws] = pending.get(ws, 0.0) + share


def trapezoid_kwh(p0_kw: float, p1_kw: float, dt_ms: int) -> float:
    """Energy of a straight line from ``p0_kw`` to ``p1_kw`` over ``dt_ms``: ``(p0 + p1) / 2 × Δt_h``."""
    return (p0_kw + p1_kw) * dt_ms / (2 * MS_PER_HOUR)


class ReplacementPart(NamedTuple):
    """One stretch of a pair of readings split by replacements: ``raw`` is the register difference,
    ``amount`` what counts (``raw``, or 0 when ``raw`` is negative)."""

    t0_ms: int
    t1_ms: int
    raw: float
    amount: float


def across_replacements(
    t_prev: int, v_prev: float, t: int, v: float, replacements: Sequence[MeterReplacement]
) -> list[ReplacementPart]:
    """The energy between readings ``(t_prev, v_prev)`` and ``(t, v)`` across the meter replacements
    in ``replacements`` (each with ``t_prev < ts_ms <= t``, oldest first).

    With one replacement at ``ts_r``: ``old_final - v_prev`` over ``[t_prev, ts_r)`` and ``v - new_initial``
    over ``[ts_r, t)``. Several replacements chain: between two of them the installed meter counted
    ``next.old_final - previous.new_initial``. A negative difference counts 0.
    """
    parts: list[ReplacementPart] = []
    t0, start = t_prev, v_prev
    for rep in replacements:
        raw = rep.old_final - start
        parts.append(ReplacementPart(t0, rep.ts_ms, raw, max(raw, 0.0)))
        t0, start = rep.ts_ms, rep.new_initial
    raw = v - start
    parts.append(ReplacementPart(t0, t, raw, max(raw, 0.0)))
    return parts


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
            return self._power(ts, value, pending, size_ms, notes)
        return self._interval(ts, value, pending, size_ms, notes)

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
                return _old(ts, value, last_ts, last_value, "the baseline", notes)
        elif ts <= self.hold_ts:
            return _old(ts, value, self.hold_ts, held, "the held glitch", notes)
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
                    f"meter replaced: old meter {_part(before, 'up to its final', rep.old_final)}; "
                    f"new meter {_part(after, 'from its initial', rep.new_initial)}",
                    rep.old_final,
                    rep.new_initial,
                )
            )
        self._move(ts, value)

    def _power(
        self, ts: int, value: float, pending: dict[int, float], size_ms: int, notes: list[Note]
    ) -> Outcome:
        last_value = self.last_value
        last_ts = self.last_ts
        if last_value is not None and ts <= last_ts:
            return _old(ts, value, last_ts, last_value, "the last power sample", notes)
        if value < 0 or value > self.rate_cap:
            why = "is negative" if value < 0 else f"is above {GLITCH_MARGIN} x rated {self.rated} kW"
            notes.append((MeterFlag.GLITCH, ts, f"power sample {value} kW {why}: ignored", last_value, value))
            return ACCEPTED
        if last_value is None:
            notes.append((MeterFlag.FIRST, ts, "first power sample: no energy yet", None, value))
        else:
            dt = ts - last_ts
            if dt > MAX_POWER_GAP_MS:
                notes.append(
                    (
                        MeterFlag.GAP,
                        ts,
                        f"no power sample for {dt / 60_000:g} min (more than {MAX_POWER_GAP_MS // 60_000}): "
                        f"no energy from {last_ts}",
                        last_value,
                        value,
                    )
                )
            else:
                spread(pending, last_ts, ts, trapezoid_kwh(last_value, value, dt), size_ms)
        self.last_ts = ts
        self.last_value = value
        return ACCEPTED

    def _interval(
        self, ts: int, value: float, pending: dict[int, float], size_ms: int, notes: list[Note]
    ) -> Outcome:
        recent = self.recent
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
        if ts <= self.floor_ts:
            notes.append(
                (
                    MeterFlag.OUT_OF_ORDER,
                    ts,
                    f"interval reading at or before {self.floor_ts}, beyond de-duplication: "
                    "stored, no energy",
                    None,
                    value,
                )
            )
            return OUT_OF_ORDER
        if value < 0:
            return NEGATIVE
        last_ts = self.last_ts
        previous = last_ts if ts > last_ts else max((t for t in recent if t < ts), default=NEVER_MS)
        recent[ts] = value
        if previous != NEVER_MS and value > self.cap_per_ms * (ts - previous):
            notes.append(
                (
                    MeterFlag.GLITCH,
                    ts,
                    f"interval amount {value} in {(ts - previous) / 1000:g} s is above "
                    f"{GLITCH_MARGIN} x rated {self.rated}: counted 0",
                    None,
                    value,
                )
            )
        else:
            w = interval_window_ms(ts, size_ms)
            pending[w] = pending.get(w, 0.0) + value
        if ts > last_ts:
            self.last_ts = ts
            self.last_value = value
        return ACCEPTED

    def _move(self, ts: int, value: float) -> None:
        """New baseline; a held glitch is settled (it was a spike, or the jump it announced is taken)."""
        self.last_ts = ts
        self.last_value = value
        self.hold_ts, self.hold_value = NEVER_MS, None
        self.drop_value = None
        self._refresh()


def _old(ts: int, value: float, ref_ts: int, ref: float, what: str, notes: list[Note]) -> Outcome:
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


def _part(p: ReplacementPart, where: str, register: float) -> str:
    if p.raw < 0:
        return f"{where} {register} gives {p.raw}, negative: counted 0"
    return f"{where} {register}, counted {p.raw}"


# ---------------------------------------------------------------------------------- re-derivation


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
