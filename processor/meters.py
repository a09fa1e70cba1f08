"""Per-meter state: from register readings to amounts per window.

This is the processor's hot path (one pass per reading), so it is written for speed: the meter's
configuration is resolved once into a mutable ``MeterSlot``, amounts are summed per window in the slot
during a step (no object per reading), and events, which are rare, take the slow branches.

Rules (docs/kpis.md, "Meter rules"):

* The meter's main quantity is chosen by its configured unit (``kWh`` -> ``energy_kwh``, ``m3`` ->
  ``volume_m3`` ...). Readings are already canonical (the collector scaled the payload fields), so the
  unit only picks the field; it never rescales the value.
* Cumulative register: the first reading only sets the baseline (``first`` event). A later reading
  (``ts > last_ts``) adds ``register_delta`` (reset and rollover flagged, never negative), spread over
  the windows that ``[last_ts, ts)`` overlaps. ``ts == last_ts`` is a duplicate: dropped, not stored
  again; a different value at the same time is reported as a ``duplicate`` event (the first value
  wins). ``ts < last_ts`` is out of order: stored raw and flagged, no energy, because the interval it
  falls in was already accounted for by the two readings around it.
* Interval register: the value is the amount of the period ending at ``ts`` and goes to
  ``interval_window_ms(ts)``. Duplicates are found with the meter's recent timestamps, kept for
  ``dedup_retention_ms`` behind its newest reading; an older reading cannot be told from a replay, so
  it is stored raw and flagged ``out_of_order``, with no energy (never double counting). After a
  restart only the stored newest timestamp is known, so readings older than it are treated the same
  way until the retention has passed.
* A reading without a value for the main quantity (e.g. power only) is stored raw with no energy;
  integrating power is issue #3. A negative interval amount is dead-lettered.
* Unknown sites or meters (the collector normally rejects them) are dead-lettered.
* Out-of-order, duplicate and late events are aggregated to one per meter and step, so a replay storm
  produces a handful of events rather than one per reading.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

import msgspec

from peakwatch.config import Registry
from peakwatch.domain.energy import interval_window_ms, register_delta, split_interval, window_start_ms
from peakwatch.domain.models import (
    DeadLetter,
    Meter,
    MeterEvent,
    MeterFlag,
    MeterInterval,
    MeterState,
    Reading,
    ReadingBatch,
    Register,
)
from peakwatch.domain.reasons import Reason
from peakwatch.domain.units import meter_quantity

NEVER_MS = -(1 << 62)
"""``last_ts`` of a meter never heard from: every timestamp is after it."""

DEFAULT_DEDUP_RETENTION_MS = 15 * 60_000

_AGGREGATED = frozenset({MeterFlag.OUT_OF_ORDER, MeterFlag.DUPLICATE, MeterFlag.LATE})


class MeterSlot:
    """One meter's configuration and register state, mutated in place on the hot path."""

    __slots__ = (
        "cumulative",
        "dirty",
        "floor_ts",
        "get",
        "last_ts",
        "last_value",
        "meter",
        "meter_id",
        "pending",
        "recent",
        "register_max",
        "site_id",
    )

    def __init__(self, meter: Meter) -> None:
        quantity, scale = meter_quantity(meter.unit)
        self.meter = meter
        self.site_id = meter.site_id
        self.meter_id = meter.id
        self.get: Callable[[Reading], float | None] = operator.attrgetter(quantity.value)
        self.cumulative = meter.register is Register.CUMULATIVE
        # register_max is configured in the meter's unit; readings arrive in the canonical unit
        self.register_max = None if meter.register_max is None else meter.register_max * scale
        self.last_ts = NEVER_MS
        self.last_value: float | None = None
        """Cumulative: the baseline (``None``: none yet). Interval: the newest amount (informative)."""
        self.recent: dict[int, float] = {}
        """Interval registers: amounts by timestamp, to drop duplicates."""
        self.floor_ts = NEVER_MS
        """Interval registers: readings before this cannot be de-duplicated any more."""
        self.pending: dict[int, float] = {}
        """Amounts per window start accumulated during the current step."""
        self.dirty = False

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
        "now_ms",
        "readings",
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
            s for slots in self._sites.values() for s in slots.values() if not s.cumulative
        ]
        self._last_prune_ms = NEVER_MS

    def slot(self, site_id: str, meter_id: str) -> MeterSlot | None:
        return self._sites.get(site_id, {}).get(meter_id)

    def restore(self, states: Iterable[MeterState]) -> None:
        """Take the baselines a previous processor stored; meters no longer configured are ignored."""
        for st in states:
            slot = self.slot(st.site_id, st.meter_id)
            if slot is None:
                continue
            slot.last_ts = st.last_ts_ms
            slot.last_value = st.last_value
            if not slot.cumulative:
                # Only the newest timestamp is known: anything older may have been counted already.
                slot.recent = {} if st.last_value is None else {st.last_ts_ms: st.last_value}
                slot.floor_ts = st.last_ts_ms

    # ------------------------------------------------------------------ hot path

    def apply_batch(self, batch: ReadingBatch, out: StepOutput) -> None:
        """Account every reading of ``batch`` into ``out`` and the slots' pending amounts.
        ``batch.site_id`` is authoritative for the meter lookup (the bus partitions by it)."""
        readings = batch.readings
        slots = self._sites.get(batch.site_id)
        if slots is None:
            for r in readings:
                out.dead_letters.append(
                    _dead_letter(
                        r, out.now_ms, Reason.UNKNOWN_SITE, f"site {batch.site_id!r} is not configured"
                    )
                )
            return
        size = self.window_ms
        touched = out.touched
        dropped: set[int] | None = None
        max_ts = out.site_max_ts.get(batch.site_id, NEVER_MS)
        for r in readings:
            slot = slots.get(r.meter_id)
            if slot is None:
                out.dead_letters.append(
                    _dead_letter(
                        r,
                        out.now_ms,
                        Reason.UNKNOWN_METER,
                        f"meter {r.meter_id!r} is not configured for site {batch.site_id!r}",
                    )
                )
                dropped = _drop(dropped, r)
                continue
            ts = r.ts_ms
            if ts > max_ts:
                max_ts = ts
            if not slot.dirty:
                slot.dirty = True
                touched.append(slot)
            value = slot.get(r)
            if value is None:
                continue  # stored raw; no main quantity (e.g. power only)
            if slot.cumulative:
                last_value = slot.last_value
                last_ts = slot.last_ts
                if ts > last_ts and last_value is not None:
                    delta = value - last_value
                    if delta < 0:
                        delta = self._drop_in_register(slot, ts, last_value, value, out)
                    w = window_start_ms(last_ts, size)
                    pending = slot.pending
                    if ts <= w + size:  # the common case: split_interval's one-window result, inline
                        pending[w] = pending.get(w, 0.0) + delta
                    else:
                        for ws, share in split_interval(last_ts, ts, delta, size):
                            pending[ws] = pending.get(ws, 0.0) + share
                    slot.last_ts = ts
                    slot.last_value = value
                elif last_value is None:
                    slot.last_ts = ts
                    slot.last_value = value
                    out.event(
                        slot, MeterFlag.FIRST, ts, "first reading: baseline set, no energy yet", None, value
                    )
                elif ts == last_ts:
                    if value != last_value:
                        out.event(
                            slot,
                            MeterFlag.DUPLICATE,
                            ts,
                            f"second value {value} at the same time as {last_value}: first kept",
                            last_value,
                            value,
                        )
                    out.duplicates += 1
                    dropped = _drop(dropped, r)
                else:
                    out.event(
                        slot,
                        MeterFlag.OUT_OF_ORDER,
                        ts,
                        f"reading older than the baseline at {last_ts}: stored, no energy",
                        last_value,
                        value,
                    )
            else:
                recent = slot.recent
                seen = recent.get(ts)
                if seen is not None:
                    if value != seen:
                        out.event(
                            slot,
                            MeterFlag.DUPLICATE,
                            ts,
                            f"second amount {value} for the same interval as {seen}: first kept",
                            seen,
                            value,
                        )
                    out.duplicates += 1
                    dropped = _drop(dropped, r)
                elif ts <= slot.floor_ts:
                    out.event(
                        slot,
                        MeterFlag.OUT_OF_ORDER,
                        ts,
                        f"interval reading at or before {slot.floor_ts}, beyond de-duplication: "
                        "stored, no energy",
                        None,
                        value,
                    )
                elif value < 0:
                    out.dead_letters.append(
                        _dead_letter(
                            r,
                            out.now_ms,
                            Reason.NEGATIVE_INTERVAL_AMOUNT,
                            f"interval amount {value} is negative",
                        )
                    )
                    dropped = _drop(dropped, r)
                else:
                    recent[ts] = value
                    w = interval_window_ms(ts, size)
                    pending = slot.pending
                    pending[w] = pending.get(w, 0.0) + value
                    if ts > slot.last_ts:
                        slot.last_ts = ts
                        slot.last_value = value
        if max_ts != NEVER_MS:
            out.site_max_ts[batch.site_id] = max_ts
        if dropped is None:
            out.readings.extend(readings)
        else:
            out.readings.extend(r for r in readings if id(r) not in dropped)

    @staticmethod
    def _drop_in_register(slot: MeterSlot, ts: int, previous: float, value: float, out: StepOutput) -> float:
        delta, flag = register_delta(previous, value, slot.register_max)
        assert flag is not None
        what = {
            MeterFlag.ROLLOVER: "rolled over at its maximum",
            MeterFlag.RESET: "restarted from zero (reset)",
            MeterFlag.REGISTER_DROP: "dropped without a reset (replaced meter or glitch): new baseline",
        }[flag]
        out.event(slot, flag, ts, f"register {what}: {previous} -> {value}, counted {delta}", previous, value)
        return delta

    # ------------------------------------------------------------------ end of step

    def drain(self, out: StepOutput, now_ms: int) -> tuple[list[MeterInterval], list[MeterState]]:
        """The step's amounts per (meter, window) and the touched meters' states; resets the slots."""
        intervals: list[MeterInterval] = []
        states: list[MeterState] = []
        for slot in out.touched:
            slot.dirty = False
            if slot.pending:
                for w, amount in slot.pending.items():
                    intervals.append(
                        MeterInterval(
                            site_id=slot.site_id, meter_id=slot.meter_id, window_start_ms=w, amount=amount
                        )
                    )
                slot.pending = {}
            if slot.last_ts != NEVER_MS:
                states.append(slot.state(now_ms))
        out.touched = []
        return intervals, states

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


def _drop(dropped: set[int] | None, reading: Reading) -> set[int]:
    if dropped is None:
        dropped = set()
    dropped.add(id(reading))
    return dropped


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
