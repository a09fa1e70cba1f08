"""The request-size limit peakwatch relies on is FastAPI's own (``max_body_size``, api/app.py): on a FastAPI
that lacks it the argument would be ignored and there would be no limit at all. The floor in pyproject
must therefore be a FastAPI that refuses an oversized body; this runs on the lowest versions in CI."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI, Request


async def test_fastapi_at_our_floor_refuses_bodies_over_the_limit() -> None:
    app = FastAPI(max_body_size=1024)
    small = APIRouter()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @small.post("/login")
    async def login(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.include_router(small, prefix="/small", max_body_size=16)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/echo", content=b"x" * 1024)).json() == {"bytes": 1024}
        assert (await client.post("/echo", content=b"x" * 1025)).status_code == 413
        assert (await client.post("/small/login", content=b"x" * 16)).status_code == 200
        assert (await client.post("/small/login", content=b"x" * 17)).status_code == 413
