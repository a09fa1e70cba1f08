"""The device contract (docs/ingest.md), rule by rule: one MQTT message in, readings and dead letters out."""

from __future__ import annotations

import json

import pytest

from collector.decode import DAY_MS, DecodeContext, Decoded, decode_message
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import Reading

REGISTRY = Registry.from_mapping(
    {
        "sites": [
            {
                "id": "park-1",
                "name": "Park",
                "kind": "park",
                "meters": [
                    {"id": "grid-in", "carrier": "electricity", "role": "grid_import"},
                    {"id": "gas", "carrier": "natural_gas", "role": "boiler", "unit": "m3"},
                ],
            },
        ]
    }
)
CTX = DecodeContext(registry=REGISTRY)
TOPIC = "telemetry/park-1/grid-in"
NOW = 1_714_521_600_000  # 2024-05-01T00:00:00Z, the collector's clock in every test


def decode(payload: bytes | str | object, topic: str = TOPIC, ctx: DecodeContext = CTX) -> Decoded:
    if isinstance(payload, str):
        payload = payload.encode()
    elif not isinstance(payload, bytes):
        payload = json.dumps(payload).encode()
    return decode_message(topic, payload, NOW, ctx)


def one_reading(payload: bytes | str | object) -> Reading:
    result = decode(payload)
    assert result.dead_letters == []
    assert len(result.readings) == 1
    return result.readings[0]


# ------------------------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("field", "value", "canonical", "expected"),
    [
        ("energy_wh", 1500, "energy_kwh", 1.5),
        ("energy_kwh", 12.25, "energy_kwh", 12.25),
        ("energy_mwh", 0.75, "energy_kwh", 750.0),
        ("power_w", 2500, "power_kw", 2.5),
        ("power_kw", 3.5, "power_kw", 3.5),
        ("power_mw", 1.2, "power_kw", 1200.0),
        ("power_kw", -4.0, "power_kw", -4.0),  # export: power may be negative
        ("volume_l", 250, "volume_m3", 0.25),
        ("volume_m3", 10, "volume_m3", 10.0),
        ("heat_mj", 3600, "heat_gj", 3.6),
        ("heat_gj", 1.5, "heat_gj", 1.5),
        ("mass_kg", 500, "mass_t", 0.5),
        ("mass_t", 2, "mass_t", 2.0),
        ("count", 42, "count", 42.0),
        ("energy_kwh", 0, "energy_kwh", 0.0),
    ],
)
def test_units_are_normalised_to_the_canonical_field(
    field: str, value: float, canonical: str, expected: float
) -> None:
    reading = one_reading({"ts": NOW, field: value})
    assert getattr(reading, canonical) == pytest.approx(expected, rel=1e-12)
    assert type(getattr(reading, canonical)) is float
    others = {"energy_kwh", "power_kw", "volume_m3", "heat_gj", "mass_t", "count"} - {canonical}
    assert all(getattr(reading, name) is None for name in others)


def test_a_reading_carries_the_topic_ids_and_several_quantities() -> None:
    reading = one_reading({"ts": NOW, "energy_kwh": 100.5, "power_w": 4200, "energy_mwh": None})
    assert reading == Reading(site_id="park-1", meter_id="grid-in", ts_ms=NOW, energy_kwh=100.5, power_kw=4.2)


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        (NOW, NOW),
        ("2024-05-01T00:00:00Z", NOW),
        ("2024-05-01T08:00:00+08:00", NOW),  # China Standard Time
        ("2024-04-30T19:00:00-05:00", NOW),
        ("2024-05-01T00:00:00.123Z", NOW + 123),
        ("2024-05-01t08:00:00.5+08:00", NOW + 500),  # RFC 3339 allows lower-case t and z
        ("2024-05-01 08:00:00+08:00", NOW),  # ... and a space instead of T
        ("2024-05-01T00:00:00.9994z", NOW + 999),  # sub-millisecond digits are cut, not rounded
        ("2024-04-30T23:55:00Z", NOW - 300_000),
        (NOW + 300_000, NOW + 300_000),  # exactly max_future_ms ahead is still accepted
        (NOW - 400 * DAY_MS, NOW - 400 * DAY_MS),  # exactly max_age_ms old is still accepted
    ],
)
def test_time_stamps_in_epoch_ms_or_rfc3339_with_a_zone(ts: int | str, expected_ms: int) -> None:
    assert one_reading({"ts": ts, "energy_kwh": 1}).ts_ms == expected_ms


