"""Request and response bodies (pydantic v2: ``XIn`` in, ``XPublic`` out). Responses are built from
store and domain values by ``from_*`` classmethods so handlers stay one-liners and the wire format is
defined in one place.

Every instant is given twice: RFC 3339 UTC (``window_start``) for people and ``*_ms`` epoch
milliseconds for scripts, which then need no date parsing. Months are ``"YYYY-MM"`` in the site's
time zone.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.health import ComponentStatus
from api.payloads import Encoding, preview_payload
from peakwatch.domain.access import AccessRole, AuditEntry, Credential, CredentialKind, Principal, User
from peakwatch.domain.components import encode_components
from peakwatch.domain.devices import Device, DeviceKind
from peakwatch.domain.devices import topics as device_topics
from peakwatch.domain.factors import Factor, FactorSet, Status
from peakwatch.domain.instants import parse_instant, to_datetime
from peakwatch.domain.models import (
    Carrier,
    KpiWindow,
    MeterReplacement,
    Register,
    Role,
    Site,
    SiteKind,
)
from peakwatch.domain.periods import Period
from peakwatch.domain.routing import Matcher
from peakwatch.domain.rules import StalenessRule, ThresholdRule
from peakwatch.domain.targets import Target, TargetKind, TargetProgress, TargetStatus
from peakwatch.redaction import redact_text
from peakwatch.store.inputs import GreenInstrument, InstrumentKind, ValueAdded
from peakwatch.store.records import (
    AlertRecord,
    DeadLetterRecord,
    Delivery,
    KpiRevision,
    MeterStatus,
    RestatementRequest,
    SilenceRecord,
    StoredRule,
)

MeterHealth = Literal["ok", "stale", "never"]
AlertStateName = Literal["pending", "firing", "resolved"]
SilenceState = Literal["active", "pending", "expired"]

KWH_PER_CERTIFICATE: Final = 1000.0
"""One green electricity certificate (GEC, 绿证) stands for 1 MWh."""

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])\Z")


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else to_datetime(ms)


def parse_month(text: str) -> date:
    """``"2025-03"`` -> 2025-03-01; ``ValueError`` with the expected form otherwise."""
    match = _MONTH.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a month: use YYYY-MM, e.g. 2025-03")
    year = int(match.group(1))
    if not 1973 <= year <= 2099:
        raise ValueError(f"{text!r} is outside 1973..2099, the range peakwatch stores")
    return date(year, int(match.group(2)), 1)


def month_text(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


PERIOD_LABELS: Final[dict[Period, str]] = {
    Period.MINUTE: "1-minute",
    Period.QUARTER_HOUR: "15-minute",
    Period.HOUR: "1-hour",
    Period.DAY: "1-day",
    Period.MONTH: "calendar-month",
    Period.YEAR: "12-month",
}


def interim_note(period: Period) -> str:
    """Why a KPI over less than 12 months must not be quoted as the site's PUE (ISO/IEC 30134-2)."""
    return (
        f"Interim value over a {PERIOD_LABELS[period]} window ({period.value}). ISO/IEC 30134-2 defines PUE "
        "over 12 months; values over shorter periods are interim and must be labelled as such when reported."
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
        """``/healthz`` answers without credentials: a detail quoting an error (a task's crash, a
        channel's URL with its token) is redacted here, at the one door every component passes."""
        return cls(name=status.name, ok=status.ok, detail=redact_text(status.detail))


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="ok: everything answers; degraded: the database or another component does not "
        "(readings are still accepted into the spool while the database is away; `/readyz` says whether "
        "data can be served)."
    )
    database: ComponentPublic
    components: list[ComponentPublic] = Field(description="As reported by the process's health probe.")


class ReadyPublic(BaseModel):
    ready: bool
    detail: str


# ------------------------------------------------------------------------------------------ factors


class FactorPublic(BaseModel):
    """One version of an emission or conversion factor, with its provenance."""

    id: str = Field(examples=["grid.cn.hunan.2023"])
    version: int = Field(description="1 for the first value of this id; +1 for each revision.")
    ref: str = Field(description="`id@version`, as recorded in `factors_used` of KPI windows.")
    value: float = Field(examples=[0.4976])
    unit: str = Field(examples=["kgCO2/kWh"])
    source: str
    data_year: int | None
    published: str | None
    status: Status = Field(
        description="verified: official text or two agreeing copies; single_source; unverified."
    )
    recorded_at: datetime | None = Field(
        description="When this version was added; null for shipped defaults."
    )
    recorded_ms: int | None

    @classmethod
    def from_factor(cls, f: Factor) -> FactorPublic:
        return cls(
            id=f.id,
            version=f.version,
            ref=f.ref,
            value=f.value,
            unit=f.unit,
            source=f.source,
            data_year=f.data_year,
            published=f.published,
            status=f.status,
            recorded_at=_dt(f.recorded_ms),
            recorded_ms=f.recorded_ms,
        )


class FactorHistoryPublic(BaseModel):
    id: str
    current: FactorPublic
    versions: list[FactorPublic] = Field(description="Every version, oldest first.")
    factor_sets: list[str] = Field(description="Factor sets that read this factor in some slot.")


