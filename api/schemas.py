"""Response bodies (pydantic v2, ``XPublic``). Built from store and domain values by ``from_*``
classmethods so handlers stay one-liners and the wire format is defined in one place.

Every instant is given twice: RFC 3339 UTC (``window_start``) for people and ``*_ms`` epoch
milliseconds for scripts, which then need no date parsing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.health import ComponentStatus
from api.payloads import Encoding, preview_payload
from api.timestamps import datetime_from_ms
from peakwatch.domain.factors import Factor
from peakwatch.domain.models import Carrier, KpiWindow, Register, Role, Site, SiteKind
from peakwatch.store.records import AlertRecord, DeadLetterRecord, MeterStatus

MeterHealth = Literal["ok", "stale", "never"]
AlertStateName = Literal["pending", "firing", "resolved"]


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime_from_ms(ms)


def interim_note(duration_ms: int) -> str:
    """Why a short-window KPI must not be quoted as the site's PUE (ISO/IEC 30134-2 wants 12 months)."""
    seconds = duration_ms / 1000
    span = f"{seconds:g} s" if seconds < 3600 else f"{seconds / 3600:g} h"
    return (
        f"Interim value over a {span} window. ISO/IEC 30134-2 defines PUE over 12 months; values over "
        "shorter periods are interim and must be labelled as such when reported."
    )


# ------------------------------------------------------------------------------------------ errors


class ErrorPublic(BaseModel):
    detail: str = Field(examples=["unknown site 'x'"])


# ------------------------------------------------------------------------------------------ health


class ComponentPublic(BaseModel):
    name: str = Field(examples=["database"])
    ok: bool
    detail: str = Field(examples=["ping 1.2 ms"])

    @classmethod
    def from_status(cls, status: ComponentStatus) -> ComponentPublic:
        return cls(name=status.name, ok=status.ok, detail=status.detail)


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "down"] = Field(
        description="ok: everything answers; degraded: the database answers but a component does not; "
        "down: the database does not answer (HTTP 503)."
    )
    database: ComponentPublic
    components: list[ComponentPublic] = Field(description="As reported by the process's health probe.")


class ReadyPublic(BaseModel):
    ready: bool
    detail: str


# ------------------------------------------------------------------------------------------ sites


class GridFactorPublic(BaseModel):
    """The location-based grid emission factor the site's carbon KPIs use, with its provenance."""

    id: str = Field(examples=["grid.cn.hunan.2023"])
    value: float = Field(examples=[0.4976])
    unit: str = Field(examples=["kgCO2/kWh"])
    source: str
    data_year: int | None
    published: str | None
    status: Literal["verified", "single_source", "unverified"]

    @classmethod
    def from_factor(cls, factor: Factor) -> GridFactorPublic:
        return cls.model_validate(factor, from_attributes=True)


class SitePublic(BaseModel):
    id: str = Field(examples=["dc-xiangjiang"])
    name: str
    kind: SiteKind
    timezone: str = Field(examples=["Asia/Shanghai"])
    grid_factor_id: str = Field(examples=["grid.cn.hunan.2023"])

    @classmethod
    def from_site(cls, site: Site) -> SitePublic:
        return cls(
            id=site.id,
            name=site.name,
            kind=site.kind,
            timezone=site.timezone,
            grid_factor_id=site.grid_factor,
        )


class MeterCountsPublic(BaseModel):
    ok: int
    stale: int
    never: int


class SiteDetailPublic(SitePublic):
    meters_count: int
    meters_by_status: MeterCountsPublic
    grid_factor: GridFactorPublic | None = Field(
        description="null when the factor id is not in the running registry's factor library "
        "(the site was stored by an older configuration)."
    )


# ------------------------------------------------------------------------------------------ KPIs