def test_a_batch_is_an_array_of_objects() -> None:
    result = decode(
        [
            {"ts": NOW - 2000, "energy_kwh": 1},
            {"ts": NOW - 1000, "energy_kwh": 2},
            {"ts": "2024-05-01T08:00:00+08:00", "energy_kwh": 3},
        ]
    )
    assert [(r.ts_ms, r.energy_kwh) for r in result.readings] == [
        (NOW - 2000, 1.0),
        (NOW - 1000, 2.0),
        (NOW, 3.0),
    ]
    assert result.dead_letters == []


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": 1, "energy_kwh": 5, "ts": 1714521600000, "energy_kwh": 7}',
        # the same object in a batch whose other element forces the generic path
        b'[{"ts": 1, "energy_kwh": 5, "ts": 1714521600000, "energy_kwh": 7},'
        b' {"ts": 1714521600000, "energy_kwh": NaN}]',
    ],
)
def test_duplicate_keys_the_last_one_wins(payload: bytes) -> None:
    reading = decode(payload).readings[0]
    assert (reading.ts_ms, reading.energy_kwh) == (NOW, 7.0)


def test_a_custom_topic_prefix_with_levels() -> None:
    ctx = DecodeContext(registry=REGISTRY, topic_prefix="factory/energy/")
    assert ctx.topic_filter == "factory/energy/+/+"
    assert len(decode({"ts": NOW, "energy_kwh": 1}, "factory/energy/park-1/grid-in", ctx).readings) == 1
    assert decode({"ts": NOW, "energy_kwh": 1}, TOPIC, ctx).dead_letters[0].reason == "bad_topic"


def test_no_prefix() -> None:
    ctx = DecodeContext(registry=REGISTRY, topic_prefix="")
    assert ctx.topic_filter == "+/+"
    assert len(decode({"ts": NOW, "energy_kwh": 1}, "park-1/grid-in", ctx).readings) == 1


# ------------------------------------------------------------------------------------ rejected: whole


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "detail"),
    [
        ("telemetry/park-1", {"ts": NOW, "energy_kwh": 1}, "bad_topic", "telemetry/<site_id>/<meter_id>"),
        ("telemetry/park-1/grid-in/extra", {"ts": NOW, "energy_kwh": 1}, "bad_topic", "does not match"),
        ("other/park-1/grid-in", {"ts": NOW, "energy_kwh": 1}, "bad_topic", "does not match"),
        ("telemetryX/park-1/grid-in", {"ts": NOW, "energy_kwh": 1}, "bad_topic", "does not match"),
        ("telemetry//grid-in", {"ts": NOW, "energy_kwh": 1}, "bad_topic", "does not match"),
        ("telemetry/nowhere/grid-in", {"ts": NOW, "energy_kwh": 1}, "unknown_site", "'nowhere'"),
        ("telemetry/park-1/new-meter", {"ts": NOW, "energy_kwh": 1}, "unknown_meter", "'new-meter'"),
        ("telemetry/park-1/new-meter", b"not even json", "unknown_meter", "add it to the registry"),
        (TOPIC, b"", "malformed_json", "truncated"),
        (TOPIC, b"{", "malformed_json", "truncated"),
        (TOPIC, b'{"ts": 1,}', "malformed_json", "malformed"),
        (TOPIC, b"\xff\xfe{}", "malformed_json", "not valid UTF-8"),
        (TOPIC, b"[" * 10_000 + b"]" * 10_000, "malformed_json", ""),
        (TOPIC, b"5", "not_an_object", "got a number"),
        (TOPIC, b'"hello"', "not_an_object", "got a string"),
        (TOPIC, b"null", "not_an_object", "got null"),
        (TOPIC, b"true", "not_an_object", "got a boolean"),
        (TOPIC, b"[]", "empty_batch", "no readings"),
    ],
)
def test_whole_message_rejections(topic: str, payload: bytes | object, reason: str, detail: str) -> None:
    result = decode(payload, topic)
    assert result.readings == []
    [letter] = result.dead_letters
    assert (letter.reason, letter.source, letter.received_ms) == (reason, topic, NOW)
    assert detail in letter.detail
    assert letter.payload == (payload if isinstance(payload, bytes) else json.dumps(payload).encode())


