"""Bodies of the delivery log: every attempt of the notifier to deliver a message."""

from __future__ import annotations

from pydantic import Field

from api.schemas.common import Instant, InstantModel, Twin, twin
from peakwatch.store.records import Delivery


class DeliveryPublic(InstantModel):
    """One attempt to deliver a notification to one channel."""

    id: int
    at: Instant
    at_ms: Twin = twin()
    receiver: str = Field(examples=["oncall"])
    channel: str = Field(description="The receiver's channel (`oncall/wecom`).", examples=["oncall/wecom"])
    group_key: str = Field(description="The alert group the message was about.")
    status: str = Field(
        examples=["firing"],
        description="What the message said: `firing` (something in the group fires) or `resolved`.",
    )
    outcome: str = Field(examples=["sent"], description="`sent` or `failed`.")
    detail: str = Field(description="The channel's answer (`HTTP 200`, `250 OK`) or why it failed.")
    attempt: int = Field(description="1 for the first try of this message; +1 per retry.")
    escalation: int = Field(description="0: the route's receiver; n: the n-th escalation level.")
    repeat: bool = Field(description="A reminder of alerts still firing, not a change.")
    alert_ids: list[int]
    site_ids: list[str]

    @classmethod
    def from_delivery(cls, d: Delivery) -> DeliveryPublic:
        return cls(
            id=d.id,
            at=d.at_ms,
            receiver=d.receiver,
            channel=d.channel,
            group_key=d.group_key,
            status=d.status,
            outcome=d.outcome,
            detail=d.detail,
            attempt=d.attempt,
            escalation=d.escalation,
            repeat=d.repeat,
            alert_ids=list(d.alert_ids),
            site_ids=list(d.site_ids),
        )
