"""Liveness and readiness for orchestrators and the operator's first look.

``/healthz`` is liveness: it answers 200 whenever this process can answer at all, with status ``ok``
or ``degraded`` and what is wrong. A database that does not answer makes it ``degraded``, not 503:
the collector keeps accepting readings into the on-disk spool meanwhile, and an orchestrator that
restarted the process would only make things worse. ``/readyz`` is readiness to serve data: 503
while the database does not answer, so a load balancer sends requests elsewhere.
Neither needs credentials, and neither says more than component names and states.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final, Literal

from fastapi import APIRouter, Response, status

from api.deps import HealthProbeDep, StoreDep
from api.health import ComponentStatus, probe_components
from api.schemas.health import ComponentPublic, HealthPublic, ReadyPublic
from peakwatch.store import Store

PING_TIMEOUT_S: Final = 2.0
"""A ping slower than this counts as down: the probe must answer before the orchestrator's timeout."""

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


async def ping_database(store: Store) -> ComponentStatus:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await store.ping()
    except TimeoutError:
        return ComponentStatus(name="database", ok=False, detail=f"no answer within {PING_TIMEOUT_S:g} s")
    except Exception as exc:  # any failure of the check is a failed check, never a 500
        # The message names the database's host and port: the log has it, the public answer does not.
        log.warning("health check: database ping failed: %s: %s", type(exc).__name__, exc)
        return ComponentStatus(name="database", ok=False, detail=f"{type(exc).__name__} (details in the log)")
    elapsed_ms = (time.perf_counter() - started) * 1000
    return ComponentStatus(name="database", ok=True, detail=f"ping {elapsed_ms:.1f} ms")


@router.get(
    "/healthz",
    response_model=HealthPublic,
    summary="Liveness and component status",
)
async def healthz(store: StoreDep, probe: HealthProbeDep) -> HealthPublic:
    database = await ping_database(store)
    components = [] if probe is None else await probe_components(probe)
    state: Literal["ok", "degraded"] = "ok" if database.ok and all(c.ok for c in components) else "degraded"
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