class FactorIn(BaseModel):
    """A new factor, or a new version of an existing one (same unit: the KPIs multiply by it)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        examples=["grid.cn.hunan.2024"],
        description="Letters, digits, `_`, `.`, `-`; at most 100 characters.",
    )
    value: float = Field(ge=0, allow_inf_nan=False, examples=[0.4812])
    unit: str = Field(min_length=1, max_length=50, examples=["kgCO2/kWh"])
    source: str = Field(min_length=1, max_length=500, description="Where the value comes from.")
    data_year: int | None = Field(default=None, ge=1900, le=2100)
    published: str | None = Field(default=None, max_length=20, description="Publication date (ISO 8601).")
    status: Status = "unverified"


class FactorSetPublic(BaseModel):
    name: str = Field(examples=["default"])
    description: str
    slots: dict[str, str] = Field(
        description="Every slot the KPIs read -> the factor id this set fills it with."
    )

    @classmethod
    def from_set(cls, s: FactorSet, slot_names: list[str]) -> FactorSetPublic:
        return cls(name=s.name, description=s.description, slots={k: s.factor_id(k) for k in slot_names})


# ------------------------------------------------------------------------------------------ sites


class SitePublic(BaseModel):
    id: str = Field(examples=["dc-xiangjiang"])
    name: str
    kind: SiteKind
    timezone: str = Field(examples=["Asia/Shanghai"])
    factor_set: str = Field(examples=["default"], description="The factor set the site's KPIs use.")
    grid_factor_id: str | None = Field(
        examples=["grid.cn.hunan.2023"],
        description="Location-based grid factor: the site's own choice, else its factor set's `grid` slot; "
        "null when the running configuration does not know the site's factor set.",
    )
    pue_category: str | None = Field(
        examples=["category 1"],
        description="Measurement category stated with every published PUE; null: not stated in the "
        "registry (no category is assumed).",
    )
    labels: dict[str, str] = Field(
        examples=[{"class": "new-large"}], description="Registry labels; alert rules select sites by them."
    )

    @classmethod
    def from_site(cls, site: Site, grid_factor_id: str | None) -> SitePublic:
        return cls(
            id=site.id,
            name=site.name,
            kind=site.kind,
            timezone=site.timezone,
            factor_set=site.factor_set,
            grid_factor_id=grid_factor_id,
            pue_category=site.pue_category,
            labels=dict(site.labels),
        )


class MeterCountsPublic(BaseModel):
    ok: int
    stale: int
    never: int


class SiteDetailPublic(SitePublic):
    meters_count: int
    meters_by_status: MeterCountsPublic
    grid_factor: FactorPublic | None = Field(
        description="The current version of the grid factor; null when the factor id is not in the running "
        "factor library (the site was stored by an older configuration)."
    )


# ------------------------------------------------------------------------------------------ KPIs


class KpiWindowPublic(BaseModel):
    """KPIs of one site over the window ``[window_start, window_end)`` of a period: closed (stored), or
    for a period in progress ``status: open``, computed from the minutes closed so far.

    Every value is computed from the window's additive `components` (a longer window's components are
    the sums of its minutes'), so ratios are never averaged. A ratio is null when its denominator is
    zero or not metered (never 0 or infinity); data-centre KPIs are null for parks. Market-based values
    and intensities per value added need monthly inputs: null for windows shorter than a month.
    """

    site_id: str
    period: Period = Field(description="1m, 15m, 1h, 1d (local day), 1mo (local calendar month), 12mo.")
    window_start: datetime
    window_end: datetime
    window_start_ms: int
    window_end_ms: int
    # --- energies
    electricity_kwh: float = Field(description="Electricity consumed on site, kWh (energy balance).")
    facility_kwh: float | None = Field(description="Sum of facility_total meters, kWh; null if none.")
    it_kwh: float | None = Field(description="Sum of it_load meters, kWh; null if none.")
    renewable_generation_kwh: float = Field(description="PV + wind generation, kWh.")
    renewable_consumed_kwh: float = Field(
        description="min(generation − export, electricity consumed), not below 0, kWh."
    )
    grid_import_kwh: float
    grid_export_kwh: float
    electricity_kgce: float = Field(description="electricity_kwh × 0.1229 kgce/kWh (equivalent value), kgce.")
    electricity_kgce_coal: float = Field(
        description="electricity_kwh × the coal-equivalent factor (发电煤耗, e.g. 0.3024 kgce/kWh), kgce."
    )
    total_kgce: float = Field(
        description="Final energy: electricity (equivalent value) + fuels and heat, kgce."
    )
    # --- PUE family
    pue: float | None = Field(
        description="(facility kWh + fuels used directly, as kWh) ÷ IT kWh; data centres only. "
        "Interim unless period is 12mo; quote with pue_category."
    )
    pue_category: str | None = Field(
        description="The site's PUE measurement category (ISO/IEC 30134-2); null for parks and for a "
        "data centre whose registry entry does not state one."
    )
    ppue: dict[str, float | None] = Field(
        description="Partial PUE per zone: zone electricity (IT, cooling, lighting, losses) ÷ zone IT kWh."
    )
    gb40879_grade: str | None = Field(
        description="GB 40879-2021 grade 1/2/3 of the electric energy ratio facility ÷ IT, or over_limit "
        "(thresholds configurable: the standard's table is unverified). Data centres only."
    )
    cue: float | None = Field(description="emissions_kg ÷ it_kwh, kgCO2/kWh (ISO/IEC 30134-8).")
    wue_l_per_kwh: float | None = Field(description="Water m3 × 1000 ÷ it_kwh, L/kWh (ISO/IEC 30134-9).")
    erf: float | None = Field(
        description="Energy reused outside the site ÷ total energy (ISO/IEC 30134-6), 0..1."
    )
    ref: float | None = Field(
        description="(Renewables consumed + certificates/contracts applied) ÷ total energy, capped at 1 "
        "(ISO/IEC 30134-3)."
    )
    # --- electrification
    electrification_rate: float | None = Field(
        description="electricity_kgce ÷ (electricity_kgce + fuels kgce), electricity at the equivalent value."
    )
    electrification_rate_coal: float | None = Field(
        description="The same with electricity at the coal-equivalent value (发电煤耗)."
    )
    # --- carbon, location-based
    electricity_emissions_kg: float = Field(description="Purchased electricity × grid factor, kgCO2.")
    emissions_kg: float = Field(
        description="Location-based: electricity + fuels + purchased heat/steam, kgCO2."
    )
    carbon_intensity_kg_per_kwh: float | None = Field(
        description="Location-based: electricity_emissions_kg ÷ electricity_kwh, kgCO2/kWh."
    )
    green_power_share: float | None = Field(description="renewable_consumed_kwh ÷ electricity_kwh, 0..1.")
    # --- carbon, market-based (monthly inputs)
    green_certificates_kwh: float | None = Field(
        description="Green certificates and contracts applied to the window, kWh (months and longer)."
    )
    electricity_emissions_market_kg: float | None = Field(
        description="(Purchased − certificates, not below 0) × residual grid factor, kgCO2."
    )
    emissions_market_kg: float | None = Field(description="Market-based: electricity + fuels, kgCO2.")
    carbon_intensity_market_kg_per_kwh: float | None = Field(
        description="electricity_emissions_market_kg ÷ electricity_kwh, kgCO2/kWh."
    )
    green_power_share_market: float | None = Field(
        description="(Renewables consumed + certificates applied) ÷ electricity_kwh, 0..1."
    )
    # --- demand and intensity
    max_demand_kw: float | None = Field(
        description="Largest 15-minute average demand (grid import, else consumption) in the window, kW; "
        "null for 1m windows."
    )
    output: float | None = Field(description="Production output (production counters), the counter's unit.")
    energy_intensity_kgce_per_unit: float | None = Field(description="total_kgce ÷ output, kgce per unit.")
    value_added_10k_cny: float | None = Field(description="Value added entered for the months, 10,000 CNY.")
    energy_intensity_kgce_per_10k_cny: float | None = Field(
        description="total_kgce ÷ value_added_10k_cny, kgce per 10,000 CNY."
    )
    # --- quality and provenance
    completeness: float = Field(
        ge=0,
        le=1,
        description="Share of the expected meter-minutes (meters × every minute of the whole window) "
        "present, 0..1. An open window counts the minutes still to come as expected, so its completeness "
        "is at most `covered` (equal when every meter reported every closed minute) and is what the "
        "window closes with if nothing more arrives.",
    )
    status: Literal["open", "closed"] = Field(
        "closed",
        description="closed: stored once every minute of the window closed (changes only by restatement, "
        "with a revision). open: the period is in progress (or has just ended and is not stored yet); "
        "computed at request time from the closed minutes, not stored, no revisions. Never open for 1m.",
    )
    elapsed: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of the window's duration elapsed on the server's clock at the request; 1 when "
        "closed.",
    )
    covered: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of the window's duration before the site's closed frontier (the end of its "
        "newest closed 1-minute window): the part the values sum. 1 when closed. Below `elapsed` by the "
        "allowed lateness, or more while the site is silent.",
    )
    estimated: bool = Field(description="Some input was estimated (energy integrated from power).")
    flags: list[str] = Field(description="Meter events inside the window (reset, rollover, late ...).")
    revision: int = Field(description="0 first computation; +1 per restatement (see the revisions route).")
    factors_used: dict[str, str] = Field(
        description="Factor slot -> `id@version` the values were computed with."
    )
    components: dict[str, float] = Field(
        description="The additive energies and counts every KPI above was computed from."
    )
    interim: bool
    interim_note: str | None = Field(description="Why the values are interim; null when they are not.")

    @classmethod
    def from_window(
        cls, w: KpiWindow, site: Site, *, open_at: tuple[int, int] | None = None
    ) -> KpiWindowPublic:
        """``open_at``: ``(closed frontier, now)`` in epoch ms for a window of a period in progress."""
        period = Period(w.period)
        progress: dict[str, Any] = {}
        if open_at is not None:
            length = w.end_ms - w.start_ms

            def share(until_ms: int) -> float:
                return min(max((until_ms - w.start_ms) / length, 0.0), 1.0)

            progress = {"status": "open", "covered": share(open_at[0]), "elapsed": share(open_at[1])}
        return cls(
            **progress,
            site_id=w.site_id,
            period=period,
            window_start=to_datetime(w.start_ms),
            window_end=to_datetime(w.end_ms),
            window_start_ms=w.start_ms,
            window_end_ms=w.end_ms,
            electricity_kwh=w.electricity_kwh,
            facility_kwh=w.facility_kwh,
            it_kwh=w.it_kwh,
            renewable_generation_kwh=w.renewable_generation_kwh,
            renewable_consumed_kwh=w.renewable_consumed_kwh,
            grid_import_kwh=w.grid_import_kwh,
            grid_export_kwh=w.grid_export_kwh,
            electricity_kgce=w.electricity_kgce,
            electricity_kgce_coal=w.electricity_kgce_coal,
            total_kgce=w.total_kgce,
            pue=w.pue,
            pue_category=site.pue_category if site.kind is SiteKind.DATA_CENTRE else None,
            ppue=dict(w.ppue),
            gb40879_grade=w.gb40879_grade,
            cue=w.cue,
            wue_l_per_kwh=w.wue_l_per_kwh,
            erf=w.erf,
            ref=w.ref,
            electrification_rate=w.electrification_rate,
            electrification_rate_coal=w.electrification_rate_coal,
            electricity_emissions_kg=w.electricity_emissions_kg,
            emissions_kg=w.emissions_kg,
            carbon_intensity_kg_per_kwh=w.carbon_intensity_kg_per_kwh,
            green_power_share=w.green_power_share,
            green_certificates_kwh=w.green_certificates_kwh,
            electricity_emissions_market_kg=w.electricity_emissions_market_kg,
            emissions_market_kg=w.emissions_market_kg,
            carbon_intensity_market_kg_per_kwh=w.carbon_intensity_market_kg_per_kwh,
            green_power_share_market=w.green_power_share_market,
            max_demand_kw=w.max_demand_kw,
            output=w.output,
            energy_intensity_kgce_per_unit=w.energy_intensity_kgce_per_unit,
            value_added_10k_cny=w.value_added_10k_cny,
            energy_intensity_kgce_per_10k_cny=w.energy_intensity_kgce_per_10k_cny,
            completeness=w.completeness,
            estimated=w.estimated,
            flags=list(w.flags),
            revision=w.revision,
            factors_used=dict(w.factors_used),
            components=encode_components(w.components),
            interim=w.interim,
            interim_note=interim_note(period) if w.interim else None,
        )


class RestatementCausePublic(BaseModel):
    request_id: int | None = Field(description="The restatement request (`GET /restatements`); null: none.")
    reason: str = Field(examples=["value_added"])
    detail: str


class KpiRevisionPublic(BaseModel):
    revision: int = Field(description="The revision number these earlier values had (0: first computation).")
    reason: str = Field(
        examples=["late_data"],
        description="Why these values were replaced: each cause's reason, comma-separated, in request order "
        "(`value_added`, or `green_instruments,value_added` when one recomputation applied both).",
    )
    detail: str = Field(description="Each cause's detail, separated by `; `.")
    causes: list[RestatementCausePublic] = Field(
        description="Every request whose input these values no longer reflect (empty for revisions made "
        "before causes were recorded)."
    )
    replaced_at: datetime
    replaced_ms: int
    previous: KpiWindowPublic = Field(description="The window as it was before this restatement.")

    @classmethod
    def from_revision(cls, r: KpiRevision, site: Site) -> KpiRevisionPublic:
        return cls(
            revision=r.previous.revision,
            reason=r.reason,
            detail=r.detail,
            causes=[RestatementCausePublic.model_validate(c) for c in r.causes],
            replaced_at=to_datetime(r.replaced_ms),
            replaced_ms=r.replaced_ms,
            previous=KpiWindowPublic.from_window(r.previous, site),
        )


class KpiHistoryPublic(BaseModel):
    current: KpiWindowPublic
    revisions: list[KpiRevisionPublic] = Field(
        description="Earlier values, oldest first (empty: never restated)."
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
    acknowledged_at: datetime | None = Field(description="When an operator took the alert on.")
    acknowledged_ms: int | None
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
            started_at=to_datetime(a.started_ms),
            started_ms=a.started_ms,
            fired_at=_dt(a.fired_ms),
            fired_ms=a.fired_ms,
            resolved_at=_dt(a.resolved_ms),
            resolved_ms=a.resolved_ms,
            updated_at=to_datetime(a.updated_ms),
            updated_ms=a.updated_ms,
            acknowledged_at=_dt(a.acknowledged_ms),
            acknowledged_ms=a.acknowledged_ms,
            acknowledged_by=a.acknowledged_by,
            labels=dict(a.labels),
            resolved_reason=a.resolved_reason,
        )


class RulePublic(BaseModel):
    """One alert rule (docs/alerting.md): from the registry file, or made through the API."""

    name: str
    kind: Literal["threshold", "staleness"]
    source: Literal["file", "api"] = Field(
        description="``file``: the registry YAML (read-only here); ``api``: made through the API."
    )
    kpi: str | None = Field(description="Threshold rules: the KPI field compared.")
    op: str | None
    threshold: float | None
    for_ms: int | None = Field(description="Threshold rules: how long the breach must hold before firing.")
    recover_threshold: float | None = Field(
        description="Hysteresis: the safe side a firing alert must reach."
    )
    keep_firing_for_ms: int | None
    min_completeness: float | None
    min_it_kw: float | None
    change_over_ms: int | None = Field(
        description="Rate-of-change rules: the KPI's change over this span is compared, not its value."
    )
    silent_ms: int | None = Field(description="Staleness rules: silence (wall clock) before firing.")
    per: Literal["meter", "site"] | None = Field(
        description="Staleness rules: one alert per silent meter, or one when the whole site is silent."
    )
    meter_roles: list[str]
    severity: str
    summary: str
    site_kinds: list[str]
    site_ids: list[str]
    site_labels: dict[str, str]
    labels: dict[str, str] = Field(
        description="Added to the alert's labels (what notification routes match)."
    )
    created_by: str | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_rule(cls, r: ThresholdRule | StalenessRule, stored: StoredRule | None = None) -> RulePublic:
        threshold = r if isinstance(r, ThresholdRule) else None
        stale = r if isinstance(r, StalenessRule) else None
        return cls(
            name=r.name,
            kind="threshold" if threshold else "staleness",
            source="file" if stored is None else "api",
            kpi=threshold.kpi if threshold else None,
            op=threshold.op if threshold else None,
            threshold=threshold.threshold if threshold else None,
            for_ms=threshold.for_ms if threshold else None,
            recover_threshold=threshold.recover_threshold if threshold else None,
            keep_firing_for_ms=threshold.keep_firing_for_ms if threshold else None,
            min_completeness=threshold.min_completeness if threshold else None,
            min_it_kw=threshold.min_it_kw if threshold else None,
            change_over_ms=threshold.change_over_ms if threshold else None,
            silent_ms=stale.silent_ms if stale else None,
            per=stale.per if stale else None,
            meter_roles=list(stale.meter_roles) if stale else [],
            severity=r.severity,
            summary=r.summary,
            site_kinds=[k.value for k in r.site_kinds],
            site_ids=list(r.site_ids),
            site_labels=dict(r.site_labels),
            labels=dict(r.labels),
            created_by=stored.created_by if stored else None,
            updated_by=stored.updated_by if stored else None,
            updated_at=to_datetime(stored.updated_ms) if stored else None,
        )


RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class RuleIn(BaseModel):
    """A rule as written in the registry's ``rules:`` list (docs/alerting.md): ``kpi``, ``op`` and
    ``threshold`` make a threshold rule, ``silent_for`` a staleness rule. Durations as ``30s``, ``5m``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=RULE_NAME_PATTERN, examples=["pue_hall_b"])
    kpi: str | None = Field(default=None, examples=["pue"])
    op: Literal[">", ">=", "<", "<="] | None = None
    threshold: float | None = Field(default=None, allow_inf_nan=False, examples=[1.4])
    for_: str | None = Field(default=None, alias="for", max_length=20, examples=["5m"])
    recover: float | None = Field(default=None, allow_inf_nan=False)
    keep_firing_for: str | None = Field(default=None, max_length=20)
    min_completeness: float | None = Field(default=None, ge=0, le=1)
    min_it_kw: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    change_over: str | None = Field(default=None, max_length=20)
    silent_for: str | None = Field(default=None, max_length=20, examples=["5m"])
    per: Literal["meter", "site"] | None = None
    meter_roles: list[str] | None = Field(default=None, max_length=20)
    severity: str | None = Field(default=None, max_length=50, examples=["critical"])
    summary: str | None = Field(default=None, max_length=500)
    site_kinds: list[str] | None = Field(default=None, max_length=10)
    site_ids: list[str] | None = Field(default=None, max_length=1000, examples=[["dc-xiangjiang"]])
    site_labels: dict[str, str] | None = None
    labels: dict[str, str] | None = None

    def document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


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
            received_at=to_datetime(d.received_ms),
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


