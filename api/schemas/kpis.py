"""Bodies of the KPI routes: windows of every period and their revisions."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from api.schemas.common import Instant, InstantModel, Twin, twin
from peakwatch.domain.components import encode_components
from peakwatch.domain.models import KpiWindow, Site, SiteKind
from peakwatch.domain.periods import Period
from peakwatch.store.records import KpiRevision

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


class KpiWindowPublic(InstantModel):
    """KPIs of one site over the window ``[window_start, window_end)`` of a period: closed (stored), or
    for a period in progress ``status: open``, computed from the minutes closed so far.

    Every value is computed from the window's additive `components` (a longer window's components are
    the sums of its minutes'), so ratios are never averaged. A ratio is null when its denominator is
    zero or not metered (never 0 or infinity); data-centre KPIs are null for parks. Market-based values
    and intensities per value added need monthly inputs: null for windows shorter than a month.
    """

    site_id: str
    period: Period = Field(description="1m, 15m, 1h, 1d (local day), 1mo (local calendar month), 12mo.")
    window_start: Instant
    window_end: Instant
    window_start_ms: Twin = twin()
    window_end_ms: Twin = twin()
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
            window_start=w.start_ms,
            window_end=w.end_ms,
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


class KpiRevisionPublic(InstantModel):
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
    replaced_at: Instant
    replaced_ms: Twin = twin()
    previous: KpiWindowPublic = Field(description="The window as it was before this restatement.")

    @classmethod
    def from_revision(cls, r: KpiRevision, site: Site) -> KpiRevisionPublic:
        return cls(
            revision=r.previous.revision,
            reason=r.reason,
            detail=r.detail,
            causes=[RestatementCausePublic.model_validate(c) for c in r.causes],
            replaced_at=r.replaced_ms,
            previous=KpiWindowPublic.from_window(r.previous, site),
        )


class KpiHistoryPublic(BaseModel):
    current: KpiWindowPublic
    revisions: list[KpiRevisionPublic] = Field(
        description="Earlier values, oldest first (empty: never restated)."
    )
