"""Authentication and authorisation of every API route (docs/security.md has the table).

A request proves who it is with ``Authorization: Bearer <token>`` (an API token, ``pwt_…``, or the
session token the login returned, ``pws_…``) or with the session cookie the login set for the
dashboard. ``current_principal`` turns that into a ``Principal`` (role and site scope) or answers 401;
``allow(role)`` answers 403 below that role; ``allow_global(role)`` also needs every site in scope.
Routes under ``/sites/{site_id}`` check the scope through ``api.deps.get_site`` (403 outside it, before
telling whether the site exists). Every change (any method but GET/HEAD/OPTIONS) that succeeded is
written to the audit log by the same dependency, with secrets in the body replaced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from api.state import StoreDep
from peakwatch.clock import now_ms
from peakwatch.domain.access import (
    AccessRole,
    AuditEntry,
    LoginThrottle,
    Principal,
    credential_problem,
    narrower,
    parse_token,
    redact,
    secret_matches,
)
from peakwatch.errors import StoreError
from peakwatch.store import Store

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "peakwatch_session"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
PASSWORD_CHANGE_PATHS: Final = frozenset({"/api/v1/auth/password", "/api/v1/auth/me", "/api/v1/auth/logout"})
"""All a user with a one-time password may do until it is changed."""
MAX_AUDIT_BODY_BYTES: Final = 16_384

_bearer = HTTPBearer(auto_error=False, description="An API token (`pwt_…`) or a session token (`pws_…`).")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="The dashboard's session cookie.")


@dataclass
class AuthConfig:
    """Per-app authentication state (on ``app.state.auth``)."""

    session_ttl_ms: int = 12 * 3_600_000
    secure_cookie: bool = False
    """Set the cookie's ``Secure`` flag: on whenever the API is served over HTTPS (a proxy in front)."""
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


async def authenticate(store: Store, token: str, at_ms: int) -> Principal:
    """The principal a token stands for; 401 with the reason (never which part was wrong)."""
    parsed = parse_token(token)
    if parsed is None:
        raise _unauthorised("malformed token: expected pwt_… or pws_…")
    kind, credential_id, secret = parsed
    found = await store.access.credential_and_user(credential_id)
    if found is None or found[0].kind is not kind or not secret_matches(secret, found[0]):
        raise _unauthorised("invalid token")
    credential, user = found
    problem = credential_problem(credential, at_ms)
    if problem is not None:
        raise _unauthorised(f"{kind.value} {problem}")
    if user.disabled_ms is not None:
        raise _unauthorised("user disabled")
    role, sites = narrower(user, credential)
    await store.access.touch_credential(credential_id, at_ms)
    return Principal(
        user_name=user.name,
        role=role,
        sites=sites,
        via=f"{kind.value}:{credential_id}",
        must_change_password=user.must_change_password,
        expires_ms=credential.expires_ms,
    )


def _same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this very origin (scheme, host and
    port): ``Sec-Fetch-Site`` where the browser sends it, else ``Origin`` against the Host header."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None:
        return False  # a browser sends Origin with every cross-origin and same-origin POST
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


