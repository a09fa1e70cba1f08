"""Users, their API tokens and sessions, and the audit log: the store side of authentication."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg
import msgspec

from peakwatch.domain.access import AccessRole, AuditEntry, Credential, CredentialKind, User
from peakwatch.errors import ConflictError
from peakwatch.store.conn import Conn
from peakwatch.store.pooled import Pooled, convert

_USER_COLUMNS: Final = (
    "name, role, sites, password_hash, must_change_password, created_at AS created_ms, "
    "disabled_at AS disabled_ms"
)
_CREDENTIAL_COLUMNS: Final = (
    "id, kind, name, user_name, role, sites, secret_digest, created_at AS created_ms, "
    "expires_at AS expires_ms, revoked_at AS revoked_ms, last_used_at AS last_used_ms"
)
_AUDIT_COLUMNS: Final = "id, at AS at_ms, actor, via, action, site_id, target, detail, client, outcome"
LAST_USED_RESOLUTION_MS: Final = 60_000
"""``last_used_at`` is written at most once a minute per credential: a script polling every second
must not turn each read into a write."""


def _sites(sites: Sequence[str] | None) -> list[str] | None:
    return None if sites is None else list(sites)


class AccessStore(Pooled):
    """Every method raises StoreError; adding a user that exists raises ConflictError (a StoreError)."""

    # ------------------------------------------------------------------ users

    async def add_user(self, user: User) -> User:
        async with self._connection("adding a user") as conn:
            try:
                row = await conn.fetchrow(
                    "INSERT INTO users (name, role, sites, password_hash, must_change_password, created_at) "
                    f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_USER_COLUMNS}",
                    user.name,
                    user.role.value,
                    _sites(user.sites),
                    user.password_hash,
                    user.must_change_password,
                    user.created_ms,
                )
            except asyncpg.UniqueViolationError:
                raise ConflictError(f"user {user.name!r} exists") from None
        assert row is not None
        return convert(row, User)

    async def add_first_admin(self, user: User) -> bool:
        """Add ``user`` only if there is no user at all (first run); False when users exist. Two
        processes starting together cannot both add one: the table is locked for the check."""
        async with self._connection("adding the first admin") as conn, conn.transaction():
            await conn.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
                return False
            await conn.execute(
                "INSERT INTO users (name, role, sites, password_hash, must_change_password, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                user.name,
                user.role.value,
                _sites(user.sites),
                user.password_hash,
                user.must_change_password,
                user.created_ms,
            )
        return True

    async def get_user(self, name: str) -> User | None:
        rows = await self._fetch("reading a user", f"SELECT {_USER_COLUMNS} FROM users WHERE name = $1", name)
        return convert(rows[0], User) if rows else None

    async def list_users(self) -> list[User]:
        rows = await self._fetch("listing users", f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")
        return [convert(r, User) for r in rows]

    async def update_user(
        self,
        name: str,
        *,
        role: AccessRole | None = None,
        sites: Sequence[str] | None = None,
        all_sites: bool = False,
        disabled_ms: int | None = None,
        enable: bool = False,
    ) -> User | None:
        """Change the given fields (``all_sites`` sets the scope to every site; ``disabled_ms`` disables,
        ``enable`` enables). Disabling a user also revokes its sessions and tokens. ConflictError when
        no enabled admin of every site would remain (checked in the same transaction, under a lock, so
        two admins demoting each other at once cannot both succeed)."""
        async with self._connection("updating a user") as conn, conn.transaction():
            await _lock_users(conn)
            row = await conn.fetchrow(
                "UPDATE users SET role = coalesce($2, role), "
                "sites = CASE WHEN $4 THEN NULL WHEN $3::text[] IS NOT NULL THEN $3 ELSE sites END, "
                "disabled_at = CASE WHEN $6 THEN NULL ELSE coalesce($5, disabled_at) END "
                f"WHERE name = $1 RETURNING {_USER_COLUMNS}",
                name,
                None if role is None else role.value,
                _sites(sites),
                all_sites,
                disabled_ms,
                enable,
            )
            if row is None:
                return None
            await _keep_an_admin(conn, name)
            if disabled_ms is not None:
                await conn.execute(
                    "UPDATE credentials SET revoked_at = $2 WHERE user_name = $1 AND revoked_at IS NULL",
                    name,
                    disabled_ms,
                )
        return convert(row, User)

    async def set_password(
        self,
        name: str,
        password_hash: str,
        *,
        must_change: bool,
        now_ms: int,
        keep_session: str | None = None,
    ) -> bool:
        """New password; every session of the user except ``keep_session`` ends (a changed password
        logs out whoever else was using the old one). Tokens stay valid."""
        async with self._connection("setting a password") as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE users SET password_hash = $2, must_change_password = $3 WHERE name = $1",
                name,
                password_hash,
                must_change,
            )
            await conn.execute(
                "UPDATE credentials SET revoked_at = $2 WHERE user_name = $1 AND kind = 'session' "
                "AND revoked_at IS NULL AND id IS DISTINCT FROM $3",
                name,
                now_ms,
                keep_session,
            )
        return status.endswith(" 1")

    async def delete_user(self, name: str) -> bool:
        """Removes the user and its credentials; audit entries keep the name. ConflictError for the
        last enabled admin of every site."""
        async with self._connection("deleting a user") as conn, conn.transaction():
            await _lock_users(conn)
            deleted = await conn.fetchval("DELETE FROM users WHERE name = $1 RETURNING name", name)
            if deleted is not None:
                await _keep_an_admin(conn, name)
        return deleted is not None

    # ------------------------------------------------------------------ tokens and sessions

    async def add_credential(self, credential: Credential) -> Credential:
        rows = await self._fetch(
            "adding a credential",
            "INSERT INTO credentials (id, kind, name, user_name, role, sites, secret_digest, created_at, "
            f"expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_CREDENTIAL_COLUMNS}",
            credential.id,
            credential.kind.value,
            credential.name,
            credential.user_name,
            credential.role.value,
            _sites(credential.sites),
            credential.secret_digest,
            credential.created_ms,
            credential.expires_ms,
        )
        return convert(rows[0], Credential)

    async def credential_and_user(self, credential_id: str) -> tuple[Credential, User] | None:
        """One round trip per authenticated request: the credential and its user's current rights."""
        rows = await self._fetch(
            "reading a credential",
            f"SELECT {', '.join('c.' + c for c in _CREDENTIAL_COLUMNS.split(', '))}, "
            "u.role AS u_role, u.sites AS u_sites, u.password_hash AS u_password_hash, "
            "u.must_change_password AS u_must_change, u.created_at AS u_created_ms, "
            "u.disabled_at AS u_disabled_ms "
            "FROM credentials c JOIN users u ON u.name = c.user_name WHERE c.id = $1",
            credential_id,
        )
        if not rows:
            return None
        row = dict(rows[0])
        user = User(
            name=row["user_name"],
            role=AccessRole(row.pop("u_role")),
            sites=None if row["u_sites"] is None else tuple(row["u_sites"]),
            password_hash=row.pop("u_password_hash"),
            must_change_password=row.pop("u_must_change"),
            created_ms=row.pop("u_created_ms"),
            disabled_ms=row.pop("u_disabled_ms"),
        )
        row.pop("u_sites")
        return msgspec.convert(row, Credential), user

    async def list_credentials(
        self, *, user_name: str | None = None, kind: CredentialKind | None = None
    ) -> list[Credential]:
        rows = await self._fetch(
            "listing credentials",
            f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE ($1::text IS NULL OR user_name = $1) "
            "AND ($2::text IS NULL OR kind = $2) ORDER BY created_at DESC, id",
            user_name,
            None if kind is None else kind.value,
        )
        return [convert(r, Credential) for r in rows]

    async def revoke_credential(self, credential_id: str, now_ms: int) -> Credential | None:
        rows = await self._fetch(
            "revoking a credential",
            "UPDATE credentials SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL "
            f"RETURNING {_CREDENTIAL_COLUMNS}",
            credential_id,
            now_ms,
        )
        return convert(rows[0], Credential) if rows else None

    async def touch_credential(self, credential_id: str, now_ms: int) -> None:
        async with self._connection("recording a credential's use") as conn:
            await conn.execute(
                "UPDATE credentials SET last_used_at = $2 WHERE id = $1 "
                "AND (last_used_at IS NULL OR last_used_at < $3)",
                credential_id,
                now_ms,
                now_ms - LAST_USED_RESOLUTION_MS,
            )

    # ------------------------------------------------------------------ audit log

    async def audit(self, entry: AuditEntry) -> int:
        """Append an entry; its id (for ``finish_audit``)."""
        async with self._connection("writing the audit log") as conn:
            audit_id = await conn.fetchval(
                "INSERT INTO audit_log (at, actor, via, action, site_id, target, detail, client, outcome) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                entry.at_ms,
                entry.actor,
                entry.via,
                entry.action,
                entry.site_id,
                entry.target,
                entry.detail,
                entry.client,
                entry.outcome,
            )
        return int(audit_id)

    async def finish_audit(self, audit_id: int, outcome: str, site_id: str | None = None) -> None:
        """Record how a change written with outcome ``started`` ended (and the site, when only the
        handler knew it)."""
        async with self._connection("writing the audit log") as conn:
            await conn.execute(
                "UPDATE audit_log SET outcome = $2, site_id = coalesce(site_id, $3) WHERE id = $1",
                audit_id,
                outcome,
                site_id,
            )

    async def list_audit(
        self,
        *,
        limit: int = 100,
        actor: str | None = None,
        site_id: str | None = None,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """Newest first; ``before_id`` pages back."""
        rows = await self._fetch(
            "reading the audit log",
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE ($2::text IS NULL OR actor = $2) "
            "AND ($3::text IS NULL OR site_id = $3) AND ($4::bigint IS NULL OR id < $4) "
            "ORDER BY id DESC LIMIT $1",
            limit,
            actor,
            site_id,
            before_id,
        )
        return [convert(r, AuditEntry) for r in rows]


async def _lock_users(conn: Conn) -> None:
    """Serialise changes that could remove the last admin (rare writes: a table lock is cheap)."""
    await conn.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")


async def _keep_an_admin(conn: Conn, name: str) -> None:
    """Inside the changing transaction: refuse (roll back) if no enabled admin of every site is left."""
    admins = await conn.fetchval(
        "SELECT count(*) FROM users WHERE role = 'admin' AND sites IS NULL AND disabled_at IS NULL"
    )
    if admins == 0:
        raise ConflictError(f"{name!r} is the last admin whose scope is every site; make another one first")
