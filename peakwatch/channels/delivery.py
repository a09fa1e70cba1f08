"""What every channel's sender shares: the failure it raises, the letter it is given, and the HTTP POST
with its verdict, all keeping secrets out of what they say.

Every failure becomes a ``DeliveryError`` whose ``detail`` goes into the delivery log and the API, and
whose ``retryable`` tells the notifier whether to try again: a refused token (HTTP 403, ``errcode``
93000) fails the same way on every attempt and would only flood the robot, while a timeout, an HTTP
5xx or a robot's rate limit is worth the next attempt.

Robot tokens live in their URLs (``?key=``, ``?access_token=``, the path of a Feishu or Slack hook), so
a detail never quotes a URL: it names ``scheme://host:port`` only, and every configured secret that
shows up in a server's or library's message is replaced by ``***`` before it is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

import httpx
import msgspec

from peakwatch.channels.checks import scheme
from peakwatch.channels.text import Message
from peakwatch.domain.notifications import Notification
from peakwatch.errors import DeliveryError
from peakwatch.redaction import URL_IN_TEXT

_DETAIL_MAX: Final = 300
_RETRYABLE_HTTP: Final = frozenset({408, 429})


class Letter(msgspec.Struct, frozen=True, kw_only=True):
    """What a sender is given: the notification, its rendered text, and the public address links in it
    point at."""

    notification: Notification
    message: Message
    public_url: str = ""


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: object,
    *,
    timeout_s: float,
    secrets: Iterable[str | None],
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST ``body`` as JSON; a transport failure or an HTTP status >= 300 raises. The exception
    chain is dropped (``from None``): httpx's exceptions carry the request URL and its token."""
    where = origin(url)
    secrets = list(secrets)
    try:
        response = await client.post(
            url,
            params=params,
            content=msgspec.json.encode(body),
            headers={"Content-Type": "application/json", **(headers or {})},
            timeout=timeout_s,
        )
    except httpx.TimeoutException:
        raise DeliveryError(f"no answer from {where} within {timeout_s:g} s", retryable=True) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        detail = f"unusable address {where}: {scrub(str(exc), secrets)}"
        raise DeliveryError(detail, retryable=False) from None
    except httpx.LocalProtocolError as exc:  # a header it refused, quoted whole (secret and all)
        raise DeliveryError(f"cannot send to {where}: {type(exc).__name__}", retryable=False) from None
    except httpx.HTTPError as exc:
        reason = scrub(str(exc), secrets) or type(exc).__name__
        raise DeliveryError(f"cannot reach {where}: {reason}", retryable=True) from None
    status = response.status_code
    if status >= 300:
        excerpt = scrub(response.text, secrets)
        raise DeliveryError(
            f"HTTP {status} from {where}" + (f": {excerpt}" if excerpt else ""),
            retryable=status >= 500 or status in _RETRYABLE_HTTP,
        )
    return response


def check_answer(
    response: httpx.Response,
    service: str,
    code_keys: tuple[str, ...],
    message_keys: tuple[str, ...],
    retryable_codes: frozenset[int],
    secrets: Iterable[str | None],
) -> None:
    """Robot APIs answer HTTP 200 even when they refuse: the verdict is the body's error code. An
    answer without one is refused too (the URL points at something that is not the robot)."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    code = None
    if isinstance(answer, dict):
        code = next((answer[key] for key in code_keys if key in answer), None)
    if not isinstance(code, int) or isinstance(code, bool):
        raise DeliveryError(
            f"{service}: HTTP {response.status_code} from {origin(str(response.url))} without an error code",
            retryable=False,
        )
    if code == 0:
        return
    assert isinstance(answer, dict)
    said = next((str(answer[key]) for key in message_keys if key in answer), "")
    raise DeliveryError(scrub(f"{service} error {code}: {said}", secrets), retryable=code in retryable_codes)


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: no user info, path or query (where tokens live)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{scheme(url)}://?"
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` fit for the delivery log: URLs cut to their origin, secrets replaced, one short line."""
    text = URL_IN_TEXT.sub(lambda m: origin(m.group(0)), text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"
