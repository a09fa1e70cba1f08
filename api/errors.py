"""Error responses: the documented shapes (for ``responses=``) and the StoreError handler.

A database failure during a query is an outage, not a bug: it becomes 503 with the store's message
so monitoring and scripts can tell "retry later" from "your request is wrong".
"""

from __future__ import annotations

import math
from typing import Any, Final

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.schemas import ErrorPublic
from peakwatch.errors import StoreError
from peakwatch.store.errors import ConflictError

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
    if isinstance(exc, ConflictError):  # a stored row decided it (a duplicate made at the same moment)
        return JSONResponse(status_code=status.HTTP_409_CONFLICT, content={"detail": str(exc)})
    if exc.bad_input:  # the database refused the values (e.g. a NUL character in text): the client's error
        # in the documented 422 shape (FastAPI's HTTPValidationError), so clients parse one format
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={
                "detail": [
                    {"type": "value_error", "loc": ["body"], "msg": f"the database refused a value: {exc}"}
                ]
            },
        )
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"database unavailable: {exc}"},
        headers={"Retry-After": "5"},
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a request body may carry them (Python's parser accepts the bare
    tokens), and echoing them back in the error would fail to encode (a 500 instead of a 422)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, made encodable whatever the rejected input was."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": _finite(jsonable_encoder(exc.errors()))},
    )