def test_the_quarantine_keeps_site_and_meter_of_an_unknown_meter() -> None:
    [letter] = decode({"ts": NOW, "energy_kwh": 1}, "telemetry/park-1/new-meter").dead_letters
    assert (letter.reason, letter.site_id, letter.meter_id) == ("unknown_meter", "park-1", "new-meter")


def test_a_bad_topic_has_no_ids() -> None:
    [letter] = decode({"ts": NOW, "energy_kwh": 1}, "telemetry/park-1").dead_letters
    assert (letter.site_id, letter.meter_id) == (None, None)


def test_an_oversized_payload_is_cut_to_its_head() -> None:
    ctx = DecodeContext(registry=REGISTRY, max_payload_bytes=2000)
    payload = json.dumps([{"ts": NOW, "energy_kwh": i} for i in range(100)]).encode()
    [letter] = decode(payload, ctx=ctx).dead_letters
    assert letter.reason == "payload_too_large"
    assert f"payload is {len(payload)} bytes, the limit is 2000" in letter.detail
    assert letter.payload == payload[:1024]
    assert (letter.site_id, letter.meter_id) == ("park-1", "grid-in")
    assert decode(payload[:2000], ctx=ctx).dead_letters[0].reason == "malformed_json"  # at the limit: judged


# ---------------------------------------------------------------------------------- rejected: element

TS_TOO_OLD = NOW - 400 * DAY_MS - 1

ELEMENT_CASES = [
    ({"energy_kwh": 1}, "missing_ts", "no 'ts' field"),
    ({"ts": 1714521600000.0, "energy_kwh": 1}, "bad_ts", "got a number"),
    ({"ts": 1.7145216e12, "energy_kwh": 1}, "bad_ts", "integer epoch milliseconds"),
    ({"ts": True, "energy_kwh": 1}, "bad_ts", "got a boolean"),
    ({"ts": None, "energy_kwh": 1}, "bad_ts", "got null"),
    ({"ts": [NOW], "energy_kwh": 1}, "bad_ts", "got an array"),
    ({"ts": "2024-05-01T00:00:00", "energy_kwh": 1}, "bad_ts", "has no time zone"),
    ({"ts": "2024-05-01T08:00:00.250", "energy_kwh": 1}, "bad_ts", "has no time zone"),
    ({"ts": "2024-05-01", "energy_kwh": 1}, "bad_ts", "not an RFC 3339 date-time"),
    ({"ts": "1714521600000", "energy_kwh": 1}, "bad_ts", "not an RFC 3339 date-time"),
    ({"ts": "yesterday", "energy_kwh": 1}, "bad_ts", "not an RFC 3339 date-time"),
    ({"ts": "2024-05-01T23:59:60Z", "energy_kwh": 1}, "bad_ts", "not an RFC 3339"),  # leap second
    ({"ts": NOW + 300_001, "energy_kwh": 1}, "ts_in_future", "300.001 s ahead"),
    ({"ts": "2024-05-01T09:00:00+08:00", "energy_kwh": 1}, "ts_in_future", "3600.000 s ahead"),
    ({"ts": TS_TOO_OLD, "energy_kwh": 1}, "ts_too_old", "400.0 days old"),
    ({"ts": 1_714_521_600, "energy_kwh": 1}, "ts_too_old", "looks like epoch seconds"),
    ({"ts": NOW}, "no_quantity", "no quantity"),
    ({"ts": NOW, "energy_kwh": None}, "no_quantity", "no quantity"),
    (
        {"ts": NOW, "energy_kwh": 1, "voltage_v": 230},
        "unknown_field",
        "unknown field 'voltage_v'; allowed: ts, count, energy_kwh",
    ),
    ({"ts": NOW, "Energy_kWh": 1}, "unknown_field", "'Energy_kWh' -> 'energy_kwh'"),
    ({"ts": NOW, "a": 1, "b": 2}, "unknown_field", "unknown fields 'a', 'b'"),
    ({"ts": NOW, "energy_kwh": "12.5"}, "wrong_type", "'energy_kwh' must be a number, got a string"),
    ({"ts": NOW, "energy_kwh": True}, "wrong_type", "got a boolean"),
    ({"ts": NOW, "power_kw": [1]}, "wrong_type", "got an array"),
    ({"ts": NOW, "power_kw": {"v": 1}}, "wrong_type", "got an object"),
    (
        {"ts": NOW, "energy_kwh": 1, "energy_wh": 1000},
        "conflicting_fields",
        "'energy_wh' and 'energy_kwh' both give energy_kwh",
    ),
    ({"ts": NOW, "energy_kwh": -0.01}, "negative_register", "cannot be negative"),
    ({"ts": NOW, "energy_wh": -5}, "negative_register", "'energy_wh' = -5.0"),
    ({"ts": NOW, "volume_m3": -1}, "negative_register", "volume_m3"),
    ({"ts": NOW, "heat_mj": -1}, "negative_register", "heat_gj"),
    ({"ts": NOW, "mass_t": -1}, "negative_register", "mass_t"),
    ({"ts": NOW, "count": -1}, "negative_register", "count"),
]