class KpiWindowPublic(BaseModel):
    """KPIs of one site over the closed event-time window ``[window_start, window_end)``.

    A ratio is null when its denominator is zero or not metered (never 0 or infinity); PUE is null
    for parks.
    """

    site_id: str
    window_start: datetime
    window_end: datetime
    window_start_ms: int
    window_end_ms: int
    pue: float | None = Field(description="facility kWh / IT kWh (data centres only).")
    electrification_rate: float | None = Field(description="electricity kgce / total final energy kgce.")
    carbon_intensity_kg_per_kwh: float | None = Field(
        description="Location-based: purchased electricity x grid factor / electricity consumed."
    )
    emissions_kg: float = Field(description="kgCO2: purchased electricity + fuels + purchased heat/steam.")
    electricity_emissions_kg: float
    green_power_share: float | None = Field(description="On-site renewables consumed / electricity consumed.")
    electricity_kwh: float
    facility_kwh: float | None
    it_kwh: float | None
    renewable_generation_kwh: float
    renewable_consumed_kwh: float
    grid_import_kwh: float
    grid_export_kwh: float
    electricity_kgce: float
    total_kgce: float
    completeness: float = Field(ge=0, le=1, description="Share of the site's meters that covered the window.")
    flags: list[str] = Field(description="Meter events inside the window (reset, rollover, late ...).")
    interim: bool
    interim_note: str | None = Field(description="Why the values are interim; null when they are not.")

    @classmethod
    def from_window(cls, w: KpiWindow) -> KpiWindowPublic:
        return cls(
            site_id=w.site_id,
            window_start=datetime_from_ms(w.start_ms),
            window_end=datetime_from_ms(w.end_ms),
            window_start_ms=w.start_ms,
            window_end_ms=w.end_ms,
            pue=w.pue,
            electrification_rate=w.electrification_rate,
            carbon_intensity_kg_per_kwh=w.carbon_intensity_kg_per_kwh,
            emissions_kg=w.emissions_kg,
            electricity_emissions_kg=w.electricity_emissions_kg,
            green_power_share=w.green_power_share,
            electricity_kwh=w.electricity_kwh,
            facility_kwh=w.facility_kwh,
            it_kwh=w.it_kwh,
            renewable_generation_kwh=w.renewable_generation_kwh,
            renewable_consumed_kwh=w.renewable_consumed_kwh,
            grid_import_kwh=w.grid_import_kwh,
            grid_export_kwh=w.grid_export_kwh,
            electricity_kgce=w.electricity_kgce,
            total_kgce=w.total_kgce,
            completeness=w.completeness,
            flags=list(w.flags),
            interim=w.interim,
            interim_note=interim_note(w.end_ms - w.start_ms) if w.interim else None,
        )


# ------------------------------------------------------------------------------------------ meters


class MeterPublic(BaseModel):
    # "register" would shadow BaseModel.register (ABC), hence the trailing underscore and the alias.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    id: str
    site_id: str
    carrier: Carrier
    role: Role
    register_: Register = Field(alias="register", description="cumulative (differenced) or interval.")
    unit: str = Field(examples=["kWh"])
    register_max: float | None
    last_seen: datetime | None = Field(description="Wall-clock time the last reading was received.")
    last_seen_ms: int | None
    last_reading_ts: datetime | None = Field(description="Event time (meter clock) of the last reading.")
    last_reading_ts_ms: int | None
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
            last_seen=_dt(s.last_seen_ms),
            last_seen_ms=s.last_seen_ms,
            last_reading_ts=_dt(s.last_ts_ms),
            last_reading_ts_ms=s.last_ts_ms,
            last_value=s.last_value,
            status=status,
        )


# ------------------------------------------------------------------------------------------ alerts


class AlertPublic(BaseModel):
    id: int
    fingerprint: str
    rule: str
    site_id: str
    state: str = Field(examples=["firing"])
    severity: str = Field(examples=["critical"])
    summary: str
    value: float | None
    started_at: datetime = Field(description="Start of the first breaching window.")
    started_ms: int
    fired_at: datetime | None = Field(description="When the alert went from pending to firing.")
    fired_ms: int | None
    resolved_at: datetime | None
    resolved_ms: int | None
    updated_at: datetime
    updated_ms: int

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
            started_at=datetime_from_ms(a.started_ms),
            started_ms=a.started_ms,
            fired_at=_dt(a.fired_ms),
            fired_ms=a.fired_ms,
            resolved_at=_dt(a.resolved_ms),
            resolved_ms=a.resolved_ms,
            updated_at=datetime_from_ms(a.updated_ms),
            updated_ms=a.updated_ms,
        )


# ------------------------------------------------------------------------------------------ dead letters


class DeadLetterPublic(BaseModel):
    id: int
    received_at: datetime
    received_ms: int
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
            received_at=datetime_from_ms(d.received_ms),
            received_ms=d.received_ms,
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
