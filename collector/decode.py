"""One MQTT message in, readings and dead letters out (the device contract of docs/ingest.md).

Pure: no I/O and no clock (the caller passes ``received_ms``), so every rule is a table test.

Two paths give the same answer at different speeds:

* the fast path decodes the payload with msgspec straight into a typed Struct (``ts`` plus every
  field of ``PAYLOAD_FIELDS``, unknown fields forbidden) and normalises it; it is taken only when
  every element of the message is acceptable;
* anything else (a syntax error, a type error, a value out of range in any element) re-reads the
  message generically and judges each element alone, so a batch with one bad element still
  delivers the others and the bad one gets a precise reason.

msgspec rejects the non-standard ``NaN``/``Infinity`` literals and numbers beyond the float range
(``1e400``); the generic path then falls back to the standard library parser, which accepts them, so
such an element is reported as ``non_finite`` rather than the whole message as ``malformed_json``.

Duplicate keys in one object: the last occurrence wins (what msgspec, ``json`` and JavaScript do);
devices must not rely on it.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import msgspec

from peakwatch.config import Registry, Settings
from peakwatch.domain.instants import from_datetime
from peakwatch.domain.models import DeadLetter, Quantity, Reading
from peakwatch.domain.reasons import Reason
from peakwatch.domain.units import PAYLOAD_FIELDS, RATE_CEILING, VALUE_CEILING, in_range

DAY_MS: Final = 86_400_000
DEFAULT_MAX_AGE_MS: Final = 400 * DAY_MS
"""Readings older than this (relative to arrival) are refused: a little over a year, so a gateway
that buffered through a long outage can still upload, while a meter whose clock reset to 1970 or
2000 is caught."""
DEFAULT_MAX_FUTURE_MS: Final = 300_000
DEFAULT_MAX_PAYLOAD_BYTES: Final = 1_048_576
KEPT_BYTES_OF_OVERSIZED: Final = 1024
"""An oversized payload is dead-lettered with only its first bytes (enough to identify the sender),
so a misbehaving device cannot fill the dead-letter table."""

_REGISTERS: Final = frozenset(
    {Quantity.ENERGY_KWH, Quantity.VOLUME_M3, Quantity.HEAT_GJ, Quantity.MASS_T, Quantity.COUNT}
)
"""Quantities that are counters or amounts and so can never be negative (power can: export)."""
_ALLOWED: Final = ", ".join(["ts", *sorted(PAYLOAD_FIELDS)])


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeContext:
    """What decoding needs besides the message; built once at start-up and shared."""

    registry: Registry
    topic_prefix: str = "telemetry"
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS
    max_age_ms: int = DEFAULT_MAX_AGE_MS
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES

    @classmethod
    def from_settings(cls, settings: Settings, registry: Registry) -> DecodeContext:
        return cls(
            registry=registry,
            topic_prefix=settings.mqtt_topic_prefix,
            max_future_ms=settings.max_future_ms,
            max_age_ms=settings.max_age_ms,
            max_payload_bytes=settings.max_payload_bytes,
        )

    @property
    def topic_filter(self) -> str:
        """The MQTT subscription that matches every topic this context can decode."""
        prefix = self.topic_prefix.strip("/")
        return f"{prefix}/+/+" if prefix else "+/+"


class Decoded(msgspec.Struct, gc=False):
    """Everything one message produced; every element of the input is in exactly one list."""

    readings: list[Reading]
    dead_letters: list[DeadLetter]


# ------------------------------------------------------------------------------------------- fast path

_Sample = msgspec.defstruct(
    "_Sample",
    [("ts", int | datetime), *((name, float | None, None) for name in PAYLOAD_FIELDS)],
    forbid_unknown_fields=True,
)
_FAST_DECODER: Final = msgspec.json.Decoder(_Sample | list[_Sample])  # type: ignore[valid-type]
# per payload field, in _Sample order: (canonical field name, scale, is a register)
_SPECS: Final = tuple((q.value, scale, q in _REGISTERS) for q, scale in PAYLOAD_FIELDS.values())
_astuple = msgspec.structs.astuple
_POWER: Final = Quantity.POWER_KW.value
# The common payload names every quantity in its canonical unit (energy_kwh, power_kw ...): then no
# value needs scaling, and msgspec has already refused NaN, infinities and overflow. Positions in
# _Sample (after ts) of the canonical fields and of the other unit variants:
_CANONICAL_AT: Final = tuple(i + 1 for i, (_, scale) in enumerate(PAYLOAD_FIELDS.values()) if scale == 1.0)
_VARIANT_AT: Final = tuple(i + 1 for i, (_, scale) in enumerate(PAYLOAD_FIELDS.values()) if scale != 1.0)
_canonical = operator.itemgetter(*_CANONICAL_AT)
_variants = operator.itemgetter(*_VARIANT_AT)
assert tuple(PAYLOAD_FIELDS[list(PAYLOAD_FIELDS)[i - 1]][0].value for i in _CANONICAL_AT) == (
    "energy_kwh",
    "power_kw",
    "volume_m3",
    "heat_gj",
    "mass_t",
    "count",
), "canonical payload fields must follow Reading's quantity order"


def _fast_reading(
    sample: msgspec.Struct, site_id: str, meter_id: str, lo_ms: int, hi_ms: int
) -> Reading | None:
    """The reading, or ``None`` when anything is wrong (the generic path then says what)."""
    values = _astuple(sample)
    ts = values[0]
    if type(ts) is int:
        ts_ms = ts
    elif ts.tzinfo is None:
        return None
    else:
        ts_ms = from_datetime(ts)
    if ts_ms < lo_ms or ts_ms > hi_ms:
        return None
    if _variants(values).count(None) == len(_VARIANT_AT):
        energy, power, volume, heat, mass, count = _canonical(values)
        if (
            (
                energy is None
                and power is None
                and volume is None
                and heat is None
                and mass is None
                and count is None
            )
            or (energy is not None and not 0 <= energy <= VALUE_CEILING)
            or (power is not None and not -RATE_CEILING <= power <= RATE_CEILING)
            or (volume is not None and not 0 <= volume <= VALUE_CEILING)
            or (heat is not None and not 0 <= heat <= VALUE_CEILING)
            or (mass is not None and not 0 <= mass <= VALUE_CEILING)
            or (count is not None and not 0 <= count <= VALUE_CEILING)
        ):
            return None
        return Reading(
            site_id=site_id, meter_id=meter_id, ts_ms=ts_ms, energy_kwh=energy, power_kw=power,
            volume_m3=volume, heat_gj=heat, mass_t=mass, count=count,
        )  # fmt: skip
    out: dict[str, float] = {}
    for i, value in enumerate(values):
        if i and value is not None:
            field, scale, register = _SPECS[i - 1]
            if field in out or (register and value < 0):
                return None
            value = value * scale
            if not in_range(value, RATE_CEILING if field == _POWER else VALUE_CEILING):
                return None
            out[field] = value
    if not out:
        return None
    return Reading(site_id=site_id, meter_id=meter_id, ts_ms=ts_ms, **out)


# ---------------------------------------------------------------------------------------- generic path


def _parse_any(payload: bytes) -> tuple[object, str | None]:
    """The payload as plain Python values, or ``(None, why)`` if it is not JSON at all."""
    try:
        return msgspec.json.decode(payload), None
    except RecursionError:
        return None, "JSON is nested too deeply"
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # "Number out of range"; bad UTF-8 in a string
        strict_error = str(exc)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"payload is not valid UTF-8 (byte {exc.start}: {exc.reason})"
    try:
        # accepts NaN, Infinity and 1e400 (-> inf), so those become precise per-element reasons
        return json.loads(text), None
    except (ValueError, RecursionError):
        return None, strict_error


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ts_ms(ts: object) -> int | str:
    """Epoch milliseconds, or the reason text for ``bad_ts``."""
    if type(ts) is int:
        return ts
    if isinstance(ts, str):
        try:
            parsed = msgspec.convert(ts, datetime)
        except msgspec.ValidationError:
            return (
                f"'ts' {_short(ts)} is not an RFC 3339 date-time "
                "(e.g. 2024-05-01T08:00:00+08:00 or 2024-05-01T00:00:00Z)"
            )
        if parsed.tzinfo is None:
            return (
                f"'ts' {_short(ts)} has no time zone: add Z or an offset such as +08:00 "
                "(local times are ambiguous)"
            )
        return from_datetime(parsed)
    return f"'ts' must be integer epoch milliseconds or an RFC 3339 string, got {_json_type(ts)} {_short(ts)}"


def _unknown_field_detail(names: list[str]) -> str:
    hints = []
    for name in names:
        lower = name.lower()
        if lower != name and (lower in PAYLOAD_FIELDS or lower == "ts"):
            hints.append(f"{name!r} -> {lower!r} (field names are lower case)")
    quoted = ", ".join(repr(n) for n in names)
    text = f"unknown field{'s' if len(names) > 1 else ''} {quoted}; allowed: {_ALLOWED}"
    return text + (f"; did you mean {'; '.join(hints)}" if hints else "")


def _reading_or_fault(
    element: object, site_id: str, meter_id: str, received_ms: int, ctx: DecodeContext
) -> Reading | tuple[Reason, str]:
    """One element: the reading, or the first thing wrong with it (reason, detail)."""
    if not isinstance(element, dict):
        return Reason.NOT_AN_OBJECT, f"expected a JSON object, got {_json_type(element)}"
    if "ts" not in element:
        return Reason.MISSING_TS, "no 'ts' field: every reading needs a time stamp"
    ts_ms = _ts_ms(element["ts"])
    if isinstance(ts_ms, str):
        return Reason.BAD_TS, ts_ms
    unknown = [str(k) for k in element if k != "ts" and k not in PAYLOAD_FIELDS]
    if unknown:
        return Reason.UNKNOWN_FIELD, _unknown_field_detail(unknown)
    # one pass per reason, so that the reported reason follows the order of the docs' table
    present = [
        (name, quantity, scale, element[name])
        for name, (quantity, scale) in PAYLOAD_FIELDS.items()
        if element.get(name) is not None
    ]  # absent or null: not measured
    for name, _, _, value in present:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Reason.WRONG_TYPE, f"{name!r} must be a number, got {_json_type(value)} {_short(value)}"
    numbers: list[tuple[str, Quantity, float, float]] = []
    for name, quantity, scale, value in present:
        try:
            number = float(value)
        except OverflowError:
            return Reason.NON_FINITE, f"{name!r} is beyond the floating-point range"
        if not math.isfinite(number):
            return Reason.NON_FINITE, f"{name!r} is {number!r}: values must be finite numbers"
        scaled = number * scale
        if not math.isfinite(scaled):
            return Reason.NON_FINITE, f"{name!r} = {number!r} overflows when converted to {quantity.value}"
        numbers.append((name, quantity, number, scaled))
    source: dict[str, str] = {}
    for name, quantity, _, _ in numbers:
        if quantity.value in source:
            return (
                Reason.CONFLICTING_FIELDS,
                f"{source[quantity.value]!r} and {name!r} both give "
                f"{quantity.value}: send one unit per quantity",
            )
        source[quantity.value] = name
    for name, quantity, number, _ in numbers:
        if quantity in _REGISTERS and number < 0:
            return (
                Reason.NEGATIVE_REGISTER,
                f"{name!r} = {number!r}: {quantity.value} is a register or amount and cannot be negative "
                "(only power may be negative)",
            )
    for name, quantity, number, scaled in numbers:
        ceiling = RATE_CEILING if quantity is Quantity.POWER_KW else VALUE_CEILING
        if not in_range(scaled, ceiling):
            return (
                Reason.OUT_OF_RANGE,
                f"{name!r} = {number!r} is {scaled:g} {quantity.value.rpartition('_')[2] or quantity.value}, "
                f"beyond the physical bound of {ceiling:g} (docs/ingest.md): no meter reads that",
            )
    out = {quantity.value: scaled for _, quantity, _, scaled in numbers}
    if not out:
        return Reason.NO_QUANTITY, f"no quantity with a value; allowed: {', '.join(sorted(PAYLOAD_FIELDS))}"
    if ts_ms > received_ms + ctx.max_future_ms:
        ahead_s = (ts_ms - received_ms) / 1000
        return (
            Reason.TS_IN_FUTURE,
            f"ts {ts_ms} is {ahead_s:.3f} s ahead of the collector clock "
            f"(limit {ctx.max_future_ms / 1000:g} s): check the device clock (NTP) and that ts is in "
            "milliseconds",
        )
    if ts_ms < received_ms - ctx.max_age_ms:
        age_days = (received_ms - ts_ms) / DAY_MS
        hint = "; it looks like epoch seconds, ts must be milliseconds" if 10**9 <= ts_ms < 10**11 else ""
        return (
            Reason.TS_TOO_OLD,
            f"ts {ts_ms} is {age_days:.1f} days old (limit {ctx.max_age_ms / DAY_MS:g} days){hint}",
        )
    return Reading(site_id=site_id, meter_id=meter_id, ts_ms=ts_ms, **out)


def _element_json(element: object, payload: bytes) -> bytes:
    try:
        return json.dumps(element, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        try:
            return json.dumps(element, separators=(",", ":")).encode("ascii")
        except (ValueError, RecursionError):
            return payload


def _dead_letter(
    topic: str, received_ms: int, ids: tuple[str | None, str | None], reason: Reason, detail: str, body: bytes
) -> DeadLetter:
    site_id, meter_id = ids
    return DeadLetter(
        received_ms=received_ms,
        source=topic,
        reason=reason.value,
        detail=detail,
        payload=body,
        site_id=site_id,
        meter_id=meter_id,
    )


def _decode_generic(
    topic: str, payload: bytes, received_ms: int, ctx: DecodeContext, site_id: str, meter_id: str
) -> Decoded:
    def letter(reason: Reason, detail: str, body: bytes = payload) -> DeadLetter:
        return _dead_letter(topic, received_ms, (site_id, meter_id), reason, detail, body)

    doc, error = _parse_any(payload)
    if error is not None:
        return Decoded([], [letter(Reason.MALFORMED_JSON, error)])
    if not isinstance(doc, list):
        verdict = _reading_or_fault(doc, site_id, meter_id, received_ms, ctx)
        if isinstance(verdict, Reading):
            return Decoded([verdict], [])
        reason, detail = verdict
        if reason is Reason.NOT_AN_OBJECT:
            detail = f"payload must be a JSON object or an array of objects, got {_json_type(doc)}"
        return Decoded([], [letter(reason, detail)])
    if not doc:
        return Decoded([], [letter(Reason.EMPTY_BATCH, "the array holds no readings")])
    readings: list[Reading] = []
    letters: list[DeadLetter] = []
    count = len(doc)
    for index, element in enumerate(doc):
        verdict = _reading_or_fault(element, site_id, meter_id, received_ms, ctx)
        if isinstance(verdict, Reading):
            readings.append(verdict)
        else:
            reason, detail = verdict
            body = _element_json(element, payload)
            letters.append(letter(reason, f"element {index} of {count}: {detail}", body))
    return Decoded(readings, letters)


# ------------------------------------------------------------------------------------------ entry point


def _split_topic(topic: str, prefix: str) -> tuple[str, str] | None:
    prefix = prefix.strip("/")
    if prefix:
        if not topic.startswith(prefix) or topic[len(prefix) : len(prefix) + 1] != "/":
            return None
        rest = topic[len(prefix) + 1 :]
    else:
        rest = topic
    parts = rest.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def _rejected(
    topic: str, payload: bytes, received_ms: int, ctx: DecodeContext, ids: tuple[str, str] | None
) -> Decoded:
    """The one dead letter for a message refused as a whole (called only for such a message)."""
    site_id, meter_id = ids if ids is not None else (None, None)

    def refused(reason: Reason, detail: str, body: bytes = payload) -> Decoded:
        return Decoded([], [_dead_letter(topic, received_ms, (site_id, meter_id), reason, detail, body)])

    if len(payload) > ctx.max_payload_bytes:
        return refused(
            Reason.PAYLOAD_TOO_LARGE,
            f"payload is {len(payload)} bytes, the limit is {ctx.max_payload_bytes}; split it into "
            f"smaller batches (only the first {KEPT_BYTES_OF_OVERSIZED} bytes are kept here)",
            payload[:KEPT_BYTES_OF_OVERSIZED],
        )
    if site_id is None or meter_id is None:
        prefix = ctx.topic_prefix.strip("/")
        expected = f"{prefix}/<site_id>/<meter_id>" if prefix else "<site_id>/<meter_id>"
        return refused(Reason.BAD_TOPIC, f"topic {topic!r} does not match {expected}")
    if site_id not in ctx.registry.sites:
        return refused(Reason.UNKNOWN_SITE, f"site {site_id!r} is not in the registry")
    return refused(
        Reason.UNKNOWN_METER,
        f"meter {meter_id!r} is not registered at site {site_id!r}; add it to the registry "
        "(its data is kept here until then)",
    )


def decode_message(topic: str, payload: bytes, received_ms: int, ctx: DecodeContext) -> Decoded:
    """Judge one MQTT message. Never raises on any input; see the module docstring for the rules."""
    ids = _split_topic(topic, ctx.topic_prefix)
    if ids is None or len(payload) > ctx.max_payload_bytes or ids not in ctx.registry.meters:
        return _rejected(topic, payload, received_ms, ctx, ids)
    site_id, meter_id = ids

    lo_ms = received_ms - ctx.max_age_ms
    hi_ms = received_ms + ctx.max_future_ms
    try:
        doc = _FAST_DECODER.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _decode_generic(topic, payload, received_ms, ctx, site_id, meter_id)
    if isinstance(doc, list):
        readings: list[Reading] = []
        for sample in doc:
            reading = _fast_reading(sample, site_id, meter_id, lo_ms, hi_ms)
            if reading is None:
                return _decode_generic(topic, payload, received_ms, ctx, site_id, meter_id)
            readings.append(reading)
        if readings:
            return Decoded(readings, [])
        return _decode_generic(topic, payload, received_ms, ctx, site_id, meter_id)
    reading = _fast_reading(doc, site_id, meter_id, lo_ms, hi_ms)
    if reading is None:
        return _decode_generic(topic, payload, received_ms, ctx, site_id, meter_id)
    return Decoded([reading], [])