# ------------------------------------------------------------------------------------------ restatements


class RestatementPublic(BaseModel):
    """A recomputation queued for the processor's accountant."""

    id: int
    site_id: str | None = Field(description="null: every site (a factor revision).")
    meter_id: str | None = Field(
        description="Set when the meter's intervals are re-derived from its readings."
    )
    from_: datetime = Field(alias="from")
    from_ms: int
    to: datetime
    to_ms: int
    reason: str = Field(examples=["meter_replacement"])
    detail: str
    requested_at: datetime
    requested_ms: int
    done_at: datetime | None
    done_ms: int | None
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
            from_=to_datetime(r.from_ms),
            from_ms=r.from_ms,
            to=to_datetime(r.to_ms),
            to_ms=r.to_ms,
            reason=r.reason,
            detail=r.detail,
            requested_at=to_datetime(r.requested_ms),
            requested_ms=r.requested_ms,
            done_at=_dt(r.done_ms),
            done_ms=r.done_ms,
            status="done" if r.done_ms is not None else "pending" if r.error is None else "failing",
            attempts=r.attempts,
            error=r.error,
            restated=r.restated,
        )


class FactorWrittenPublic(BaseModel):
    factor: FactorPublic = Field(description="The factor's current version after the request.")
    restatement: RestatementPublic | None = Field(
        description="The queued restatement; null when the value was identical to the current version."
    )


