"""Per-meter state: from readings to amounts per window.

This is the processor's hot path (one pass per reading), so it is written for speed: the meter's
configuration is resolved once into a mutable ``MeterSlot``, amounts are summed per window in the slot
during a step (no object per reading), and events, which are rare, take the slow branches.

The rules are those of ``peakwatch.domain.energy`` (docs/kpis.md, "Meter rules"): every reading goes
through ``MeterRegister.account`` except the common cumulative case (a later reading, ``0 <= delta <=
rated cap``, no glitch held, no replacement in between), which is inlined here with the same
arithmetic. The accountant re-derives stored readings with the same function
(``peakwatch.domain.derivation.derive_intervals``), so both give the same amounts. What this module adds:

* The meter's main quantity is chosen by its configured unit (``kWh`` -> ``energy_kwh``, ``kW`` ->
  ``power_kw``, ``m3`` -> ``volume_m3`` ...). Readings are already canonical (the collector scaled the
  payload fields), so the unit only picks the field; it never rescales the value.
* What is stored: every accepted reading, including glitches (flagged) and out-of-order readings;
  duplicates are dropped (not stored again); negative interval amounts, values out of range
  (``out_of_range``: not finite or beyond ``VALUE_CEILING``) and readings of unknown sites or meters (the
  collector normally rejects them) are dead-lettered. A stored baseline out of range (written before
  the bounds existed) is dropped at restore with a warning.
* Out of order: a cumulative or power reading older than the meter's baseline, or an interval reading
  older than the de-duplication memory, is stored raw with an ``out_of_order`` event and no energy, and
  listed in ``StepOutput.rederive`` (site, meter, ts) so the accountant re-derives the meter's amounts
  around it from the stored readings.
* Interval registers: duplicates are found with the meter's recent timestamps, kept for
  ``dedup_retention_ms`` behind its newest reading; an older reading cannot be told from a replay (out
  of order, above). After a restart only the stored newest timestamp is known, so readings older than
  it are treated the same way.
* Meter replacements (``add_replacements``) are applied when accounting reaches them; one recorded
  after accounting passed it is applied by the accountant's re-derivation.
* A low glitch (a drop the next reading contradicts) takes back what the drop counted with negative
  amounts, which reach closed windows as late data, and is listed in ``StepOutput.glitches`` so that
  the meter is re-derived over the span (a ``glitch`` restatement).
* A reading without a value for the main quantity (e.g. power on an energy meter) is stored raw with no
  energy and does not move the baseline.
* Out-of-order, duplicate and late events are aggregated to one per meter and step, so a replay storm
  produces a handful of events rather than one per reading.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Iterator

import msgspec

from peakwatch.config import Registry
from peakwatch.domain.energy import MeterRegister
from peakwatch.domain.models import (
    DeadLetter,
    Meter,
    MeterEvent,
    MeterFlag,
    MeterInterval,
    MeterReplacement,
    MeterState,
    Reading,
    ReadingBatch,
    Register,
)
from peakwatch.domain.outcomes import (
    ACCEPTED,
    DUPLICATE,
    NEVER_MS,
    OUT_OF_ORDER,
    OUT_OF_RANGE,
    RETRACTED,
    Note,
)
from peakwatch.domain.reasons import Reason
from peakwatch.domain.spreading import LONG_GAP_MS, split_interval
from peakwatch.domain.units import VALUE_CEILING, in_range

log = logging.getLogger(__name__)

DEFAULT_DEDUP_RETENTION_MS = 15 * 60_000

_AGGREGATED = frozenset({MeterFlag.OUT_OF_ORDER, MeterFlag.DUPLICATE, MeterFlag.LATE})


class MeterSlot(MeterRegister):
    """One meter's rules state (``MeterRegister``) plus what the processor needs around it."""

    __slots__ = ("dirty", "get", "meter", "meter_id", "pending", "seen_ms", "site_id")

    def __init__(self, meter: Meter) -> None:
        super().__init__(meter)
        self.meter = meter
        self.site_id = meter.site_id
        self.meter_id = meter.id
        self.get: Callable[[Reading], float | None] = operator.attrgetter(self.quantity.value)
        self.pending: dict[int, float] = {}
        """Amounts per window start accumulated during the current step."""
        self.dirty = False
        self.seen_ms: int | None = None
        """Wall-clock time the meter last reported (staleness rules); ``None``: not since start."""

    def state(self, now_ms: int) -> MeterState:
        return MeterState(
            site_id=self.site_id,
            meter_id=self.meter_id,
            last_ts_ms=self.last_ts,
            last_value=self.last_value,
            last_seen_ms=now_ms,
        )


