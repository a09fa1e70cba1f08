"""Making users, API tokens and sessions: the one implementation behind both ``peakwatch users …``
(CLI) and ``/api/v1/users``, ``/api/v1/tokens``, ``/api/v1/auth`` (API).

Secrets are generated here, returned once to the caller to show, and never stored or logged: the
store gets argon2 hashes of passwords and SHA-256 digests of token secrets.
"""

from __future__ import annotations

import getpass
import logging
import secrets
import time
from collections.abc import Sequence

from peakwatch.domain.access import (
    USER_NAME,
    AccessRole,
    AuditEntry,
    Credential,
    CredentialKind,
    User,
    digest,
    format_token,
    password_problem,
)
from peakwatch.domain.devices import SALT_BYTES, mosquitto_hash
from peakwatch.errors import ConfigError
from peakwatch.passwords import hash_password, new_password
from peakwatch.store import Store

log = logging.getLogger(__name__)

FIRST_ADMIN = "admin"


def check_user_name(name: str) -> None:
    if not USER_NAME.match(name):
        raise ConfigError(f"user name {name!r} must match {USER_NAME.pattern}")


def check_password(password: str, user_name: str) -> None:
    problem = password_problem(password, user_name)
    if problem is not None:
        raise ConfigError(problem)


def new_user(
    name: str,
    role: AccessRole,
    sites: Sequence[str] | None,
    password: str | None,
    now_ms: int,
) -> tuple[User, str]:
    """A user and its password: the one given (checked), or a generated one-time password that must
    be changed at the first login."""
    check_user_name(name)
    one_time = password is None
    if password is None:
        password = new_password()
    else:
        check_password(password, name)
    user = User(
        name=name,
        role=role,
        sites=None if sites is None else tuple(sorted(set(sites))),
        password_hash=hash_password(password),
        must_change_password=one_time,
        created_ms=now_ms,
    )
    return user, password


def new_credential(
    kind: CredentialKind,
    *,
    user_name: str,
    name: str,
    role: AccessRole,
    sites: Sequence[str] | None,
    now_ms: int,
    ttl_ms: int | None,
) -> tuple[Credential, str]:
    """A token or session and the bearer string that proves it (shown once)."""
    credential_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    credential = Credential(
        id=credential_id,
        kind=kind,
        name=name,
        user_name=user_name,
        role=role,
        sites=None if sites is None else tuple(sorted(set(sites))),
        secret_digest=digest(secret),
        created_ms=now_ms,
        expires_ms=None if ttl_ms is None else now_ms + ttl_ms,
    )
    return credential, format_token(kind, credential_id, secret)


async def ensure_first_admin(store: Store, now_ms: int) -> str | None:
    """On the embedded default's first run: an ``admin`` with every site and a one-time password,
    which is returned for the caller to print once (``None``: users exist already)."""
    user, password = new_user(FIRST_ADMIN, AccessRole.ADMIN, None, None, now_ms)
    if await store.access.add_first_admin(user):
        log.info("created the first admin user %r (its password is shown on the console only)", user.name)
        return password
    return None


def new_device_secret() -> tuple[str, str]:
    """A device's MQTT secret (shown once) and its Mosquitto hash (stored)."""
    secret = secrets.token_urlsafe(24)
    return secret, mosquitto_hash(secret, secrets.token_bytes(SALT_BYTES))


async def audit_cli(store: Store, action: str, target: str, detail: dict[str, object] | None = None) -> None:
    """The audit entry of a change made with the CLI: the actor is the operating-system user."""
    await store.access.audit(
        AuditEntry(
            at_ms=time.time_ns() // 1_000_000,
            actor=f"cli:{getpass.getuser()}",
            via="cli",
            action=action,
            target=target,
            detail=dict(detail or {}),
        )
    )
