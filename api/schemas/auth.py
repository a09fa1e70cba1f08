"""Bodies of login, the caller's identity and password, and API tokens."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import SITES_DOC, Instant, InstantModel, Twin, twin
from peakwatch.domain.access import AccessRole, Credential, CredentialKind, Principal


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PrincipalPublic(BaseModel):
    """Who the request is, as the API sees it."""

    user: str
    role: AccessRole
    sites: list[str] | None = Field(description=SITES_DOC)
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


class SessionPublic(InstantModel):
    token: str = Field(
        description="Bearer token of the session (also set as the session cookie). Shown once."
    )
    expires_at: Instant
    expires_ms: Twin = twin()
    principal: PrincipalPublic


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="What the token is for, e.g. `grafana`.")
    role: AccessRole | None = Field(default=None, description="Default: your own role (never more).")
    sites: list[str] | None = Field(default=None, max_length=1000, description="Default: your own scope.")
    expires_in_days: int | None = Field(default=90, ge=1, le=3650, description="`null`: never expires.")
    user: str | None = Field(
        default=None, max_length=64, description="For another user (global admins only)."
    )


class CredentialPublic(InstantModel):
    id: str
    kind: CredentialKind
    name: str
    user: str
    role: AccessRole
    sites: list[str] | None = Field(description=SITES_DOC)
    created_at: Instant
    created_ms: Twin = twin()
    expires_at: Instant | None
    expires_ms: Twin | None = twin()
    revoked_at: Instant | None
    revoked_ms: Twin | None = twin()
    last_used_at: Instant | None
    last_used_ms: Twin | None = twin()

    @classmethod
    def from_credential(cls, c: Credential) -> CredentialPublic:
        return cls(
            id=c.id,
            kind=c.kind,
            name=c.name,
            user=c.user_name,
            role=c.role,
            sites=None if c.sites is None else list(c.sites),
            created_at=c.created_ms,
            expires_at=c.expires_ms,
            revoked_at=c.revoked_ms,
            last_used_at=c.last_used_ms,
        )


class TokenCreatedPublic(BaseModel):
    token: str = Field(description="The bearer token. Shown once: store it now.")
    credential: CredentialPublic
