"""Helpers shared by the tests (fixtures live in tests/fixtures/)."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import psutil  # type: ignore[import-untyped]
from fastapi import FastAPI
from fastapi.routing import APIRoute

from peakwatch.accounts import new_credential, new_user
from peakwatch.domain.access import AccessRole, CredentialKind
from peakwatch.net import free_port
from peakwatch.store import Store

__all__ = ["api_routes", "bearer", "eventually", "free_port", "processes_of", "watchdog_of"]


def api_routes(app: FastAPI) -> list[Any]:
    """The app's ``APIRoute``s with their full paths, those of included routers too. FastAPI >= 0.138
    keeps an included router whole in ``app.routes`` (which then lists none of its routes) and walks
    it with ``fastapi.routing.iter_route_contexts``; older ones copy the routes into ``app.routes``.
    Each item has the ``path``, ``methods``, ``status_code``, ``response_model`` and ``dependencies``
    of an ``APIRoute``. Never empty: a check over no routes would pass whatever the app does."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    if walk is None:
        routes: list[Any] = [r for r in app.routes if isinstance(r, APIRoute)]
    else:
        routes = [c for c in walk(app.routes) if isinstance(c.original_route, APIRoute)]
    assert routes, "no API route found: FastAPI changed how an app lists its routes"
    return routes


async def bearer(
    store: Store,
    role: AccessRole = AccessRole.ADMIN,
    sites: tuple[str, ...] | None = None,
    *,
    user: str | None = None,
) -> dict[str, str]:
    """``Authorization`` headers of a new API token for a new user with ``role`` over ``sites``
    (``None``: every site), made through the same code as ``POST /api/v1/users`` and ``/tokens``."""
    now = int(time.time() * 1000)
    name = user or f"test-{role.value}-{uuid.uuid4().hex[:8]}"
    account, _ = new_user(name, role, sites, uuid.uuid4().hex, now)  # not one-time: usable at once
    await store.access.add_user(account)
    credential, token = new_credential(
        CredentialKind.TOKEN, user_name=name, name="tests", role=role, sites=sites, now_ms=now, ttl_ms=None
    )
    await store.access.add_credential(credential)
    return {"Authorization": f"Bearer {token}"}


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    what: str | Callable[[], str] = "condition",
    *,
    timeout_s: float = 30.0,
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, and return that.

    For states that offer no event to await (a row in another process's database, an HTTP answer).
    Assertion and HTTP errors count as "not yet"; the last one is reported when the deadline passes,
    after ``what`` (a callable is asked only then, e.g. for the logs of the processes involved).
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last = result
        except (AssertionError, httpx.HTTPError) as exc:
            last = exc
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"{said}: not reached within {timeout_s} s; last: {last!r}")
        await asyncio.sleep(0.02)


def processes_of(data_dir: Path) -> list[str]:
    """The processes still running on (or guarding) the embedded PostgreSQL cluster in ``data_dir``,
    one ``pid: command line`` each: the postmaster and the watchdog name the directory (the server's
    other processes end with their postmaster)."""
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmd:
            out.append(f"{proc.pid}: {cmd}")
    return out


def watchdog_of(pid: int) -> psutil.Process:
    """The embedded PostgreSQL watchdog that process ``pid`` spawned (peakwatch/embedded/ownership.py)."""
    kids = psutil.Process(pid).children()
    kids = [p for p in kids if "peakwatch.embedded.watchdog" in " ".join(p.cmdline())]
    assert len(kids) == 1, f"expected one watchdog of pid {pid}, found {kids}"
    return kids[0]
