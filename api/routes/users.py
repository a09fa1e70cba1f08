"""Users of the API and the dashboard, and the audit log: global admins only.

The last admin whose scope is every site cannot be deleted, disabled, demoted or narrowed (409): someone
must always be able to manage users. The store checks it in the changing transaction.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from api.auth import GLOBAL_ADMIN
from api.deps import LimitQuery, StoreDep, invalid_body, now_ms
from api.errors import DATABASE_DOWN, Responses
from api.schemas.common import ErrorPublic
from api.schemas.users import AuditEntryPublic, UserCreatedPublic, UserIn, UserPatchIn, UserPublic
from peakwatch.accounts import new_user
from peakwatch.domain.access import password_problem
from peakwatch.passwords import hash_password, new_password
from peakwatch.store import Store

router = APIRouter(tags=["users"])

UserName = Annotated[str, Path(max_length=64, description="User name.")]
UNKNOWN_USER: Responses = {status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "Unknown user."}}
LAST_ADMIN: Responses = {
    status.HTTP_409_CONFLICT: {
        "model": ErrorPublic,
        "description": "It would leave no enabled admin whose scope is every site.",
    }
}


def _unknown_user(name: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown user {name!r}")


async def _known_sites(store: Store, sites: list[str] | None) -> None:
    if sites is None:
        return
    known = {s.id for s in await store.list_sites()}
    unknown = sorted(set(sites) - known)
    if unknown:
        raise invalid_body("sites", f"unknown sites: {', '.join(unknown)}", sites)


@router.get("/users", response_model=list[UserPublic], dependencies=[GLOBAL_ADMIN], summary="List users")
async def list_users(store: StoreDep) -> list[UserPublic]:
    return [UserPublic.from_user(u) for u in await store.access.list_users()]


@router.post(
    "/users",
    response_model=UserCreatedPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[GLOBAL_ADMIN],
    summary="Add a user",
    responses={
        status.HTTP_409_CONFLICT: {"model": ErrorPublic, "description": "The user exists."},
        **DATABASE_DOWN,
    },
)
async def add_user(body: UserIn, store: StoreDep) -> UserCreatedPublic:
    await _known_sites(store, body.sites)
    if body.password is not None:
        problem = password_problem(body.password, body.name)
        if problem is not None:
            raise invalid_body("password", problem, "***")
    user, password = await asyncio.to_thread(
        new_user, body.name, body.role, body.sites, body.password, now_ms()
    )
    stored = await store.access.add_user(user)
    return UserCreatedPublic(
        user=UserPublic.from_user(stored), one_time_password=password if body.password is None else None
    )


@router.get(
    "/users/{name}",
    response_model=UserPublic,
    dependencies=[GLOBAL_ADMIN],
    summary="One user",
    responses={**UNKNOWN_USER},
)
async def get_user(name: UserName, store: StoreDep) -> UserPublic:
    user = await store.access.get_user(name)
    if user is None:
        raise _unknown_user(name)
    return UserPublic.from_user(user)


@router.patch(
    "/users/{name}",
    response_model=UserPublic,
    dependencies=[GLOBAL_ADMIN],
    summary="Change a user's role or scope, disable or enable it",
    description="Disabling revokes every session and token of the user at once.",
    responses={**UNKNOWN_USER, **LAST_ADMIN, **DATABASE_DOWN},
)
async def patch_user(name: UserName, body: UserPatchIn, store: StoreDep) -> UserPublic:
    user = await store.access.get_user(name)
    if user is None:
        raise _unknown_user(name)
    await _known_sites(store, body.sites)
    updated = await store.access.update_user(
        name,
        role=body.role,
        sites=body.sites,
        all_sites=body.all_sites,
        disabled_ms=now_ms() if body.disabled else None,
        enable=body.disabled is False,
    )
    if updated is None:
        raise _unknown_user(name)
    return UserPublic.from_user(updated)


@router.delete(
    "/users/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[GLOBAL_ADMIN],
    summary="Delete a user and its tokens (the audit log keeps its name)",
    responses={**UNKNOWN_USER, **LAST_ADMIN, **DATABASE_DOWN},
)
async def delete_user(name: UserName, store: StoreDep) -> Response:
    user = await store.access.get_user(name)
    if user is None:
        raise _unknown_user(name)
    await store.access.delete_user(name)  # ConflictError (409) for the last admin of every site
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/users/{name}/reset-password",
    response_model=UserCreatedPublic,
    dependencies=[GLOBAL_ADMIN],
    summary="Give a user a new one-time password (ends its sessions)",
    responses={**UNKNOWN_USER, **DATABASE_DOWN},
)
async def reset_password(name: UserName, store: StoreDep) -> UserCreatedPublic:
    user = await store.access.get_user(name)
    if user is None:
        raise _unknown_user(name)
    password = new_password()
    await store.access.set_password(
        name, await asyncio.to_thread(hash_password, password), must_change=True, now_ms=now_ms()
    )
    updated = await store.access.get_user(name)
    assert updated is not None
    return UserCreatedPublic(user=UserPublic.from_user(updated), one_time_password=password)


@router.get(
    "/audit",
    response_model=list[AuditEntryPublic],
    dependencies=[GLOBAL_ADMIN],
    summary="The audit log, newest first",
    description="Every change made through the API or the CLI: who, through which credential, what, where. "
    "Secret fields of the input are replaced by `***`.",
    responses={**DATABASE_DOWN},
)
async def list_audit(
    store: StoreDep,
    actor: Annotated[str | None, Query(max_length=64, description="Only this user.")] = None,
    site_id: Annotated[str | None, Query(max_length=100, description="Only changes at this site.")] = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**62, description="Page back: entries before this id.")
    ] = None,
    limit: LimitQuery = 100,
) -> list[AuditEntryPublic]:
    entries = await store.access.list_audit(limit=limit, actor=actor, site_id=site_id, before_id=before_id)
    return [AuditEntryPublic.from_entry(e) for e in entries]