@pytest.mark.parametrize(("element", "reason", "detail"), ELEMENT_CASES)
def test_element_rejections_as_a_single_message(element: dict[str, object], reason: str, detail: str) -> None:
    payload = json.dumps(element).encode()
    result = decode(payload)
    assert result.readings == []
    [letter] = result.dead_letters
    assert letter.reason == reason
    assert detail in letter.detail
    assert not letter.detail.startswith("element")
    assert letter.payload == payload
    assert (letter.site_id, letter.meter_id, letter.source) == ("park-1", "grid-in", TOPIC)


@pytest.mark.parametrize(("element", "reason", "detail"), ELEMENT_CASES)
def test_element_rejections_inside_a_batch_spare_the_other_elements(
    element: dict[str, object], reason: str, detail: str
) -> None:
    batch = [{"ts": NOW - 1000, "energy_kwh": 1}, element, {"ts": NOW, "energy_kwh": 2}]
    result = decode(batch)
    assert [r.energy_kwh for r in result.readings] == [1.0, 2.0]
    [letter] = result.dead_letters
    assert letter.reason == reason
    assert letter.detail.startswith("element 1 of 3: ")
    assert detail in letter.detail
    assert json.loads(letter.payload) == element


@pytest.mark.parametrize(
    ("literal", "detail"),
    [
        (b"NaN", "'energy_kwh' is nan"),
        (b"Infinity", "'energy_kwh' is inf"),
        (b"-Infinity", "'energy_kwh' is -inf"),
        (b"1e400", "'energy_kwh' is inf"),
        (b"-1e400", "'energy_kwh' is -inf"),
        (b"1" + b"0" * 400, "beyond the floating-point range"),
    ],
)
def test_non_finite_numbers_are_rejected_per_element(literal: bytes, detail: str) -> None:
    bad = b'{"ts": %d, "energy_kwh": %s}' % (NOW, literal)
    single = decode(bad)
    assert [(d.reason, d.payload) for d in single.dead_letters] == [("non_finite", bad)]
    assert detail in single.dead_letters[0].detail
    batch = decode(b'[{"ts": %d, "power_kw": 1}, %s]' % (NOW, bad))
    assert [r.power_kw for r in batch.readings] == [1.0]
    assert [d.reason for d in batch.dead_letters] == ["non_finite"]
    assert batch.dead_letters[0].detail.startswith("element 1 of 2: ")