# -------------------------------------------------------------------------------------- meter replacements


class ReplacementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts: int | str = Field(
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

    @field_validator("ts")
    @classmethod
    def _parse_ts(cls, value: int | str) -> int:
        return parse_instant(str(value))

    @property
    def ts_ms(self) -> int:
        assert isinstance(self.ts, int)  # the validator made it so
        return self.ts


class ReplacementPublic(BaseModel):
    site_id: str
    meter_id: str
    ts: datetime
    ts_ms: int
    old_final: float = Field(description="In the canonical unit (`unit`).")
    new_initial: float = Field(description="In the canonical unit (`unit`).")
    unit: str = Field(examples=["kWh"], description="Canonical unit of the meter's quantity.")
    note: str

    @classmethod
    def from_replacement(cls, r: MeterReplacement, unit: str) -> ReplacementPublic:
        return cls(
            site_id=r.site_id,
            meter_id=r.meter_id,
            ts=to_datetime(r.ts_ms),
            ts_ms=r.ts_ms,
            old_final=r.old_final,
            new_initial=r.new_initial,
            unit=unit,
            note=r.note,
        )


class ReplacementCreatedPublic(BaseModel):
    replacement: ReplacementPublic
    restatement: RestatementPublic


# ------------------------------------------------------------------------------------------ green instruments


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


class GreenInstrumentPublic(BaseModel):
    id: int
    site_id: str
    month: str = Field(examples=["2025-03"])
    kind: InstrumentKind
    kwh: float
    reference: str
    recorded_at: datetime
    recorded_ms: int

    @classmethod
    def from_instrument(cls, g: GreenInstrument) -> GreenInstrumentPublic:
        return cls(
            id=g.id,
            site_id=g.site_id,
            month=month_text(g.month),
            kind=g.kind,
            kwh=g.kwh,
            reference=g.reference,
            recorded_at=to_datetime(g.recorded_ms),
            recorded_ms=g.recorded_ms,
        )


class GreenInstrumentCreatedPublic(BaseModel):
    instrument: GreenInstrumentPublic
    restatement: RestatementPublic


# ------------------------------------------------------------------------------------------ value added


class ValueAddedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value_cny: float = Field(ge=0, le=1e15, allow_inf_nan=False, description="Value added of the month, CNY.")


class ValueAddedPublic(BaseModel):
    site_id: str
    month: str = Field(examples=["2025-03"])
    value_cny: float
    value_added_10k_cny: float = Field(description="value_cny ÷ 10,000 (the unit of energy intensity).")
    recorded_at: datetime
    recorded_ms: int

    @classmethod
    def from_value(cls, v: ValueAdded) -> ValueAddedPublic:
        return cls(
            site_id=v.site_id,
            month=month_text(v.month),
            value_cny=v.value_cny,
            value_added_10k_cny=v.value_cny / 10_000,
            recorded_at=to_datetime(v.recorded_ms),
            recorded_ms=v.recorded_ms,
        )


class ValueAddedWrittenPublic(BaseModel):
    value_added: ValueAddedPublic
    restatement: RestatementPublic


# ------------------------------------------------------------------------------------------ targets


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kpi: str = Field(examples=["pue"], description="Any numeric field of a KPI window.")
    kind: TargetKind = Field(
        description="at_most / at_least: keep the KPI at most / at least `value`; reduce_by: reduce it "
        "by the share `value` (0.14 = −14%) against `baseline_year`."
    )
    value: float = Field(allow_inf_nan=False, examples=[1.3])
    year: int = Field(ge=2000, le=2100, examples=[2025])
    baseline_year: int | None = Field(default=None, ge=2000, le=2100, examples=[None])
    note: str = Field(default="", max_length=500)


class TargetPublic(BaseModel):
    id: int
    site_id: str
    kpi: str
    kind: TargetKind
    value: float
    year: int
    baseline_year: int | None
    note: str

    @classmethod
    def from_target(cls, t: Target) -> TargetPublic:
        assert t.id is not None  # stored targets have one
        return cls(
            id=t.id,
            site_id=t.site_id,
            kpi=t.kpi,
            kind=t.kind,
            value=t.value,
            year=t.year,
            baseline_year=t.baseline_year,
            note=t.note,
        )


class SpanPublic(BaseModel):
    """The data a value was computed from: the site's closed windows starting in ``[from, to)``."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    from_: datetime = Field(alias="from")
    from_ms: int
    to: datetime
    to_ms: int

    @classmethod
    def of(cls, from_ms: int, to_ms: int) -> SpanPublic:
        return cls(from_=to_datetime(from_ms), from_ms=from_ms, to=to_datetime(to_ms), to_ms=to_ms)


class TargetProgressPublic(BaseModel):
    target: TargetPublic
    status: TargetStatus = Field(
        description="on_track / at_risk by the projection while the year runs; met / missed once it is over; "
        "no_data when the KPI (or its baseline) cannot be computed."
    )
    current: float | None = Field(description="The KPI over the year to date (`year_to_date`).")
    projection: float | None = Field(
        description="Year-end estimate: totals ÷ elapsed_share; ratios (PUE, intensities, shares) as "
        "they are."
    )
    target_value: float | None = Field(description="`value`, or baseline × (1 − value) for reduce_by.")
    baseline: float | None = Field(description="The KPI over the baseline year (reduce_by).")
    elapsed_share: float = Field(ge=0, le=1, description="Share of the year covered by `year_to_date`.")
    interim: bool = Field(description="The year is not over: current and projection will change.")
    completeness: float | None = Field(description="Completeness of the year-to-date data (see KPI windows).")
    year_to_date: SpanPublic
    baseline_span: SpanPublic | None

    @classmethod
    def from_progress(
        cls,
        p: TargetProgress,
        *,
        year_to_date: SpanPublic,
        baseline_span: SpanPublic | None,
        completeness: float | None,
    ) -> TargetProgressPublic:
        return cls(
            target=TargetPublic.from_target(p.target),
            status=p.status,
            current=p.current,
            projection=p.projection,
            target_value=p.target_value,
            baseline=p.baseline,
            elapsed_share=p.elapsed_share,
            interim=p.elapsed_share < 1.0,
            completeness=completeness,
            year_to_date=year_to_date,
            baseline_span=baseline_span,
        )


# ------------------------------------------------------------------------------------------ access

_NAME_FIELD = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_SITES_DOC = "Sites in scope; `null`: every site."


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PrincipalPublic(BaseModel):
    """Who the request is, as the API sees it."""

    user: str
    role: AccessRole
    sites: list[str] | None = Field(description=_SITES_DOC)
    via: str = Field(description="`session:<id>` or `token:<id>`.")
    must_change_password: bool

    @classmethod
    def from_principal(cls, p: Principal) -> PrincipalPublic:
        return cls(
            user=p.user_name,
            role=p.role,
            sites=None if p.sites is None else sorted(p.sites),
            via=p.via,
            must_change_password=p.must_change_password,
        )


class SessionPublic(BaseModel):
    token: str = Field(
        description="Bearer token of the session (also set as the session cookie). Shown once."
    )
    expires_at: datetime
    expires_ms: int
    principal: PrincipalPublic


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = _NAME_FIELD
    role: AccessRole
    sites: list[str] | None = Field(default=None, max_length=1000, description=_SITES_DOC)
    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Omit for a generated one-time password (returned once, changed at first login).",
    )


class UserPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: AccessRole | None = None
    sites: list[str] | None = Field(
        default=None, max_length=1000, description="New scope (with `all_sites` false)."
    )
    all_sites: bool = Field(default=False, description="Set the scope to every site.")
    disabled: bool | None = Field(
        default=None, description="Disable (revokes every session and token) or enable."
    )


class UserPublic(BaseModel):
    name: str
    role: AccessRole
    sites: list[str] | None = Field(description=_SITES_DOC)
    must_change_password: bool
    created_at: datetime
    created_ms: int
    disabled_at: datetime | None
    disabled_ms: int | None

    @classmethod
    def from_user(cls, u: User) -> UserPublic:
        return cls(
            name=u.name,
            role=u.role,
            sites=None if u.sites is None else list(u.sites),
            must_change_password=u.must_change_password,
            created_at=to_datetime(u.created_ms),
            created_ms=u.created_ms,
            disabled_at=_dt(u.disabled_ms),
            disabled_ms=u.disabled_ms,
        )


class UserCreatedPublic(BaseModel):
    user: UserPublic
    one_time_password: str | None = Field(
        description="The generated password, shown once; `null` if you set one."
    )


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="What the token is for, e.g. `grafana`.")
    role: AccessRole | None = Field(default=None, description="Default: your own role (never more).")
    sites: list[str] | None = Field(default=None, max_length=1000, description="Default: your own scope.")
    expires_in_days: int | None = Field(default=90, ge=1, le=3650, description="`null`: never expires.")
    user: str | None = Field(
        default=None, max_length=64, description="For another user (global admins only)."
    )


class CredentialPublic(BaseModel):
    id: str
    kind: CredentialKind
    name: str
    user: str
    role: AccessRole
    sites: list[str] | None = Field(description=_SITES_DOC)
    created_at: datetime
    created_ms: int
    expires_at: datetime | None
    expires_ms: int | None
    revoked_at: datetime | None
    revoked_ms: int | None
    last_used_at: datetime | None
    last_used_ms: int | None

    @classmethod
    def from_credential(cls, c: Credential) -> CredentialPublic:
        return cls(
            id=c.id,
            kind=c.kind,
            name=c.name,
            user=c.user_name,
            role=c.role,
            sites=None if c.sites is None else list(c.sites),
            created_at=to_datetime(c.created_ms),
            created_ms=c.created_ms,
            expires_at=_dt(c.expires_ms),
            expires_ms=c.expires_ms,
            revoked_at=_dt(c.revoked_ms),
            revoked_ms=c.revoked_ms,
            last_used_at=_dt(c.last_used_ms),
            last_used_ms=c.last_used_ms,
        )


class TokenCreatedPublic(BaseModel):
    token: str = Field(description="The bearer token. Shown once: store it now.")
    credential: CredentialPublic


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    at_ms: int
    actor: str
    via: str
    action: str
    site_id: str | None
    target: str
    detail: dict[str, Any]
    client: str
    outcome: str = Field(
        description="`ok`, `refused: <status> <reason>`, `failed: <error>`, or `started` if the change "
        "did not report back (the entry is written before the change)."
    )

    @classmethod
    def from_entry(cls, e: AuditEntry) -> AuditEntryPublic:
        assert e.id is not None
        return cls(
            id=e.id,
            at=to_datetime(e.at_ms),
            at_ms=e.at_ms,
            actor=e.actor,
            via=e.via,
            action=e.action,
            site_id=e.site_id,
            target=e.target,
            detail=e.detail,
            client=e.client,
            outcome=e.outcome,
        )


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


class DevicePublic(BaseModel):
    id: str
    kind: DeviceKind
    site_id: str | None
    meters: list[str]
    topics: list[str] = Field(description="Topic filters it may publish to (a collector: read).")
    created_at: datetime
    created_ms: int
    rotated_at: datetime | None
    rotated_ms: int | None
    revoked_at: datetime | None
    revoked_ms: int | None

    @classmethod
    def from_device(cls, d: Device, prefix: str) -> DevicePublic:
        return cls(
            id=d.id,
            kind=d.kind,
            site_id=d.site_id,
            meters=list(d.meters),
            topics=device_topics(d, prefix),
            created_at=to_datetime(d.created_ms),
            created_ms=d.created_ms,
            rotated_at=_dt(d.rotated_ms),
            rotated_ms=d.rotated_ms,
            revoked_at=_dt(d.revoked_ms),
            revoked_ms=d.revoked_ms,
        )


class DeviceSecretPublic(BaseModel):
    device: DevicePublic
    secret: str = Field(
        description="The MQTT password, shown once; applied at the next `peakwatch devices export`."
    )


# ------------------------------------------------------------------------------------------ silences

MAX_SILENCE_MATCHERS: Final = 20


class SilenceIn(BaseModel):
    """Mute the alerts every matcher matches, from ``starts_at`` until ``ends_at`` (or for ``duration``)."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        min_length=1,
        max_length=MAX_SILENCE_MATCHERS,
        examples=[['site="dc-xiangjiang"', 'alertname=~"pue_.*"']],
        description="Label matchers, all of which must match: `name=value`, `name!=value`, `name=~regex`, "
        "`name!~regex` (regexes match the whole value). A user whose scope is not every site must "
        'include `site="<one of your sites>"`.',
    )
    starts_at: int | str | None = Field(
        default=None,
        description="RFC 3339 with an offset or epoch milliseconds; default: now.",
        examples=["2025-03-01T22:00:00+08:00"],
    )
    ends_at: int | str | None = Field(
        default=None,
        description="RFC 3339 with an offset or epoch milliseconds (or give `duration`); after `starts_at` "
        "and in the future.",
        examples=["2025-03-02T02:00:00+08:00"],
    )
    duration: str | None = Field(
        default=None,
        max_length=20,
        description="Instead of `ends_at`: how long from `starts_at`, e.g. `30m`, `2h`, `1d`.",
        examples=["2h"],
    )
    comment: str = Field(default="", max_length=500, description="Why (shown with the silence).")

    @field_validator("matchers")
    @classmethod
    def _parse_matchers(cls, value: list[str]) -> list[str]:
        """Canonical text (``site="dc-1"``), so what is stored reads the same whoever typed it."""
        return [str(Matcher.parse(text)) for text in value]

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _parse_instant(cls, value: int | str | None) -> int | None:
        return None if value is None else parse_instant(str(value))

    @property
    def parsed_matchers(self) -> list[Matcher]:
        return [Matcher.parse(text) for text in self.matchers]

    @property
    def starts_ms(self) -> int | None:
        assert self.starts_at is None or isinstance(self.starts_at, int)  # the validator made it so
        return self.starts_at

    @property
    def ends_ms(self) -> int | None:
        assert self.ends_at is None or isinstance(self.ends_at, int)
        return self.ends_at


