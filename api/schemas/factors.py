"""Bodies of the factor routes: versioned emission and conversion factors and factor sets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.accounting import RestatementPublic
from api.schemas.common import Instant, InstantModel, Twin, twin
from peakwatch.domain.factors import Factor, FactorSet, Status


class FactorPublic(InstantModel):
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
    recorded_at: Instant | None = Field(description="When this version was added; null for shipped defaults.")
    recorded_ms: Twin | None = twin()

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
            recorded_at=f.recorded_ms,
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


class FactorWrittenPublic(BaseModel):
    factor: FactorPublic = Field(description="The factor's current version after the request.")
    restatement: RestatementPublic | None = Field(
        description="The queued restatement; null when the value was identical to the current version."
    )
