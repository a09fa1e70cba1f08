"""Properties of the decoder over generated input: it never raises, never loses an element, and the
fast path agrees with the generic one."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.decode import DecodeContext, Decoded, _decode_generic, decode_message
from peakwatch.config import Registry
from peakwatch.domain.reasons import Reason
from peakwatch.domain.units import PAYLOAD_FIELDS

REGISTRY = Registry.from_mapping(
    {
        "sites": [
            {
                "id": "park-1",
                "name": "Park",
                "kind": "park",
                "meters": [{"id": "grid-in", "carrier": "electricity", "role": "grid_import"}],
            },
        ]
    }
)
CTX = DecodeContext(registry=REGISTRY, max_payload_bytes=64 * 1024)
TOPIC = "telemetry/park-1/grid-in"
NOW = 1_714_521_600_000
REGISTER_FIELDS = ("energy_kwh", "volume_m3", "heat_gj", "mass_t", "count")
PROFILE = settings(
    max_examples=int(os.environ.get("PEAKWATCH_TEST_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)

near_now = st.integers(NOW - 500 * 86_400_000, NOW + 600_000)
ts_values = (
    near_now
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.none()
    | near_now.map(lambda ms: _rfc3339(ms))
    | st.text(max_size=30)
)
numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(10**20), 10**20)
    | st.floats(min_value=-1e9, max_value=1e9)
)
quantity_values = numbers | st.none() | st.booleans() | st.text(max_size=5) | st.floats()
# elements with the fields devices really send, with values of every kind (mostly rejected) ...
odd_elements = st.fixed_dictionaries(
    {"ts": ts_values},
    optional={**{name: quantity_values for name in PAYLOAD_FIELDS}, "extra": json_scalars},
)
_UNITS_BY_QUANTITY: dict[str, list[str]] = {}
for _name, (_quantity, _scale) in PAYLOAD_FIELDS.items():
    _UNITS_BY_QUANTITY.setdefault(_quantity.value, []).append(_name)


@st.composite
def valid_elements(draw: st.DrawFn) -> dict[str, Any]:
    """... and elements that pass: ts in the window, one unit per quantity, registers >= 0."""
    in_window = st.integers(NOW - 400 * 86_400_000, NOW + 300_000)
    element: dict[str, Any] = {"ts": draw(in_window | in_window.map(_rfc3339))}
    for quantity in draw(
        st.lists(st.sampled_from(sorted(_UNITS_BY_QUANTITY)), min_size=1, max_size=3, unique=True)
    ):
        low = -1e6 if quantity == "power_kw" else 0
        value = draw(st.floats(min_value=low, max_value=1e12) | st.integers(int(low), 10**12))
        element[draw(st.sampled_from(_UNITS_BY_QUANTITY[quantity]))] = value
    return element


elements = valid_elements() | valid_elements() | odd_elements | json_values


def _rfc3339(ms: int) -> str:
    from datetime import UTC, datetime, timedelta, timezone

    zone = timezone(timedelta(hours=8))
    return (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
        .astimezone(zone)
        .isoformat(timespec="milliseconds")
    )


def _count_in(payload: bytes) -> int:
    """How many elements the message holds, as the contract counts them (1 for anything not an array)."""
    try:
        doc: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return 1
    return len(doc) if isinstance(doc, list) and doc else 1


def _check_outputs(result: Decoded) -> None:
    for reading in result.readings:
        assert (reading.site_id, reading.meter_id) == ("park-1", "grid-in")
        assert NOW - CTX.max_age_ms <= reading.ts_ms <= NOW + CTX.max_future_ms
        values = [
            reading.energy_kwh,
            reading.power_kw,
            reading.volume_m3,
            reading.heat_gj,
            reading.mass_t,
            reading.count,
        ]
        assert any(v is not None for v in values)
        assert all(v is None or (type(v) is float and math.isfinite(v)) for v in values)
        assert all((getattr(reading, name) or 0.0) >= 0.0 for name in REGISTER_FIELDS)
    reasons = set(Reason)
    for letter in result.dead_letters:
        assert letter.reason in reasons
        assert letter.detail
        assert letter.source == TOPIC


@PROFILE
@given(st.binary(max_size=300))
def test_any_bytes_give_readings_or_dead_letters(payload: bytes) -> None:
    result = decode_message(TOPIC, payload, NOW, CTX)
    assert len(result.readings) + len(result.dead_letters) >= 1
    _check_outputs(result)


@PROFILE
@given(json_values)
def test_any_json_document_is_judged_element_by_element(doc: Any) -> None:
    payload = json.dumps(doc).encode()  # NaN and Infinity literals included
    result = decode_message(TOPIC, payload, NOW, CTX)
    assert len(result.readings) + len(result.dead_letters) == _count_in(payload)
    _check_outputs(result)


@PROFILE
@given(st.lists(elements, min_size=1, max_size=8) | elements)
def test_the_fast_path_and_the_generic_path_agree(doc: Any) -> None:
    payload = json.dumps(doc).encode()
    fast = decode_message(TOPIC, payload, NOW, CTX)
    generic = _decode_generic(TOPIC, payload, NOW, CTX, "park-1", "grid-in")
    assert fast.readings == generic.readings
    assert [d.reason for d in fast.dead_letters] == [d.reason for d in generic.dead_letters]
    assert len(fast.readings) + len(fast.dead_letters) == _count_in(payload)
    _check_outputs(fast)


@PROFILE
@given(st.lists(elements, min_size=2, max_size=8))
def test_a_rejected_batch_element_keeps_its_own_json(doc: list[Any]) -> None:
    result = decode_message(TOPIC, json.dumps(doc).encode(), NOW, CTX)
    for letter in result.dead_letters:
        index = int(letter.detail.split(" ", 2)[1])
        kept = json.loads(letter.payload)
        assert json.dumps(kept, sort_keys=True) == json.dumps(doc[index], sort_keys=True)
