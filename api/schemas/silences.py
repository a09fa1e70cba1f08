"""Bodies of the silence routes, and the state a silence is in at an instant."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas.common import Instant, InstantIn, InstantModel, Twin, twin
from peakwatch.domain.routing import Matcher
from peakwatch.store.records import SilenceRecord

SilenceState = Literal["active", "pending", "expired"]


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
    starts_at: InstantIn | None = Field(
        default=None,
        description="RFC 3339 with an offset or epoch milliseconds; default: now.",
        examples=["2025-03-01T22:00:00+08:00"],
    )
    ends_at: InstantIn | None = Field(
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

    @property
    def parsed_matchers(self) -> list[Matcher]:
        return [Matcher.parse(text) for text in self.matchers]

    @property
    def starts_ms(self) -> int | None:
        assert self.starts_at is None or isinstance(self.starts_at, int)  # InstantIn parsed it
        return self.starts_at

    @property
    def ends_ms(self) -> int | None:
        assert self.ends_at is None or isinstance(self.ends_at, int)
        return self.ends_at


class SilencePublic(InstantModel):
    id: int
    matchers: list[str] = Field(examples=[['site="dc-xiangjiang"', 'alertname=~"pue_.*"']])
    state: SilenceState = Field(
        description="active: muting now; pending: starts later; expired: ended (or expired early)."
    )
    starts_at: Instant
    starts_ms: Twin = twin()
    ends_at: Instant
    ends_ms: Twin = twin()
    created_by: str
    comment: str
    created_at: Instant
    created_ms: Twin = twin()
    expired_by: str | None = Field(description="Who ended it early; `null` if it ran (or runs) its course.")

    @classmethod
    def from_record(cls, s: SilenceRecord, now_ms: int) -> SilencePublic:
        return cls(
            id=s.id,
            matchers=list(s.matchers),
            state=silence_state(s, now_ms),
            starts_at=s.starts_ms,
            ends_at=s.ends_ms,
            created_by=s.created_by,
            comment=s.comment,
            created_at=s.created_ms,
            expired_by=s.expired_by,
        )


def silence_state(s: SilenceRecord, now_ms: int) -> SilenceState:
    """Expired early counts as expired even while ``ends_ms`` is ahead: a silence expired before it
    started ends as it starts."""
    if s.expired_by is not None or s.ends_ms <= now_ms:
        return "expired"
    return "pending" if now_ms < s.starts_ms else "active"