async def current_principal(
    request: Request,
    store: StoreDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    token = bearer.credentials if bearer is not None else cookie
    if not token:
        raise _unauthorised("authentication required: send Authorization: Bearer <token>, or log in")
    if bearer is None and request.method not in SAFE_METHODS and not _same_origin(request):
        # The browser sends the session cookie with any request to this site, also from another port
        # or subdomain of it (SameSite=Strict stops other sites only): a change needs our own page.
        raise forbidden(
            "cross-origin request refused: a change made with the session cookie must come "
            "from peakwatch's own page (or use Authorization: Bearer)"
        )
    principal = await authenticate(store, token, now_ms())
    if principal.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise forbidden("change your one-time password first: POST /api/v1/auth/password")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def allow(role: AccessRole, *, global_scope: bool = False) -> Callable[..., AsyncIterator[Principal]]:
    """The dependency of a route that needs ``role`` (and, with ``global_scope``, every site in scope).

    For a change, it also writes the audit entry: ``started`` before the handler runs, then how it
    ended (the dependency's exit runs before the response is sent: ``scope="function"`` where it is
    used).
    """

    async def dependency(
        request: Request, principal: PrincipalDep, store: StoreDep
    ) -> AsyncIterator[Principal]:
        if not principal.role.includes(role):
            raise forbidden(f"this needs the {role.value} role; you have {principal.role.value}")
        if global_scope and not principal.global_scope:
            raise forbidden(f"this needs an {role.value} whose scope is every site")
        if request.method in SAFE_METHODS:
            yield principal
            return
        # The entry is written before the change, so there is no change without one; if it cannot be
        # written, the request fails here and nothing is changed.
        audit_id = await store.access.audit(await audit_entry(request, principal, outcome="started"))
        try:
            yield principal
        except HTTPException as exc:
            await _finish(store, request, audit_id, f"refused: {exc.status_code} {exc.detail}")
            raise
        except RequestValidationError:
            await _finish(store, request, audit_id, "refused: 422 invalid input")
            raise
        except Exception as exc:
            await _finish(store, request, audit_id, f"failed: {type(exc).__name__}")
            raise
        await _finish(store, request, audit_id, "ok")

    return dependency


def audited(role: AccessRole, *, global_scope: bool = False) -> Any:
    """``Depends(allow(role))`` with the exit before the response: the audit entry is complete when the
    client sees the answer."""
    return Depends(allow(role, global_scope=global_scope), scope="function")


VIEWER: Final = audited(AccessRole.VIEWER)
OPERATOR: Final = audited(AccessRole.OPERATOR)
ADMIN: Final = audited(AccessRole.ADMIN)
GLOBAL_ADMIN: Final = audited(AccessRole.ADMIN, global_scope=True)


async def _finish(store: Store, request: Request, audit_id: int, outcome: str) -> None:
    """Complete a ``started`` entry. A failure here is logged, not raised: the change itself is done
    (or refused) and the entry says ``started``, which is the truth as far as the log can tell."""
    try:
        await store.access.finish_audit(
            audit_id, outcome[:500], getattr(request.state, "audit_site_id", None)
        )
    except StoreError as exc:
        log.warning("audit entry %d stays 'started': %s", audit_id, exc)


def audit_site(request: Request, site_id: str | None) -> None:
    """For a handler whose site is not in its path (a device in the body, an alert by id): the site
    its audit entry records."""
    request.state.audit_site_id = site_id


async def audit_entry(
    request: Request, principal: Principal, *, action: str | None = None, outcome: str = "ok"
) -> AuditEntry:
    """What the audit log keeps of a request: route template, path parameters, query and the JSON body
    with secret fields replaced (a body that is not JSON is recorded by its size only)."""
    template = route_template(request)
    params = dict(request.path_params)
    detail: dict[str, Any] = {}
    if request.query_params:
        detail["query"] = dict(request.query_params)
    body = await request.body()
    if body:
        try:
            detail["body"] = json.loads(body) if len(body) <= MAX_AUDIT_BODY_BYTES else "(too long)"
        except (ValueError, RecursionError):  # not JSON, or nested too deep to decode
            detail["body"] = f"({len(body)} bytes, not JSON)"
    client = request.client.host if request.client is not None else ""
    return AuditEntry(
        at_ms=now_ms(),
        actor=principal.user_name,
        via=principal.via,
        action=action or f"{request.method} {template}",
        site_id=params.pop("site_id", None),
        target="/".join(f"{k}={v}" for k, v in params.items()),
        detail=redact(detail),
        client=client,
        outcome=outcome,
    )


def route_template(request: Request) -> str:
    """``/api/v1/sites/{site_id}/targets`` for ``/api/v1/sites/dc-1/targets``. The matched route knows
    only its own router's part of the template (``/sites/{site_id}/targets``); the prefixes of the
    routers it was included in are the leading segments of the actual path (a path parameter never
    contains ``/``)."""
    route_format = getattr(request.scope.get("route"), "path_format", None)
    if route_format is None:
        return request.url.path
    segments = request.url.path.split("/")
    prefix = segments[: len(segments) - len(route_format.split("/")) + 1]
    return "/".join(prefix) + str(route_format)


def auth_config(request: Request) -> AuthConfig:
    config = getattr(request.app.state, "auth", None)
    assert isinstance(config, AuthConfig)
    return config


AuthConfigDep = Annotated[AuthConfig, Depends(auth_config)]


def scope_of(principal: Principal, site_id: str | None = None) -> list[str] | None:
    """The sites a list route may return for ``principal``: ``None`` for every site. A ``site_id``
    filter outside the scope is a 403 (as on the site's own routes)."""
    if site_id is not None and not principal.sees(site_id):
        raise forbidden(f"site {site_id!r} is outside your scope")
    return None if principal.sites is None else sorted(principal.sites)
