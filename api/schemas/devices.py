"""Bodies of the device routes: broker credentials of devices and collectors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Instant, InstantModel, Twin, twin
from peakwatch.domain.devices import Device, DeviceKind
from peakwatch.domain.devices import topics as device_topics


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind: DeviceKind = DeviceKind.DEVICE
    site_id: str | None = Field(
        default=None, max_length=100, description="Required for a device, absent for a collector."
    )
    meters: list[str] = Field(
        default_factory=list, max_length=1000, description="Empty: every meter of the site."
    )


class DevicePublic(InstantModel):
    id: str
    kind: DeviceKind
    site_id: str | None
    meters: list[str]
    topics: list[str] = Field(description="Topic filters it may publish to (a collector: read).")
    created_at: Instant
    created_ms: Twin = twin()
    rotated_at: Instant | None
    rotated_ms: Twin | None = twin()
    revoked_at: Instant | None
    revoked_ms: Twin | None = twin()

    @classmethod
    def from_device(cls, d: Device, prefix: str) -> DevicePublic:
        return cls(
            id=d.id,
            kind=d.kind,
            site_id=d.site_id,
            meters=list(d.meters),
            topics=device_topics(d, prefix),
            created_at=d.created_ms,
            rotated_at=d.rotated_ms,
            revoked_at=d.revoked_ms,
        )


class DeviceSecretPublic(BaseModel):
    device: DevicePublic
    secret: str = Field(
        description="The MQTT password, shown once; applied at the next `peakwatch devices export`."
    )

    @classmethod
    def of(cls, device: Device, secret: str, prefix: str) -> DeviceSecretPublic:
        return cls(device=DevicePublic.from_device(device, prefix), secret=secret)
