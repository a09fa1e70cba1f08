"""The application factory. The composition root owns and closes the store; the app only borrows it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Depends, FastAPI, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

import peakwatch
from api.auth import AuthConfig, current_principal
from api.errors import DATABASE_DOWN, store_error_handler, validation_error_handler
from api.health import HealthProbe
from api.routes import (
    accounting,
    alerts,
    auth,
    dead_letters,
    devices,
    factors,
    kpis,
    meters,
    notifications,
    rules,
    silences,
    sites,
    targets,
    users,
)
from api.routes import health as health_routes
from api.routes import metrics as metrics_routes
from api.schemas.common import ErrorPublic
from api.stream import AlertBroadcaster, close_streams
from peakwatch.config import Registry, Settings
from peakwatch.errors import StoreError
from peakwatch.store import Store

API_PREFIX = "/api/v1"
WEB_DIR: Final = Path(__file__).parent / "web"
"""The built-in dashboard: plain files shipped in the package (no build step, no CDN)."""


OPENAPI_TAGS: Final = {
    "health": "Liveness, readiness and component status (no credentials).",
    "auth": "Login (the one data route without credentials), the caller's identity and password, API tokens.",
    "users": "Users and the audit log (admins whose scope is every site).",
    "devices": "Broker credentials of devices and collectors (admins).",
    "sites": "Sites and their grid emission factor.",
    "kpis": "KPI windows of every period, their revisions and the restatement queue (values under 12 "
    "months are interim: see `interim_note`).",
    "meters": "Meters, whether they report, and their replacements.",
    "accounting": "Monthly inputs of market-based and intensity KPIs: green certificates and contracts, "
    "value added.",
    "targets": "Carbon-peak targets and their progress.",
    "factors": "Versioned emission and conversion factors, factor sets.",
    "alerts": "Threshold-rule alerts and their live stream.",
    "notifications": "Silences (mute notifications for a while) and the delivery log.",
    "dead letters": "Refused input, kept with the reason.",
    "metrics": "Prometheus exposition (no credentials: scrape it from the monitoring network).",
}
"""The route groups of the OpenAPI document, in the order the document lists them."""

DATA_ROUTERS: Final = (
    auth,
    sites,
    kpis,
    meters,
    accounting,
    targets,
    factors,
    alerts,
    silences,
    notifications,
    dead_letters,
    users,
    devices,
    rules,
)
"""Route modules whose every route needs credentials, in the order the document lists their paths."""


def create_app(
    store: Store,
    registry: Registry,
    settings: Settings,
    *,
    health: HealthProbe | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """A FastAPI app serving ``store`` (connected and migrated by the caller).

    ``registry`` supplies the factor library behind site details; ``settings`` the window size and
    lateness quoted in messages and range limits; ``health`` the status of the other components for
    ``/healthz``; ``metrics_registry``, when given, is exposed at ``/metrics`` (absent otherwise).

    The app's lifespan ends its live alert streams; a server that waits for open responses before
    running the lifespan's end (uvicorn) needs ``api.stream.close_streams(app)`` first.
    """
    app = FastAPI(
        lifespan=_lifespan,
        # Starlette's pure ASGI body limit: 413 once Content-Length or the bytes received pass it,
        # before the body is buffered (a 300 MiB login must not take the collector's memory).
        max_body_size=settings.max_body_bytes,
        title="peakwatch",
        version=peakwatch.__version__,
        summary="Live PUE, electrification rate and carbon intensity of industrial parks and data centres.",
        openapi_tags=[{"name": name, "description": text} for name, text in OPENAPI_TAGS.items()],
    )
    app.state.store = store
    app.state.registry = registry
    app.state.settings = settings
    app.state.health = health
    app.state.metrics_registry = metrics_registry
    app.state.alert_stream = AlertBroadcaster(store)
    app.state.auth = AuthConfig(session_ttl_ms=settings.session_ttl_ms, secure_cookie=settings.cookie_secure)
    app.add_exception_handler(StoreError, store_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    _include_routers(app, settings, metrics=metrics_registry is not None)
    _mount_dashboard(app)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await close_streams(app)


def _include_routers(app: FastAPI, settings: Settings, *, metrics: bool) -> None:
    """Health first, then login (no credentials), then the data routes, then ``/metrics``."""
    # Every data route needs credentials (api.auth): the router-level dependency answers 401 without;
    # each route adds the role it needs (403 below it) and the site scope (403 outside it).
    api = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(current_principal)],
        responses={
            status.HTTP_401_UNAUTHORIZED: {"model": ErrorPublic, "description": "No valid credentials."},
            status.HTTP_403_FORBIDDEN: {
                "model": ErrorPublic,
                "description": "Below the role the route needs, or a site outside your scope.",
            },
            **DATABASE_DOWN,  # checking the credentials needs the database
        },
    )
    for module in DATA_ROUTERS:
        api.include_router(module.router)
    public = APIRouter(prefix=API_PREFIX)
    public.include_router(auth.login_router, max_body_size=settings.max_login_body_bytes)
    app.include_router(health_routes.router)
    app.include_router(public)
    app.include_router(api)
    if metrics:
        app.include_router(metrics_routes.router)


def _mount_dashboard(app: FastAPI) -> None:
    """The dashboard is public static files: it holds no data, and every call it makes needs the
    session cookie. Plain Starlette routes keep it out of the OpenAPI schema and the API's route checks."""

    async def index(request: Request) -> FileResponse:
        # no-cache (revalidate every load, cheap with the ETag): an upgrade is seen at the next load.
        # The policy allows this origin only: no CDN, no inline script, no framing.
        return FileResponse(
            WEB_DIR / "index.html",
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            },
        )

    app.add_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/assets", _RevalidatedFiles(directory=WEB_DIR), name="assets")


class _RevalidatedFiles(StaticFiles):
    """Module URLs do not change between releases, so the browser must revalidate them (ETag) rather
    than guess a cache lifetime and run yesterday's app.js under today's index.html."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response
