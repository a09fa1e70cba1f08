"""Read models the store returns to the API (rows that are not domain values)."""

from __future__ import annotations

import msgspec

from peakwatch.domain.models import KpiWindow, Meter


class MeterStatus(msgspec.Struct, frozen=True, kw_only=True):
    meter: Meter
    last_ts_ms: int | None
    """Event time of the last accepted reading."""
    last_seen_ms: int | None
    """Wall-clock time it was received."""
    last_value: float | None


class AlertRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    fingerprint: str
    rule: str
    site_id: str
    state: str
    severity: str
    summary: str
    value: float | None
    started_ms: int
    fired_ms: int | None
    resolved_ms: int | None
    updated_ms: int
    acknowledged_ms: int | None = None
    acknowledged_by: str | None = None
    """The user who acknowledged the alert (``None``: not acknowledged)."""


class DeadLetterRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    received_ms: int
    source: str
    reason: str
    detail: str
    payload: bytes
    site_id: str | None
    meter_id: str | None


class KpiRevision(msgspec.Struct, frozen=True, kw_only=True):
    """The value a KPI window had before restatement number ``revision`` (so ``previous.revision ==
    revision - 1``)."""

    revision: int
    reason: str
    detail: str
    replaced_ms: int
    previous: KpiWindow


class RestatementRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Work queued for the processor's accountant (``site_id`` ``None``: every site)."""

    id: int
    site_id: str | None
    meter_id: str | None
    from_ms: int
    to_ms: int
    reason: str
    detail: str
    requested_ms: int
    done_ms: int | None = None
