"""Logging in and out, the caller's own identity and password, and API tokens.

Login is the one route without credentials; it is throttled per user name and per client address
(``peakwatch.domain.access.LoginThrottle``) and answers the same 401 whether the user is unknown or
the password wrong. argon2 runs in a worker thread: it is deliberately slow, and the event loop keeps
serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from api.auth import (
    SESSION_COOKIE,
    VIEWER,
    AuthConfigDep,
    PrincipalDep,
    audit_entry,
    forbidden,
)
from api.deps import StoreDep, invalid_body, now_ms
from api.errors import DATABASE_DOWN, Responses
from api.schemas.auth import (
    CredentialPublic,
    LoginIn,
    PasswordIn,
    PrincipalPublic,
    SessionPublic,
    TokenCreatedPublic,
    TokenIn,
)
from api.schemas.common import ErrorPublic
from peakwatch.accounts import new_credential
from peakwatch.domain.access import AccessRole, CredentialKind, Principal, password_problem, within
from peakwatch.passwords import hash_password, needs_rehash, verify_password

log = logging.getLogger(__name__)

login_router = APIRouter(tags=["auth"])
"""The one data route without credentials."""
router = APIRouter(tags=["auth"])

_DUMMY_HASH: Final = hash_password("an unknown user's password")
"""Checked against when the user does not exist, so the answer takes as long as for a wrong password."""

LOGIN_REFUSED: Final[Responses] = {
    status.HTTP_401_UNAUTHORIZED: {"model": ErrorPublic, "description": "Unknown user or wrong password."},
    status.HTTP_429_TOO_MANY_REQUESTS: {
        "model": ErrorPublic,
        "description": "Too many failed logins for this user or from this address; see `Retry-After`.",
    },
}


@login_router.post(
    "/auth/login",
    response_model=SessionPublic,
    summary="Log in: a session token, also set as an HttpOnly cookie for the dashboard",
    responses={**LOGIN_REFUSED, **DATABASE_DOWN},
)
async def login(
    body: LoginIn, request: Request, response: Response, store: StoreDep, config: AuthConfigDep
) -> SessionPublic:
    now = now_ms()
    client = request.client.host if request.client is not None else ""
    user_key, client_key = f"user:{body.username.lower()}", f"client:{client}"
    wait_ms = config.throttle.attempt((user_key, client_key), now)  # counted before the slow check
    if wait_ms:
        seconds = -(-wait_ms // 1000)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed logins; retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    user = await store.access.get_user(body.username)
    stored_hash = _DUMMY_HASH if user is None else user.password_hash
    matches = await asyncio.to_thread(verify_password, stored_hash, body.password)
    if user is None or not matches or user.disabled_ms is not None:
        log.warning("failed login for user %r from %s", body.username, client)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="invalid user name or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    config.throttle.succeeded(user_key, (client_key,), now)
    if needs_rehash(user.password_hash):
        rehashed = await asyncio.to_thread(hash_password, body.password)
        await store.access.set_password(
            user.name, rehashed, must_change=user.must_change_password, now_ms=now, keep_session=None
        )
    credential, token = new_credential(
        CredentialKind.SESSION,
        user_name=user.name,
        name=client or "session",
        role=user.role,
        sites=user.sites,
        now_ms=now,
        ttl_ms=config.session_ttl_ms,
    )
    await store.access.add_credential(credential)
    assert credential.expires_ms is not None
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=config.session_ttl_ms // 1000,
        httponly=True,
        samesite="strict",
        secure=config.secure_cookie,
        path="/",
    )
    principal = Principal.of(user, f"session:{credential.id}")
    await store.access.audit(await audit_entry(request, principal, action="login"))
    return SessionPublic(
        token=token,
        expires_at=credential.expires_ms,
        principal=PrincipalPublic.from_principal(principal),
    )


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End the current session (an API token is revoked through /tokens instead)",
    responses={**DATABASE_DOWN},
)
async def logout(principal: PrincipalDep, store: StoreDep, request: Request) -> Response:
    kind, _, credential_id = principal.via.partition(":")
    if kind == CredentialKind.SESSION.value:
        await store.access.revoke_credential(credential_id, now_ms())
        await store.access.audit(await audit_entry(request, principal, action="logout"))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/me", response_model=PrincipalPublic, summary="Who the request is authenticated as")
async def me(principal: PrincipalDep) -> PrincipalPublic:
    return PrincipalPublic.from_principal(principal)


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Change your password (required first after a one-time password)",
    description="Ends your other sessions; API tokens stay valid.",
    responses={**DATABASE_DOWN},
)
async def change_password(
    body: PasswordIn, principal: PrincipalDep, store: StoreDep, request: Request
) -> Response:
    user = await store.access.get_user(principal.user_name)
    if user is None or not await asyncio.to_thread(
        verify_password, user.password_hash, body.current_password
    ):
        raise invalid_body("current_password", "the current password is wrong", "***")
    problem = password_problem(body.new_password, user.name)
    if problem is None and body.new_password == body.current_password:
        problem = "the new password must differ from the current one"
    if problem is not None:
        raise invalid_body("new_password", problem, "***")
    kind, _, credential_id = principal.via.partition(":")
    await store.access.set_password(
        user.name,
        await asyncio.to_thread(hash_password, body.new_password),
        must_change=False,
        now_ms=now_ms(),
        keep_session=credential_id if kind == CredentialKind.SESSION.value else None,
    )
    await store.access.audit(await audit_entry(request, principal, action="change password"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ------------------------------------------------------------------------------------------ tokens


@router.get(
    "/tokens",
    response_model=list[CredentialPublic],
    summary="API tokens and sessions: your own, or (global admins) anyone's",
    responses={**DATABASE_DOWN},
)
async def list_tokens(
    principal: PrincipalDep,
    store: StoreDep,
    user: Annotated[
        str | None, Query(max_length=64, description="Whose (global admins; default: your own).")
    ] = None,
    kind: Annotated[CredentialKind | None, Query(description="Only tokens or only sessions.")] = None,
) -> list[CredentialPublic]:
    owner = user or principal.user_name
    if owner != principal.user_name and not _is_global_admin(principal):
        raise forbidden("only an admin whose scope is every site sees other users' tokens")
    return [
        CredentialPublic.from_credential(c)
        for c in await store.access.list_credentials(user_name=owner, kind=kind)
    ]


@router.post(
    "/tokens",
    response_model=TokenCreatedPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[VIEWER],
    summary="Create an API token (never with more rights than its user)",
    responses={**DATABASE_DOWN},
)
async def create_token(body: TokenIn, principal: PrincipalDep, store: StoreDep) -> TokenCreatedPublic:
    owner_name = body.user or principal.user_name
    if owner_name != principal.user_name and not _is_global_admin(principal):
        raise forbidden("only an admin whose scope is every site makes tokens for other users")
    owner = await store.access.get_user(owner_name)
    if owner is None or owner.disabled_ms is not None:
        raise invalid_body("user", f"no active user {owner_name!r}", owner_name)
    role = body.role or owner.role
    sites = owner.sites if body.sites is None else tuple(body.sites)
    for granter in (principal, Principal.of(owner, "")):
        problem = within(role, sites, granter)
        if problem is not None:
            raise invalid_body("role" if "role" in problem else "sites", problem, body.role or body.sites)
    now = now_ms()
    ttl_ms = None if body.expires_in_days is None else body.expires_in_days * 86_400_000
    if principal.expires_ms is not None:  # a token made with an expiring credential expires no later
        ttl_ms = min(ttl_ms if ttl_ms is not None else principal.expires_ms - now, principal.expires_ms - now)
    credential, token = new_credential(
        CredentialKind.TOKEN,
        user_name=owner.name,
        name=body.name,
        role=role,
        sites=sites,
        now_ms=now,
        ttl_ms=ttl_ms,
    )
    stored = await store.access.add_credential(credential)
    return TokenCreatedPublic(token=token, credential=CredentialPublic.from_credential(stored))


@router.delete(
    "/tokens/{credential_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[VIEWER],
    summary="Revoke a token or end a session (your own, or anyone's for global admins)",
    responses={
        status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "No such active token."},
        **DATABASE_DOWN,
    },
)
async def revoke_token(credential_id: str, principal: PrincipalDep, store: StoreDep) -> Response:
    found = await store.access.credential_and_user(credential_id)
    if (
        found is None
        or found[0].revoked_ms is not None
        or (found[0].user_name != principal.user_name and not _is_global_admin(principal))
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no active token {credential_id!r} of yours")
    await store.access.revoke_credential(credential_id, now_ms())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _is_global_admin(principal: Principal) -> bool:
    return principal.may(AccessRole.ADMIN)
