"""Dead-letter reason codes: the device-facing vocabulary of docs/ingest.md, shared by every stage
that dead-letters input (collector, processor).

The codes are stable strings (stored with every dead letter, counted in metrics, shown by the API),
so a device vendor can grep for them; renaming one is a contract change. Every code is listed in the
reason table of docs/ingest.md (a unit test checks that the table stays complete).
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # whole message (one dead letter per MQTT message, payload kept as received)
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_SITE = "unknown_site"
    UNKNOWN_METER = "unknown_meter"
    MALFORMED_JSON = "malformed_json"
    EMPTY_BATCH = "empty_batch"
    # one reading (one dead letter per bad object; in a batch the others still pass)
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TS = "missing_ts"
    BAD_TS = "bad_ts"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    NO_QUANTITY = "no_quantity"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    CONFLICTING_FIELDS = "conflicting_fields"
    NEGATIVE_REGISTER = "negative_register"
    OUT_OF_RANGE = "out_of_range"
    # the collector itself failed on this message (a bug): kept so the input is not lost
    INTERNAL_ERROR = "internal_error"
    # found by the processor (a reading the collector accepted but that cannot be counted)
    NEGATIVE_INTERVAL_AMOUNT = "negative_interval_amount"
