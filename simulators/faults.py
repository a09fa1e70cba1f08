"""Seeded fault injection: what real meter fleets and networks do to telemetry.

Two places in the stream:

* on readings, before encoding (``ReadingFaults``): **counter resets** (a register restarts at 0, at a
  given time or at random, then keeps counting from there) and **clock skew** (a meter's clock runs a
  constant offset ahead or behind);
* on messages ``(topic, payload)`` (``MessageFaults``, or the ``inject`` generator): **malformed**
  payloads (invalid JSON, wrong types, NaN, missing ``ts``), **drop**, **duplicate**, and **reorder**
  (a message held back and sent after the next ``reorder_depth`` messages on the same topic, so the
  meter's readings really arrive out of order). Stages run in that order, so a dropped message is
  never duplicated, and ``published = produced - dropped`` (``produced`` counting duplicates).

Each fault draws from its own random generator derived from the seed: the same seed gives the same
faults, and enabling one fault does not change which messages another one hits. ``FaultCounts``
records everything injected so a test or benchmark can reconcile published and stored data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from simulators.encoding import Message
from simulators.meters import CUMULATIVE_FIELDS, MeterSample
from simulators.randomness import derived_rng

MALFORMED_KINDS: Final = ("invalid_json", "wrong_type", "nan", "missing_ts")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    drop: float = 0.0
    """Probability that a message is lost."""
    duplicate: float = 0.0
    """Probability that a message is sent twice."""
    reorder: float = 0.0
    """Probability that a message is held back ..."""
    reorder_depth: int = 3
    """... until this many later messages of the same topic have been sent."""
    malformed: float = 0.0
    """Probability that a message's payload is corrupted (one of ``malformed_kinds``, at random)."""
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    reset: float = 0.0
    """Probability, per reading, that the meter's register restarts at 0."""
    reset_at_ms: int | None = None
    """Event time at which the registers of ``reset_meters`` restart at 0 (once)."""
    reset_meters: frozenset[str] = frozenset()
    """``site_id/meter_id`` names ``reset_at_ms`` applies to; empty means every meter."""
    clock_skew_ms: int = 0
    """Largest clock offset of a skewed meter; each gets a constant offset in ``[-skew, +skew]``."""
    clock_skew_share: float = 1.0
    """Share of meters whose clock is skewed (when ``clock_skew_ms`` > 0)."""

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "malformed", "reset", "clock_skew_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {name} must be a probability in [0, 1], got {value}")
        if self.reorder_depth < 1:
            raise ValueError("reorder_depth must be >= 1")
        if self.clock_skew_ms < 0:
            raise ValueError("clock_skew_ms must be >= 0")
        unknown = set(self.malformed_kinds) - set(MALFORMED_KINDS)
        if unknown or not self.malformed_kinds:
            raise ValueError(f"malformed kinds must be some of {MALFORMED_KINDS}, got {self.malformed_kinds}")

    @property
    def touches_readings(self) -> bool:
        return (
            self.reset > 0
            or self.reset_at_ms is not None
            or (self.clock_skew_ms > 0 and self.clock_skew_share > 0)
        )

    @property
    def touches_messages(self) -> bool:
        return self.drop > 0 or self.duplicate > 0 or self.reorder > 0 or self.malformed > 0


@dataclass(slots=True)
class FaultCounts:
    """What was injected. ``*_readings`` count the readings inside the affected messages."""

    dropped: int = 0
    dropped_readings: int = 0
    duplicated: int = 0
    duplicated_readings: int = 0
    reordered: int = 0
    malformed: int = 0
    malformed_readings: int = 0
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    resets: int = 0
    skewed_readings: int = 0

    def as_dict(self) -> dict[str, int]:
        out = {
            name: getattr(self, name)
            for name in (
                "dropped",
                "dropped_readings",
                "duplicated",
                "duplicated_readings",
                "reordered",
                "malformed",
                "malformed_readings",
                "resets",
                "skewed_readings",
            )
        }
        for kind, n in sorted(self.malformed_by_kind.items()):
            out[f"malformed_{kind}"] = n
        return out


