"""Bodies of the meter routes: meters and whether they report."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from api.schemas.common import Instant, InstantModel, Twin, twin
from peakwatch.domain.models import Carrier, Register, Role
from peakwatch.store.records import MeterStatus

MeterHealth = Literal["ok", "stale", "never"]


class MeterPublic(InstantModel):
    # "register" would shadow BaseModel.register (ABC), hence the trailing underscore and the alias.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    id: str
    site_id: str
    carrier: Carrier
    role: Role
    register_: Register = Field(alias="register", description="cumulative (differenced) or interval.")
    unit: str = Field(examples=["kWh"])
    register_max: float | None
    last_seen: Instant | None = Field(description="Wall-clock time the last reading was received.")
    last_seen_ms: Twin | None = twin()
    last_reading_ts: Instant | None = Field(description="Event time (meter clock) of the last reading.")
    last_reading_ts_ms: Twin | None = twin()
    last_value: float | None = Field(
        description="Last accepted register value, in the canonical unit of the meter's quantity."
    )
    status: MeterHealth = Field(
        description="ok: seen within the last 5 min; stale: not seen for longer; never: no reading yet."
    )

    @classmethod
    def from_status(cls, s: MeterStatus, status: MeterHealth) -> MeterPublic:
        m = s.meter
        return cls(
            id=m.id,
            site_id=m.site_id,
            carrier=m.carrier,
            role=m.role,
            register_=m.register,
            unit=m.unit,
            register_max=m.register_max,
            last_seen=s.last_seen_ms,
            last_reading_ts=s.last_ts_ms,
            last_value=s.last_value,
            status=status,
        )
