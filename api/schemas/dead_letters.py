"""Bodies of the dead-letter routes: refused input with its reason, and their counts."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.payloads import Encoding, preview_payload
from api.schemas.common import Instant, InstantModel, Twin, twin
from peakwatch.store.records import DeadLetterRecord


class DeadLetterPublic(InstantModel):
    id: int
    received_at: Instant
    received_ms: Twin = twin()
    source: str = Field(examples=["telemetry/dc-xiangjiang/it"])
    reason: str = Field(examples=["malformed_json"])
    detail: str
    site_id: str | None
    meter_id: str | None
    payload: str = Field(description="The payload's first bytes, as text or base64 (see payload_encoding).")
    payload_encoding: Encoding
    payload_size_bytes: int
    payload_truncated: bool

    @classmethod
    def from_record(cls, d: DeadLetterRecord) -> DeadLetterPublic:
        preview = preview_payload(d.payload)
        return cls(
            id=d.id,
            received_at=d.received_ms,
            source=d.source,
            reason=d.reason,
            detail=d.detail,
            site_id=d.site_id,
            meter_id=d.meter_id,
            payload=preview.text,
            payload_encoding=preview.encoding,
            payload_size_bytes=preview.size_bytes,
            payload_truncated=preview.truncated,
        )


class ReasonCountPublic(BaseModel):
    reason: str = Field(examples=["malformed_json"])
    count: int


class SiteCountPublic(BaseModel):
    site_id: str | None = Field(description="`null`: letters whose topic named no site (`bad_topic`).")
    count: int


class SiteReasonCountPublic(BaseModel):
    site_id: str | None
    reason: str
    count: int


class DeadLetterCountsPublic(InstantModel):
    from_: Instant | None = Field(alias="from", description="The range's start, if given.")
    from_ms: Twin | None = twin()
    to: Instant | None
    to_ms: Twin | None = twin()
    total: int
    by_reason: list[ReasonCountPublic] = Field(description="Most first.")
    by_site: list[SiteCountPublic] = Field(description="Most first.")
    groups: list[SiteReasonCountPublic] = Field(description="Every (site, reason) pair, most first.")