# ------------------------------------------------------------------------------------------ message faults


def corrupt_payload(payload: bytes, kind: str) -> bytes:
    """``payload`` broken the way ``kind`` says. Deterministic: the same input gives the same output.

    ``invalid_json`` truncates it; ``wrong_type`` turns the first register value into a string with
    its unit; ``nan`` makes it a ``NaN`` literal (not JSON, but what broken firmware sends);
    ``missing_ts`` deletes the timestamp. In an array payload the first element is changed.
    """
    if kind == "invalid_json":
        return payload[: max(len(payload) // 2, 1)] + b"\x00}"
    doc: Any = json.loads(payload)
    target: dict[str, Any] = doc[0] if isinstance(doc, list) else doc
    if kind == "missing_ts":
        target.pop("ts", None)
    else:
        name = next((k for k in target if k in CUMULATIVE_FIELDS), None) or next(
            k for k in target if k != "ts"
        )
        target[name] = f"{target[name]} {name.rsplit('_', 1)[-1]}" if kind == "wrong_type" else float("nan")
    return json.dumps(doc, separators=(",", ":")).encode()


def maybe_corrupt(
    msg: Message, probability: float, kinds: tuple[str, ...], rng: random.Random, counts: FaultCounts
) -> Message:
    if probability <= 0 or rng.random() >= probability:
        return msg
    kind = rng.choice(kinds)
    counts.malformed += 1
    counts.malformed_readings += msg.readings
    counts.malformed_by_kind[kind] = counts.malformed_by_kind.get(kind, 0) + 1
    return Message(msg.topic, corrupt_payload(msg.payload, kind), msg.readings, malformed=True)


def maybe_drop(msg: Message, probability: float, rng: random.Random, counts: FaultCounts) -> Message | None:
    if probability <= 0 or rng.random() >= probability:
        return msg
    counts.dropped += 1
    counts.dropped_readings += msg.readings
    return None


def maybe_duplicate(
    msg: Message, probability: float, rng: random.Random, counts: FaultCounts
) -> list[Message]:
    if probability <= 0 or rng.random() >= probability:
        return [msg]
    counts.duplicated += 1
    counts.duplicated_readings += msg.readings
    return [msg, msg]


class Reorderer:
    """Holds a message back (with ``probability``) until ``depth`` later messages of its topic have gone."""

    def __init__(self, probability: float, depth: int, rng: random.Random, counts: FaultCounts) -> None:
        self.probability = probability
        self.depth = depth
        self._rng = rng
        self._counts = counts
        self._held: dict[str, list[list[Any]]] = {}  # topic -> [[messages still to wait for, message], ...]

    @property
    def held(self) -> int:
        return sum(len(v) for v in self._held.values())

    def push(self, msg: Message) -> list[Message]:
        released: list[Message] = []
        held = self._held.get(msg.topic)
        if held:
            for entry in held:
                entry[0] -= 1
            released = [entry[1] for entry in held if entry[0] <= 0]
            if released:
                held[:] = [entry for entry in held if entry[0] > 0]
        out: list[Message] = []
        if self.probability > 0 and self._rng.random() < self.probability:
            self._counts.reordered += 1
            self._held.setdefault(msg.topic, []).append([self.depth, msg])
        else:
            out.append(msg)
        out.extend(released)
        return out

    def flush(self) -> list[Message]:
        out = [entry[1] for held in self._held.values() for entry in held]
        self._held.clear()
        return out


class MessageFaults:
    """The message-level fault stages in order: malformed -> drop -> duplicate -> reorder."""

    def __init__(self, config: FaultConfig, *, seed: int, counts: FaultCounts | None = None) -> None:
        self.config = config
        self.counts = counts if counts is not None else FaultCounts()
        self._malformed_rng = derived_rng(seed, "faults", "malformed")
        self._drop_rng = derived_rng(seed, "faults", "drop")
        self._duplicate_rng = derived_rng(seed, "faults", "duplicate")
        self._reorderer = Reorderer(
            config.reorder, config.reorder_depth, derived_rng(seed, "faults", "reorder"), self.counts
        )

    def feed(self, msg: Message) -> list[Message]:
        """The messages to send now, given that ``msg`` is the next one produced."""
        c = self.config
        msg = maybe_corrupt(msg, c.malformed, c.malformed_kinds, self._malformed_rng, self.counts)
        kept = maybe_drop(msg, c.drop, self._drop_rng, self.counts)
        if kept is None:
            return []
        out: list[Message] = []
        for copy in maybe_duplicate(kept, c.duplicate, self._duplicate_rng, self.counts):
            out.extend(self._reorderer.push(copy))
        return out

    def flush(self) -> list[Message]:
        """Messages still held back (end of the run)."""
        return self._reorderer.flush()


def inject(
    messages: Iterable[Message], config: FaultConfig, *, seed: int, counts: FaultCounts | None = None
) -> Iterator[Message]:
    """The message stream with faults injected (held-back messages come out when the input ends)."""
    faults = MessageFaults(config, seed=seed, counts=counts)
    for msg in messages:
        yield from faults.feed(msg)
    yield from faults.flush()


# ------------------------------------------------------------------------------------------ reading faults


class ReadingFaults:
    """Counter resets and clock skew, applied to readings before they are encoded.

    A reset makes the meter report ``register - offset`` from then on, with ``offset`` the register
    value at the reset (so it shows 0, then keeps counting). If the true register later rolls over
    below the offset, the meter is treated as having been replaced (the offset is dropped).
    """

    def __init__(self, config: FaultConfig, *, seed: int, counts: FaultCounts | None = None) -> None:
        self.config = config
        self.counts = counts if counts is not None else FaultCounts()
        self._reset_rng = derived_rng(seed, "faults", "reset")
        self._skew_rng = derived_rng(seed, "faults", "skew")
        self._offsets: dict[tuple[str, str, str], float] = {}
        self._reset_at_done: set[tuple[str, str]] = set()
        self._skew_ms: dict[tuple[str, str], int] = {}

    def _skew_of(self, key: tuple[str, str]) -> int:
        skew = self._skew_ms.get(key)
        if skew is None:
            c = self.config
            skew = 0
            if c.clock_skew_ms > 0 and self._skew_rng.random() < c.clock_skew_share:
                while skew == 0:
                    skew = self._skew_rng.randint(-c.clock_skew_ms, c.clock_skew_ms)
            self._skew_ms[key] = skew
        return skew

    def _reset_now(self, sample: MeterSample) -> bool:
        c = self.config
        key = (sample.site_id, sample.meter_id)
        if (
            c.reset_at_ms is not None
            and sample.ts_ms >= c.reset_at_ms
            and key not in self._reset_at_done
            and (not c.reset_meters or f"{sample.site_id}/{sample.meter_id}" in c.reset_meters)
        ):
            self._reset_at_done.add(key)
            return True
        return c.reset > 0 and self._reset_rng.random() < c.reset

    def apply(self, samples: Iterable[MeterSample]) -> list[MeterSample]:
        if not self.config.touches_readings:
            return list(samples)
        out: list[MeterSample] = []
        for s in samples:
            fields = s.fields
            if self._reset_now(s):
                self.counts.resets += 1
                for name, value in fields.items():
                    if name in s.registers:
                        self._offsets[(s.site_id, s.meter_id, name)] = value
            if self._offsets:
                fields = dict(fields)
                for name, value in fields.items():
                    okey = (s.site_id, s.meter_id, name)
                    offset = self._offsets.get(okey)
                    if offset is not None:
                        if value < offset:
                            del self._offsets[okey]
                        else:
                            fields[name] = value - offset
            skew = self._skew_of((s.site_id, s.meter_id))
            if skew:
                self.counts.skewed_readings += 1
            out.append(MeterSample(s.site_id, s.meter_id, s.ts_ms + skew, fields, s.registers))
        return out