class _Note:
    """An aggregated event: the first occurrence in a step plus how many followed."""

    __slots__ = ("count", "detail", "previous", "ts_ms", "value")

    def __init__(self, ts_ms: int, detail: str, previous: float | None, value: float | None) -> None:
        self.ts_ms = ts_ms
        self.detail = detail
        self.previous = previous
        self.value = value
        self.count = 1


class StepOutput:
    """What the tracker produced during one processor step (several batches)."""

    __slots__ = (
        "_events",
        "_notes",
        "dead_letters",
        "duplicates",
        "glitches",
        "now_ms",
        "readings",
        "rederive",
        "site_max_ts",
        "touched",
    )

    def __init__(self, now_ms: int = 0) -> None:
        self.now_ms = now_ms
        """Wall-clock time of the step (dead letters' ``received_ms``, meters' ``last_seen_ms``)."""
        self.readings: list[Reading] = []
        """Readings to store: every accepted reading except duplicates and dead letters."""
        self.dead_letters: list[DeadLetter] = []
        self.touched: list[MeterSlot] = []
        self.duplicates = 0
        self.site_max_ts: dict[str, int] = {}
        """Largest event time seen per site in this step (drives the watermark)."""
        self.rederive: list[tuple[str, str, int]] = []
        """(site, meter, ts) of every out-of-order reading: its meter's amounts around ``ts`` must be
        re-derived from the stored readings (the live path counted nothing for it)."""
        self.glitches: list[tuple[str, str, int, int]] = []
        """(site, meter, pre-drop ts, ts) of every drop the reading at ts proved a glitch: the amounts it
        took back may belong to closed windows, and the meter is re-derived over that span."""
        self._events: list[MeterEvent] = []
        self._notes: dict[tuple[str, str, MeterFlag], _Note] = {}

    def event(
        self,
        slot: MeterSlot,
        kind: MeterFlag,
        ts_ms: int,
        detail: str,
        previous: float | None = None,
        value: float | None = None,
    ) -> None:
        self.event_for(slot.site_id, slot.meter_id, kind, ts_ms, detail, previous, value)

    def event_for(
        self,
        site_id: str,
        meter_id: str,
        kind: MeterFlag,
        ts_ms: int,
        detail: str,
        previous: float | None = None,
        value: float | None = None,
    ) -> None:
        if kind not in _AGGREGATED:
            self._events.append(
                MeterEvent(
                    site_id=site_id,
                    meter_id=meter_id,
                    ts_ms=ts_ms,
                    kind=kind,
                    detail=detail,
                    previous=previous,
                    value=value,
                )
            )
            return
        key = (site_id, meter_id, kind)
        note = self._notes.get(key)
        if note is None:
            self._notes[key] = _Note(ts_ms, detail, previous, value)
        else:
            note.count += 1

    def events(self) -> list[MeterEvent]:
        """Individual events, then one event per (meter, kind) for the aggregated kinds."""
        events = list(self._events)
        for (site_id, meter_id, kind), n in self._notes.items():
            detail = n.detail if n.count == 1 else f"{n.detail} (and {n.count - 1} more in this step)"
            events.append(
                MeterEvent(
                    site_id=site_id,
                    meter_id=meter_id,
                    ts_ms=n.ts_ms,
                    kind=kind,
                    detail=detail,
                    previous=n.previous,
                    value=n.value,
                )
            )
        return events


