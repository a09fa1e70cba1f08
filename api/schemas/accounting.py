"""Bodies of the accounting routes: meter replacements, green instruments, value added, and the
restatements they queue (the factor routes queue them too)."""

from __future__ import annotations

from datetime import date
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas.common import Instant, InstantIn, InstantModel, Twin, month_text, parse_month, twin
from peakwatch.domain.models import MeterReplacement
from peakwatch.store.inputs import GreenInstrument, InstrumentKind, ValueAdded
from peakwatch.store.records import RestatementRequest

KWH_PER_CERTIFICATE: Final = 1000.0
"""One green electricity certificate (GEC, 绿证) stands for 1 MWh."""


class RestatementPublic(InstantModel):
    """A recomputation queued for the processor's accountant."""

    id: int
    site_id: str | None = Field(description="null: every site (a factor revision).")
    meter_id: str | None = Field(
        description="Set when the meter's intervals are re-derived from its readings."
    )
    from_: Instant = Field(alias="from")
    from_ms: Twin = twin()
    to: Instant
    to_ms: Twin = twin()
    reason: str = Field(examples=["meter_replacement"])
    detail: str
    requested_at: Instant
    requested_ms: Twin = twin()
    done_at: Instant | None
    done_ms: Twin | None = twin()
    status: Literal["pending", "failing", "done"] = Field(
        description="failing: pending after a failed attempt (`error`); the processor retries it with "
        "backoff and works the other requests meanwhile."
    )
    attempts: int = Field(0, description="Failed attempts so far.")
    error: str | None = Field(None, description="The last failure (kept after a later success).")
    restated: int = Field(
        description="Window revisions that cite this request as a cause (0: it changed nothing, e.g. a "
        "factor no window used). Another request's recomputation may have applied it first; the "
        "revisions still name it."
    )

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    @classmethod
    def from_request(cls, r: RestatementRequest) -> RestatementPublic:
        return cls(
            id=r.id,
            site_id=r.site_id,
            meter_id=r.meter_id,
            from_=r.from_ms,
            to=r.to_ms,
            reason=r.reason,
            detail=r.detail,
            requested_at=r.requested_ms,
            done_at=r.done_ms,
            status="done" if r.done_ms is not None else "pending" if r.error is None else "failing",
            attempts=r.attempts,
            error=r.error,
            restated=r.restated,
        )


class ReplacementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts: InstantIn = Field(
        description="When the meter was swapped: RFC 3339 with an offset or epoch milliseconds.",
        examples=["2025-03-01T10:30:00+08:00"],
    )
    old_final: float = Field(
        ge=0,
        le=1e15,
        allow_inf_nan=False,
        description="Last register value of the old meter, in the meter's unit.",
    )
    new_initial: float = Field(
        ge=0,
        le=1e15,
        allow_inf_nan=False,
        description="First register value of the new meter, in the meter's unit.",
    )
    note: str = Field(default="", max_length=500)

    @property
    def ts_ms(self) -> int:
        assert isinstance(self.ts, int)  # InstantIn parsed it
        return self.ts


class ReplacementPublic(InstantModel):
    site_id: str
    meter_id: str
    ts: Instant
    ts_ms: Twin = twin()
    old_final: float = Field(description="In the canonical unit (`unit`).")
    new_initial: float = Field(description="In the canonical unit (`unit`).")
    unit: str = Field(examples=["kWh"], description="Canonical unit of the meter's quantity.")
    note: str

    @classmethod
    def from_replacement(cls, r: MeterReplacement, unit: str) -> ReplacementPublic:
        return cls(
            site_id=r.site_id,
            meter_id=r.meter_id,
            ts=r.ts_ms,
            old_final=r.old_final,
            new_initial=r.new_initial,
            unit=unit,
            note=r.note,
        )


class ReplacementCreatedPublic(BaseModel):
    replacement: ReplacementPublic
    restatement: RestatementPublic


class GreenInstrumentIn(BaseModel):
    """Either ``kwh`` or ``certificates`` (1 certificate = 1,000 kWh; kind ``certificate`` only)."""

    model_config = ConfigDict(extra="forbid")

    month: str = Field(examples=["2025-03"], description="Local calendar month, YYYY-MM.")
    kind: InstrumentKind = Field(
        description="certificate: green electricity certificates (GEC); contract: a "
        "green-power purchase (绿电交易)."
    )
    kwh: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    certificates: int | None = Field(
        default=None, ge=0, le=1_000_000_000, description="Number of GECs (1 GEC = 1,000 kWh)."
    )
    reference: str = Field(default="", max_length=200, description="Certificate batch or contract number.")

    @field_validator("month")
    @classmethod
    def _check_month(cls, value: str) -> str:
        parse_month(value)
        return value.strip()

    @property
    def month_date(self) -> date:
        return parse_month(self.month)


class GreenInstrumentPublic(InstantModel):
    id: int
    site_id: str
    month: str = Field(examples=["2025-03"])
    kind: InstrumentKind
    kwh: float
    reference: str
    recorded_at: Instant
    recorded_ms: Twin = twin()

    @classmethod
    def from_instrument(cls, g: GreenInstrument) -> GreenInstrumentPublic:
        return cls(
            id=g.id,
            site_id=g.site_id,
            month=month_text(g.month),
            kind=g.kind,
            kwh=g.kwh,
            reference=g.reference,
            recorded_at=g.recorded_ms,
        )


class GreenInstrumentCreatedPublic(BaseModel):
    instrument: GreenInstrumentPublic
    restatement: RestatementPublic


class ValueAddedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value_cny: float = Field(ge=0, le=1e15, allow_inf_nan=False, description="Value added of the month, CNY.")


class ValueAddedPublic(InstantModel):
    site_id: str
    month: str = Field(examples=["2025-03"])
    value_cny: float
    value_added_10k_cny: float = Field(description="value_cny ÷ 10,000 (the unit of energy intensity).")
    recorded_at: Instant
    recorded_ms: Twin = twin()

    @classmethod
    def from_value(cls, v: ValueAdded) -> ValueAddedPublic:
        return cls(
            site_id=v.site_id,
            month=month_text(v.month),
            value_cny=v.value_cny,
            value_added_10k_cny=v.value_cny / 10_000,
            recorded_at=v.recorded_ms,
        )


class ValueAddedWrittenPublic(BaseModel):
    value_added: ValueAddedPublic
    restatement: RestatementPublic
