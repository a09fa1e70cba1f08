"""Error responses: the documented shapes (for ``responses=``) and the StoreError handler.

A database failure during a query is an outage, not a bug: it becomes 503 with the store's message
so monitoring and scripts can tell "retry later" from "your request is wrong".
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request, status
from fastapi.responses import JSONResponse

from api.schemas import ErrorPublic
from peakwatch.errors import StoreError

Responses = dict[int | str, dict[str, Any]]

UNKNOWN_SITE: Final[Responses] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "Unknown site: `unknown site 'x'`."},
}
DATABASE_DOWN: Final[Responses] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorPublic,
        "description": "The database did not answer; retry later.",
    },
}


async def store_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoreError)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"database unavailable: {exc}"},
        headers={"Retry-After": "5"},
    )