class MeterTracker:
    """Register state of every meter of the registry. Not thread-safe; one per processor."""

    def __init__(
        self, registry: Registry, window_ms: int, *, dedup_retention_ms: int = DEFAULT_DEDUP_RETENTION_MS
    ) -> None:
        self.window_ms = window_ms
        self.dedup_retention_ms = dedup_retention_ms
        self._sites: dict[str, dict[str, MeterSlot]] = {site_id: {} for site_id in registry.sites}
        for (site_id, meter_id), meter in registry.meters.items():
            self._sites.setdefault(site_id, {})[meter_id] = MeterSlot(meter)
        self._interval_slots = [
            s for slots in self._sites.values() for s in slots.values() if s.register is Register.INTERVAL
        ]
        self._last_prune_ms = NEVER_MS
        self._notes: list[Note] = []

    def slot(self, site_id: str, meter_id: str) -> MeterSlot | None:
        return self._sites.get(site_id, {}).get(meter_id)

    def restore(self, states: Iterable[MeterState]) -> None:
        """Take the baselines a previous processor stored; meters no longer configured are ignored."""
        for stored in states:
            slot = self.slot(stored.site_id, stored.meter_id)
            if slot is not None:
                if stored.last_value is not None and not in_range(stored.last_value):
                    log.warning(
                        "meter %s/%s: stored baseline %r is out of range (not finite or beyond %g): "
                        "dropped, the next reading sets a new one",
                        stored.site_id,
                        stored.meter_id,
                        stored.last_value,
                        VALUE_CEILING,
                    )
                slot.restore(stored.last_ts_ms, stored.last_value)
                slot.seen_ms = stored.last_seen_ms

    def suspect_drops(self, before: Iterable[Reading]) -> None:
        """After ``restore``: stored readings before the meters' baselines, newest first per meter. The
        newest with the meter's main quantity tells whether the baseline is a drop still pending
        (``MeterRegister.suspect_drop``)."""
        done: set[tuple[str, str]] = set()
        for r in before:
            slot = self.slot(r.site_id, r.meter_id)
            value = None if slot is None else slot.get(r)
            if slot is None or value is None or (r.site_id, r.meter_id) in done:
                continue
            done.add((r.site_id, r.meter_id))
            slot.suspect_drop(r.ts_ms, value)

    def add_replacements(self, replacements: Iterable[MeterReplacement]) -> None:
        """Use these meter replacements from now on (a record at the same time as a known one replaces
        it; unknown meters are ignored). One that accounting has already passed was counted as a reset
        or register drop: only a re-derivation (the accountant's replacement restatement) applies it."""
        for rep in replacements:
            slot = self.slot(rep.site_id, rep.meter_id)
            if slot is not None:
                slot.add_replacement(rep)

    # ------------------------------------------------------------------ hot path

    def apply_batch(self, batch: ReadingBatch, out: StepOutput) -> None:
        """Account every reading of ``batch`` into ``out`` and the slots' pending amounts.
        ``batch.site_id`` is authoritative for the meter lookup (the bus partitions by it)."""
        readings = batch.readings
        slots = self._sites.get(batch.site_id)
        if slots is None:
            out.dead_letters.extend(_unknown_site(batch, out.now_ms))
            return
        size = self.window_ms
        touched = out.touched
        dropped: set[int] | None = None
        """Positions (not identities: one Reading object may appear twice in a batch) not to store."""
        max_ts = out.site_max_ts.get(batch.site_id, NEVER_MS)
        notes = self._notes
        for position, reading in enumerate(readings):
            slot = slots.get(reading.meter_id)
            if slot is None:
                out.dead_letters.append(_unknown_meter(reading, batch.site_id, out.now_ms))
                dropped = _drop(dropped, position)
                continue
            ts = reading.ts_ms
            if ts > max_ts:
                max_ts = ts
            if not slot.dirty:
                slot.dirty = True
                touched.append(slot)
            value = slot.get(reading)
            if value is None:
                continue  # stored raw; no main quantity (e.g. power on an energy meter)
            last_ts = slot.last_ts
            last_value = slot.last_value
            # The common case, inlined: MeterRegister.account's plain differencing with the same
            # arithmetic (fast_until excludes non-cumulative meters, a held glitch and replacements).
            # (a long gap takes the rules' path: its reading is flagged ``gap``)
            if last_ts < ts < slot.fast_until and last_value is not None and ts - last_ts <= LONG_GAP_MS:
                delta = value - last_value
                if 0.0 <= delta <= slot.cap_per_ms * (ts - last_ts) and value <= VALUE_CEILING:
                    start = last_ts - last_ts % size
                    pending = slot.pending
                    if ts <= start + size:  # split_interval's one-window result, inline
                        pending[start] = pending.get(start, 0.0) + delta
                    else:
                        for window_start, share in split_interval(last_ts, ts, delta, size):
                            pending[window_start] = pending.get(window_start, 0.0) + share
                    slot.last_ts = ts
                    slot.last_value = value
                    continue
            outcome = slot.account(ts, value, slot.pending, size, notes)
            if notes:
                for kind, at_ms, detail, previous, noted in notes:
                    out.event(slot, kind, at_ms, detail, previous, noted)
                notes.clear()
            if outcome is ACCEPTED:
                continue
            if outcome is DUPLICATE:
                out.duplicates += 1
                dropped = _drop(dropped, position)
            elif outcome is OUT_OF_ORDER:
                out.rederive.append((slot.site_id, slot.meter_id, ts))
            elif outcome is RETRACTED:
                out.glitches.append((slot.site_id, slot.meter_id, slot.retract_ts, ts))
            else:  # NEGATIVE or OUT_OF_RANGE: refused, the meter's state unchanged
                out.dead_letters.append(_refused(reading, out.now_ms, outcome is OUT_OF_RANGE, slot, value))
                dropped = _drop(dropped, position)
        if max_ts != NEVER_MS:
            out.site_max_ts[batch.site_id] = max_ts
        if dropped is None:
            out.readings.extend(readings)
        else:
            out.readings.extend(kept for at, kept in enumerate(readings) if at not in dropped)

    # ------------------------------------------------------------------ end of step

    def drain(self, out: StepOutput, now_ms: int) -> tuple[list[MeterInterval], list[MeterState]]:
        """The step's amounts per (meter, window) and the touched meters' states; resets the slots."""
        intervals: list[MeterInterval] = []
        states: list[MeterState] = []
        for slot in out.touched:
            slot.dirty = False
            slot.seen_ms = now_ms
            if slot.pending:
                estimated = slot.estimated
                for window_start, amount in slot.pending.items():
                    intervals.append(
                        MeterInterval(
                            site_id=slot.site_id,
                            meter_id=slot.meter_id,
                            window_start_ms=window_start,
                            amount=amount,
                            estimated=estimated,
                        )
                    )
                slot.pending = {}
            if slot.last_ts != NEVER_MS:
                states.append(slot.state(now_ms))
        out.touched = []
        return intervals, states

    def slots(self) -> Iterator[MeterSlot]:
        for slots in self._sites.values():
            yield from slots.values()

    def prune(self, now_ms: int) -> None:
        """Forget interval timestamps older than the retention (at most once per window of wall time)."""
        if now_ms - self._last_prune_ms < self.window_ms:
            return
        self._last_prune_ms = now_ms
        for slot in self._interval_slots:
            floor = slot.last_ts - self.dedup_retention_ms
            if floor > slot.floor_ts:
                slot.floor_ts = floor
                if slot.recent:
                    slot.recent = {t: v for t, v in slot.recent.items() if t > floor}

    def apply(self, reading: Reading, now_ms: int = 0) -> tuple[list[MeterInterval], list[MeterEvent]]:
        """One reading on its own (tests, tools): the amounts and events it produced."""
        out = StepOutput(now_ms)
        self.apply_batch(ReadingBatch(reading.site_id, [reading]), out)
        intervals, _ = self.drain(out, now_ms)
        return intervals, out.events()


