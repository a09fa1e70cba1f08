"""Liveness and readiness for orchestrators and the operator's first look.

``/healthz`` answers 200 while the database answers, even if another component is down (status
``degraded``): restarting the API would not fix the collector. It is 503 only when the database, the
one thing every data route needs, does not answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Literal

from fastapi import APIRouter, Response, status

from api.deps import HealthProbeDep, StoreDep
from api.health import ComponentStatus, probe_components
from api.schemas import ComponentPublic, HealthPublic, ReadyPublic
from peakwatch.store import Store

PING_TIMEOUT_S: Final = 2.0
"""A ping slower than this counts as down: the probe must answer before the orchestrator's timeout."""

router = APIRouter(tags=["health"])


async def ping_database(store: Store) -> ComponentStatus:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await store.ping()
    except TimeoutError:
        return ComponentStatus(name="database", ok=False, detail=f"no answer within {PING_TIMEOUT_S:g} s")
    except Exception as exc:  # any failure of the check is a failed check, never a 500
        return ComponentStatus(name="database", ok=False, detail=f"{type(exc).__name__}: {exc}")
    elapsed_ms = (time.perf_counter() - started) * 1000
    return ComponentStatus(name="database", ok=True, detail=f"ping {elapsed_ms:.1f} ms")


@router.get(
    "/healthz",
    response_model=HealthPublic,
    summary="Liveness and component status",
    responses={
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": HealthPublic,
            "description": "The database does not answer (status `down`).",
        }
    },
)
async def healthz(store: StoreDep, probe: HealthProbeDep, response: Response) -> HealthPublic:
    database = await ping_database(store)
    components = [] if probe is None else await probe_components(probe)
    state: Literal["ok", "degraded", "down"]
    if not database.ok:
        state = "down"
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    elif all(c.ok for c in components):
        state = "ok"
    else:
        state = "degraded"
    return HealthPublic(
        status=state,
        database=ComponentPublic.from_status(database),
        components=[ComponentPublic.from_status(c) for c in components],
    )


@router.get(
    "/readyz",
    response_model=ReadyPublic,
    summary="Readiness: can this instance serve data now?",
    responses={
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": ReadyPublic,
            "description": "Not ready: the database does not answer.",
        }
    },
)
async def readyz(store: StoreDep, response: Response) -> ReadyPublic:
    database = await ping_database(store)
    if not database.ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return ReadyPublic(ready=False, detail=f"database: {database.detail}")
    return ReadyPublic(ready=True, detail=f"database: {database.detail}")
