"""Bodies of the alert-rule routes (docs/alerting.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from peakwatch.domain.instants import to_datetime
from peakwatch.domain.rules import StalenessRule, ThresholdRule
from peakwatch.store.records import StoredRule


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
