"""What ``create_app`` put on ``app.state``, read back per request (lowest layer of ``api``: ``api.auth``
and ``api.deps`` both build on it).

The getters are ``async def`` although they do not await: FastAPI runs plain ``def`` dependencies
in its thread pool, a needless hop per request.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from api.health import HealthProbe
from peakwatch.config import Registry, Settings
from peakwatch.store import Store


async def get_store(request: Request) -> Store:
    return cast(Store, request.app.state.store)


async def get_registry(request: Request) -> Registry:
    return cast(Registry, request.app.state.registry)


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_health_probe(request: Request) -> HealthProbe | None:
    return cast(HealthProbe | None, request.app.state.health)


StoreDep = Annotated[Store, Depends(get_store)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
HealthProbeDep = Annotated[HealthProbe | None, Depends(get_health_probe)]
