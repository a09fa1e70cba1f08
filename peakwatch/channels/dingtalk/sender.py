"""Delivery to a DingTalk robot: token (and signature) as query parameters, the verdict is the
answer's ``errcode``."""

from __future__ import annotations

from typing import Final

import httpx

from peakwatch.channels.delivery import Letter, check_answer, post_json
from peakwatch.channels.dingtalk.config import DingTalkChannel
from peakwatch.channels.dingtalk.message import body, dingtalk_sign
from peakwatch.clock import now_ms
from peakwatch.redaction import url_tokens

_RETRYABLE: Final = frozenset({-1, 130101})
"""Error codes that mean "not now" rather than "never": system busy, rate limit."""


async def send(ch: DingTalkChannel, letter: Letter, client: httpx.AsyncClient) -> str:
    params = {"access_token": ch.access_token}
    if ch.secret:
        # Wall-clock time: DingTalk refuses a signature whose timestamp is more than an hour off.
        at_ms = now_ms()
        params |= {"timestamp": str(at_ms), "sign": dingtalk_sign(ch.secret, at_ms)}
    secrets = [ch.access_token, ch.secret, *url_tokens(ch.url)]
    response = await post_json(
        client, ch.url, body(ch, letter.message), params=params, timeout_s=ch.timeout_s, secrets=secrets
    )
    check_answer(response, "dingtalk", ("errcode",), ("errmsg",), _RETRYABLE, secrets)
    return f"HTTP {response.status_code}"
