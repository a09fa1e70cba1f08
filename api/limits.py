"""The connection after a refused body: closed.

The body-size limits themselves are Starlette's (``FastAPI(max_body_size=...)`` and the login
router's own, set in ``api.app.create_app``): pure ASGI, a 413 as soon as ``Content-Length`` or the
bytes received pass the limit, before the body is buffered. uvicorn then discards the rest of the body
but keeps the connection, so a client could go on sending hundreds of megabytes into it;
``close_after_413`` answers ``Connection: close``, and the server hangs up once the 413 is out.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def close_after_413(app: ASGIApp) -> ASGIApp:
    """``app`` whose 413 responses close the connection."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 413:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, send_closing)

    return wrapped
