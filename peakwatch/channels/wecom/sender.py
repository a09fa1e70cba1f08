"""Delivery to a WeCom robot: the key travels as a query parameter, the verdict is the answer's
``errcode``."""

from __future__ import annotations

from typing import Final

import httpx

from peakwatch.channels.delivery import Letter, check_answer, post_json
from peakwatch.channels.wecom.config import WeComChannel
from peakwatch.channels.wecom.message import body
from peakwatch.redaction import url_tokens

_RETRYABLE: Final = frozenset({-1, 45009})
"""Error codes that mean "not now" rather than "never": system busy, rate limit."""


async def send(ch: WeComChannel, letter: Letter, client: httpx.AsyncClient) -> str:
    secrets = [ch.key, *url_tokens(ch.url)]
    response = await post_json(
        client,
        ch.url,
        body(ch, letter.message),
        params={"key": ch.key},
        timeout_s=ch.timeout_s,
        secrets=secrets,
    )
    check_answer(response, "wecom", ("errcode",), ("errmsg",), _RETRYABLE, secrets)
    return f"HTTP {response.status_code}"