def test_a_value_that_overflows_when_scaled_is_non_finite() -> None:
    [letter] = decode({"ts": NOW, "energy_mwh": 1e306}).dead_letters
    assert letter.reason == "non_finite"
    assert "overflows when converted to energy_kwh" in letter.detail


def test_a_batch_with_many_kinds_of_trouble() -> None:
    payload = (
        b'[{"ts": %d, "energy_kwh": 1}, 7, [1], {"ts": "2024-05-01T00:00:00", "energy_kwh": 1},'
        b' {"ts": %d, "energy_kwh": NaN}, {"ts": %d, "power_kw": -3}]' % (NOW, NOW, NOW)
    )
    result = decode(payload)
    assert [(r.energy_kwh, r.power_kw) for r in result.readings] == [(1.0, None), (None, -3.0)]
    assert [(d.reason, d.detail.split(":")[0], d.payload) for d in result.dead_letters] == [
        ("not_an_object", "element 1 of 6", b"7"),
        ("not_an_object", "element 2 of 6", b"[1]"),
        ("bad_ts", "element 3 of 6", b'{"ts":"2024-05-01T00:00:00","energy_kwh":1}'),
        ("non_finite", "element 4 of 6", b'{"ts":%d,"energy_kwh":NaN}' % NOW),
    ]


@pytest.mark.parametrize(
    ("element", "reason"),
    [
        ({"ts": "local", "energy_kwh": "x", "volts": 1}, "bad_ts"),
        ({"ts": NOW, "energy_kwh": "x", "volts": 1}, "unknown_field"),
        ({"ts": NOW, "energy_kwh": -1, "power_kw": "x"}, "wrong_type"),
        ({"ts": NOW, "energy_kwh": -1, "energy_wh": 1, "power_kw": 1e400}, "non_finite"),
        ({"ts": NOW, "energy_kwh": -1, "energy_wh": 1}, "conflicting_fields"),
        ({"ts": NOW + DAY_MS, "energy_kwh": -1}, "negative_register"),
        ({"ts": NOW + DAY_MS, "energy_kwh": None}, "no_quantity"),
    ],
)
def test_the_first_problem_in_the_order_of_the_docs_table_is_reported(
    element: dict[str, object], reason: str
) -> None:
    [letter] = decode(json.dumps(element).replace("Infinity", "1e400")).dead_letters
    assert letter.reason == reason


def test_max_age_and_future_limits_come_from_the_context() -> None:
    ctx = DecodeContext(registry=REGISTRY, max_future_ms=0, max_age_ms=DAY_MS)
    assert decode({"ts": NOW + 1, "energy_kwh": 1}, ctx=ctx).dead_letters[0].reason == "ts_in_future"
    assert decode({"ts": NOW - DAY_MS - 1, "energy_kwh": 1}, ctx=ctx).dead_letters[0].reason == "ts_too_old"
    assert len(decode({"ts": NOW - DAY_MS, "energy_kwh": 1}, ctx=ctx).readings) == 1


def test_the_context_from_settings() -> None:
    settings = Settings(
        mqtt_topic_prefix="plant", max_future_ms=1000, max_payload_bytes=4096, max_age_ms=DAY_MS
    )
    ctx = DecodeContext.from_settings(settings, REGISTRY)
    limits = (ctx.max_future_ms, ctx.max_payload_bytes, ctx.max_age_ms)
    assert (ctx.topic_prefix, limits) == ("plant", (1000, 4096, DAY_MS))
    assert ctx.registry is REGISTRY
    assert ctx.topic_filter == "plant/+/+"


@pytest.mark.parametrize(
    "payload", [b'"\x80"', b'{"ts": "\xff\xfe", "energy_kwh": 1}', b'[{"ts": 1, "energy_kwh": 1, "\x80": 2}]']
)
def test_invalid_utf8_inside_json_strings_is_malformed_json(payload: bytes) -> None:
    # Found by the property test: msgspec raises UnicodeDecodeError (not DecodeError) for these.
    result = decode(payload)
    assert result.readings == []
    [letter] = result.dead_letters
    assert letter.reason == "malformed_json"
    assert "UTF-8" in letter.detail
    assert letter.payload == payload
