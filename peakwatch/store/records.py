"""Read models the store returns to the API (rows that are not domain values)."""

from __future__ import annotations

from typing import Any

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
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    resolved_reason: str | None = None
    """Why it closed when it is not simply recovery (``restated``)."""


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
    """The causes' reasons, comma-separated, in request order (``value_added`` or
    ``factor_revision,value_added``)."""
    detail: str
    replaced_ms: int
    previous: KpiWindow
    causes: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """Each cause: ``{"request_id", "reason", "detail"}`` (``request_id`` null for the live path)."""


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
    restated: int = 0
    """Window revisions that cite this request as a cause (possibly made by another request's pass,
    when both changed the same windows)."""
    factor_id: str | None = None
    """A factor revision's factor: only windows whose use of it changed cite the request."""
    attempts: int = 0
    """Failed attempts so far (the accountant retries a failed request with backoff)."""
    error: str | None = None
    """The last failure, kept after a later success."""
    failed_ms: int | None = None


class SilenceRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    matchers: list[str]
    """Matchers as text (``site="dc-1"``, ``alertname=~"pue_.*"``); every one must match."""
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    created_ms: int
    expired_by: str | None = None
    """Who ended it early (``ends_ms`` is then that moment)."""


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to deliver a message to one channel (the delivery log)."""

    at_ms: int
    receiver: str
    channel: str
    group_key: str
    status: str
    """What the message said: ``firing`` (something in the group fires) or ``resolved``."""
    outcome: str
    """``sent`` or ``failed``."""
    detail: str
    """The channel's answer (``HTTP 200``, ``250 OK``) or why it failed."""
    attempt: int
    escalation: int
    repeat: bool
    alert_ids: list[int]
    site_ids: list[str]
    id: int = 0


class StoredRule(msgspec.Struct, frozen=True, kw_only=True):
    """An alert rule made through the API; ``spec`` is its registry document (``rules:`` entry)."""

    name: str
    spec: dict[str, Any]
    created_by: str
    created_ms: int
    updated_by: str
    updated_ms: int
