"""Bodies of the user routes and the audit log."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import SITES_DOC, Instant, InstantModel, Twin, twin
from peakwatch.domain.access import AccessRole, AuditEntry, User

NAME_FIELD = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = NAME_FIELD
    role: AccessRole
    sites: list[str] | None = Field(default=None, max_length=1000, description=SITES_DOC)
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


class UserPublic(InstantModel):
    name: str
    role: AccessRole
    sites: list[str] | None = Field(description=SITES_DOC)
    must_change_password: bool
    created_at: Instant
    created_ms: Twin = twin()
    disabled_at: Instant | None
    disabled_ms: Twin | None = twin()

    @classmethod
    def from_user(cls, u: User) -> UserPublic:
        return cls(
            name=u.name,
            role=u.role,
            sites=None if u.sites is None else list(u.sites),
            must_change_password=u.must_change_password,
            created_at=u.created_ms,
            disabled_at=u.disabled_ms,
        )


class UserCreatedPublic(BaseModel):
    user: UserPublic
    one_time_password: str | None = Field(
        description="The generated password, shown once; `null` if you set one."
    )


class AuditEntryPublic(InstantModel):
    id: int
    at: Instant
    at_ms: Twin = twin()
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
            at=e.at_ms,
            actor=e.actor,
            via=e.via,
            action=e.action,
            site_id=e.site_id,
            target=e.target,
            detail=e.detail,
            client=e.client,
            outcome=e.outcome,
        )