def _drop(dropped: set[int] | None, position: int) -> set[int]:
    if dropped is None:
        dropped = set()
    dropped.add(position)
    return dropped


def _refused(reading: Reading, now_ms: int, out_of_range: bool, slot: MeterSlot, value: float) -> DeadLetter:
    if out_of_range:
        detail = (
            f"{slot.quantity.value} {value!r} is not finite or beyond {VALUE_CEILING:g} in magnitude: "
            "no meter reads that"
        )
        return _dead_letter(reading, now_ms, Reason.OUT_OF_RANGE, detail)
    return _dead_letter(
        reading, now_ms, Reason.NEGATIVE_INTERVAL_AMOUNT, f"interval amount {value} is negative"
    )


def _dead_letter(reading: Reading, now_ms: int, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        received_ms=now_ms,
        source="processor",
        reason=reason,
        detail=detail,
        payload=msgspec.json.encode(reading),
        site_id=reading.site_id,
        meter_id=reading.meter_id,
    )


def _unknown_site(batch: ReadingBatch, now_ms: int) -> list[DeadLetter]:
    detail = f"site {batch.site_id!r} is not configured"
    return [_dead_letter(r, now_ms, Reason.UNKNOWN_SITE, detail) for r in batch.readings]


def _unknown_meter(reading: Reading, site_id: str, now_ms: int) -> DeadLetter:
    """``site_id``: the batch's (authoritative for the lookup), named in the detail."""
    detail = f"meter {reading.meter_id!r} is not configured for site {site_id!r}"
    return _dead_letter(reading, now_ms, Reason.UNKNOWN_METER, detail)
