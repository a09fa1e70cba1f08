"""Bodies of the site routes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.factors import FactorPublic
from peakwatch.domain.models import Site, SiteKind


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
