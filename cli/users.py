"""``peakwatch users``: API and dashboard users and their API tokens, from the command line.

For the first admin of a deployment on an external database (the embedded default makes one on its
first run) and for scripts. A generated password or token is printed once, on standard output (so
``TOKEN=$(peakwatch users token …)`` works); explanations go to standard error. Every change is
written to the audit log as ``cli:<operating-system user>``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, database, database_options, run
from cli.help import command_group
from peakwatch.accounts import audit_cli, new_credential, new_user
from peakwatch.clock import now_ms
from peakwatch.config import Settings
from peakwatch.domain.access import AccessRole, CredentialKind, Principal, within
from peakwatch.errors import ConfigError
from peakwatch.passwords import hash_password, new_password

users_app = command_group(help="API and dashboard users and their API tokens.", no_args_is_help=True)

SiteOpt = Annotated[
    list[str] | None, typer.Option("--site", help="A site in scope (repeat); default: every site.")
]


@users_app.command("add")
@database_options
def add(
    name: Annotated[str, typer.Argument(help="User name (login).")],
    role: Annotated[AccessRole, typer.Option(help="viewer, operator or admin.")],
    site: SiteOpt = None,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input; default: a one-time password.")
    ] = False,
    *,
    settings: Settings,
) -> None:
    """Add a user. Without --password-stdin a one-time password is printed, to be changed at first login."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    run(_add(settings, name, role, site, password))


async def _add(
    settings: Settings, name: str, role: AccessRole, sites: list[str] | None, password: str | None
) -> None:
    user, secret = new_user(name, role, sites, password, now_ms())
    async with database(settings) as store:
        if sites:
            known = {s.id for s in await store.list_sites()}
            unknown = sorted(set(sites) - known)
            if unknown:
                raise ConfigError(f"unknown sites: {', '.join(unknown)}")
        await store.access.add_user(user)
        await audit_cli(store, "add user", name, {"role": role.value, "sites": sites})
    scope = ", ".join(sites) if sites else "every site"
    console.print(f"user [bold]{name}[/] ({role.value}, {scope}) added")
    if password is None:
        console.print("one-time password (change it at the first login):")
        typer.echo(secret)


@users_app.command("list")
@database_options
def list_users(
    *,
    settings: Settings,
) -> None:
    """Users, their role, scope and state."""
    run(_list(settings))


async def _list(settings: Settings) -> None:
    async with database(settings) as store:
        users = await store.access.list_users()
    table = Table("name", "role", "sites", "state")
    for u in users:
        state = (
            "disabled"
            if u.disabled_ms is not None
            else "must change password"
            if u.must_change_password
            else "active"
        )
        table.add_row(u.name, u.role.value, "every site" if u.sites is None else ", ".join(u.sites), state)
    console.print(table)


@users_app.command("disable")
@database_options
def disable(
    name: Annotated[str, typer.Argument(help="User name.")],
    *,
    settings: Settings,
) -> None:
    """Disable a user: its sessions and tokens stop working at once."""
    run(_disable(settings, name))


async def _disable(settings: Settings, name: str) -> None:
    async with database(settings) as store:
        if await store.access.update_user(name, disabled_ms=now_ms()) is None:
            raise ConfigError(f"unknown user {name!r}")
        await audit_cli(store, "disable user", name)
    console.print(f"{name} disabled; its sessions and tokens are revoked")


@users_app.command("reset-password")
@database_options
def reset_password(
    name: Annotated[str, typer.Argument(help="User name.")],
    *,
    settings: Settings,
) -> None:
    """A new one-time password (printed once); the user's sessions end."""
    run(_reset(settings, name))


async def _reset(settings: Settings, name: str) -> None:
    password = new_password()
    async with database(settings) as store:
        found = await store.access.set_password(
            name, hash_password(password), must_change=True, now_ms=now_ms()
        )
        if not found:
            raise ConfigError(f"unknown user {name!r}")
        await audit_cli(store, "reset password", name)
    console.print(f"one-time password of {name} (change it at the next login):")
    typer.echo(password)


@users_app.command("token")
@database_options
def token(
    user: Annotated[str, typer.Argument(help="Whose rights the token carries.")],
    name: Annotated[str, typer.Option(help="What the token is for, e.g. grafana.")],
    role: Annotated[AccessRole | None, typer.Option(help="Default: the user's role (never more).")] = None,
    site: SiteOpt = None,
    expires_days: Annotated[int, typer.Option(help="Days until it expires; 0: never.")] = 90,
    *,
    settings: Settings,
) -> None:
    """An API token for scripts (printed once on standard output)."""
    run(_token(settings, user, name, role, site, expires_days))


async def _token(
    settings: Settings,
    user_name: str,
    name: str,
    role: AccessRole | None,
    sites: list[str] | None,
    expires_days: int,
) -> None:
    async with database(settings) as store:
        user = await store.access.get_user(user_name)
        if user is None or user.disabled_ms is not None:
            raise ConfigError(f"no active user {user_name!r}")
        granted_role = role or user.role
        granted_sites = tuple(sites) if sites else user.sites
        problem = within(granted_role, granted_sites, Principal.of(user, "cli"))
        if problem is not None:
            raise ConfigError(f"the token would exceed its user: {problem}")
        credential, bearer = new_credential(
            CredentialKind.TOKEN,
            user_name=user.name,
            name=name,
            role=granted_role,
            sites=granted_sites,
            now_ms=now_ms(),
            ttl_ms=expires_days * 86_400_000 if expires_days > 0 else None,
        )
        await store.access.add_credential(credential)
        await audit_cli(
            store, "create token", user_name, {"id": credential.id, "name": name, "role": granted_role.value}
        )
    console.print(f"token {credential.id} for {user_name} ({granted_role.value}); shown once:")
    typer.echo(bearer)


@users_app.command("revoke-token")
@database_options
def revoke_token(
    credential_id: Annotated[str, typer.Argument(help="Token id (the part after pwt_).")],
    *,
    settings: Settings,
) -> None:
    """Revoke an API token or end a session."""
    run(_revoke_token(settings, credential_id))


async def _revoke_token(settings: Settings, credential_id: str) -> None:
    async with database(settings) as store:
        if await store.access.revoke_credential(credential_id, now_ms()) is None:
            raise ConfigError(f"no active token {credential_id!r}")
        await audit_cli(store, "revoke token", credential_id)
    console.print(f"token {credential_id} revoked")
