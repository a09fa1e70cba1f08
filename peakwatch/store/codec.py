"""Timestamps between peakwatch (int epoch ms) and PostgreSQL (``timestamptz``), in one place.

Rather than building a ``datetime`` per value, every pooled connection gets a ``timestamptz`` codec
that speaks int epoch milliseconds on both sides: a Struct's fields can then go to COPY as they are
(``msgspec.structs.astuple``) and rows come back with ``*_ms`` ints, which keeps the write path free
of per-row Python objects. On the wire, ``timestamptz`` is microseconds since 2000-01-01 UTC.
Sub-millisecond precision (e.g. from ``now()``) is floored on the way out.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg
import msgspec

PG_EPOCH_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix epoch milliseconds."""


def encode_timestamptz(ms: int) -> tuple[int]:
    return ((ms - PG_EPOCH_MS) * 1000,)


def decode_timestamptz(value: tuple[int]) -> int:
    return value[0] // 1000 + PG_EPOCH_MS


_JSONB_VERSION: Final = b"\x01"


def encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + msgspec.json.encode(value)


def decode_jsonb(data: bytes) -> Any:
    return msgspec.json.decode(data[1:])


async def register_codecs(conn: asyncpg.Connection[Any]) -> None:
    """Install the ms codec and a msgspec ``jsonb`` codec (dicts in, dicts out, also through binary
    COPY) on a connection (called from the pool's ``init``)."""
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=encode_jsonb, decoder=decode_jsonb, format="binary"
    )
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=encode_timestamptz,
        decoder=decode_timestamptz,
        format="tuple",
    )
