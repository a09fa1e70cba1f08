"""Bodies of the carbon-peak target routes and the spans their progress is computed over."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Instant, InstantModel, Twin, twin
from peakwatch.domain.targets import Target, TargetKind, TargetProgress, TargetStatus


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


class SpanPublic(InstantModel):
    """The data a value was computed from: the site's closed windows starting in ``[from, to)``."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    from_: Instant = Field(alias="from")
    from_ms: Twin = twin()
    to: Instant
    to_ms: Twin = twin()

    @classmethod
    def of(cls, from_ms: int, to_ms: int) -> SpanPublic:
        return cls(from_=from_ms, to=to_ms)


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
