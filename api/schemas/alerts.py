"""Bodies of the alert routes and of the live alert stream (``api.stream``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import Instant, InstantModel, Twin, twin
from peakwatch.store.records import AlertRecord

AlertStateName = Literal["pending", "firing", "resolved"]


class AlertPublic(InstantModel):
    id: int
    fingerprint: str
    rule: str
    site_id: str
    state: str = Field(examples=["firing"])
    severity: str = Field(examples=["critical"])
    summary: str
    value: float | None
    started_at: Instant = Field(description="Start of the first breaching window.")
    started_ms: Twin = twin()
    fired_at: Instant | None = Field(description="When the alert went from pending to firing.")
    fired_ms: Twin | None = twin()
    resolved_at: Instant | None
    resolved_ms: Twin | None = twin()
    updated_at: Instant
    updated_ms: Twin = twin()
    acknowledged_at: Instant | None = Field(description="When an operator took the alert on.")
    acknowledged_ms: Twin | None = twin()
    acknowledged_by: str | None = Field(description="Who acknowledged it.")
    labels: dict[str, str] = Field(
        examples=[{"alertname": "pue_high", "site": "dc-xiangjiang", "severity": "critical"}],
        description="What notification routes and silences match on (docs/alerting.md).",
    )
    resolved_reason: str | None = Field(
        default=None,
        examples=["restated"],
        description="Why it closed when it did not simply recover: `restated` (the windows it was judged on "
        "were recomputed and no longer breach its rule); null otherwise.",
    )

    @classmethod
    def from_record(cls, a: AlertRecord) -> AlertPublic:
        return cls(
            id=a.id,
            fingerprint=a.fingerprint,
            rule=a.rule,
            site_id=a.site_id,
            state=a.state,
            severity=a.severity,
            summary=a.summary,
            value=a.value,
            started_at=a.started_ms,
            fired_at=a.fired_ms,
            resolved_at=a.resolved_ms,
            updated_at=a.updated_ms,
            acknowledged_at=a.acknowledged_ms,
            acknowledged_by=a.acknowledged_by,
            labels=dict(a.labels),
            resolved_reason=a.resolved_reason,
        )
