"""Error responses: the documented shapes (for ``responses=``) and the StoreError handler.

A database failure during a query is an outage, not a bug: it becomes 503 so monitoring and scripts
can tell "retry later" from "your request is wrong". The client learns only that (the store's message
names the database's host and port, which is nobody's business on the login route); the log has it.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Final

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.schemas.common import ErrorPublic
from peakwatch.domain.access import redact
from peakwatch.errors import ConflictError, StoreError

Responses = dict[int | str, dict[str, Any]]
log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE: Final = "database unavailable; retry later"
MAX_ECHO_CHARS: Final = 200
"""A 422 echoes at most this much of the rejected input."""

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
    log.warning("%s %s: database unavailable (503): %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": DATABASE_UNAVAILABLE},
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


def _brief(value: Any) -> Any:
    """The rejected ``input`` as echoed to the client: secret-named fields masked (``redact``), and
    nothing long (a megabyte of input is not sent back: say how long it was)."""
    value = redact(value)
    if isinstance(value, str) and len(value) > MAX_ECHO_CHARS:
        return f"{value[:MAX_ECHO_CHARS]}… ({len(value)} characters)"
    if isinstance(value, dict | list) and len(json.dumps(value, default=str)) > MAX_ECHO_CHARS:
        return f"({type(value).__name__} of {len(value)} items, not shown)"
    return value


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, made encodable whatever the rejected input was, echoing only a brief input."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {**error, "input": _brief(error["input"])} if "input" in error else error
        for error in jsonable_encoder(exc.errors())
    ]
    content = {"detail": _finite(errors)}
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content=content)