class SilencePublic(BaseModel):
    id: int
    matchers: list[str] = Field(examples=[['site="dc-xiangjiang"', 'alertname=~"pue_.*"']])
    state: SilenceState = Field(
        description="active: muting now; pending: starts later; expired: ended (or expired early)."
    )
    starts_at: datetime
    starts_ms: int
    ends_at: datetime
    ends_ms: int
    created_by: str
    comment: str
    created_at: datetime
    created_ms: int
    expired_by: str | None = Field(description="Who ended it early; `null` if it ran (or runs) its course.")

    @classmethod
    def from_record(cls, s: SilenceRecord, now_ms: int) -> SilencePublic:
        return cls(
            id=s.id,
            matchers=list(s.matchers),
            state=silence_state(s, now_ms),
            starts_at=to_datetime(s.starts_ms),
            starts_ms=s.starts_ms,
            ends_at=to_datetime(s.ends_ms),
            ends_ms=s.ends_ms,
            created_by=s.created_by,
            comment=s.comment,
            created_at=to_datetime(s.created_ms),
            created_ms=s.created_ms,
            expired_by=s.expired_by,
        )


def silence_state(s: SilenceRecord, now_ms: int) -> SilenceState:
    """Expired early counts as expired even while ``ends_ms`` is ahead: a silence expired before it
    started ends as it starts."""
    if s.expired_by is not None or s.ends_ms <= now_ms:
        return "expired"
    return "pending" if now_ms < s.starts_ms else "active"


# ------------------------------------------------------------------------------------------ deliveries


class DeliveryPublic(BaseModel):
    """One attempt to deliver a notification to one channel."""

    id: int
    at: datetime
    at_ms: int
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
            at=to_datetime(d.at_ms),
            at_ms=d.at_ms,
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
