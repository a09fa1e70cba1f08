"""Delivery to a Feishu bot: the hook token is the address's last segment, the verdict is the
answer's code."""

from __future__ import annotations

from typing import Final

import httpx

from peakwatch.channels.delivery import Letter, check_answer, post_json
from peakwatch.channels.feishu.config import FeishuChannel
from peakwatch.channels.feishu.message import body
from peakwatch.clock import now_ms
from peakwatch.redaction import url_tokens

_RETRYABLE: Final = frozenset({11232})
"""Error codes that mean "not now" rather than "never": the rate limit."""


async def send(ch: FeishuChannel, letter: Letter, client: httpx.AsyncClient) -> str:
    url = f"{ch.url.rstrip('/')}/{ch.hook}"
    secrets = [ch.hook, ch.secret, *url_tokens(ch.url)]
    payload = body(ch, letter.message, now_ms() // 1000)
    response = await post_json(client, url, payload, timeout_s=ch.timeout_s, secrets=secrets)
    # Current answers carry "code"/"msg", older deployments "StatusCode"/"StatusMessage".
    check_answer(response, "feishu", ("code", "StatusCode"), ("msg", "StatusMessage"), _RETRYABLE, secrets)
    return f"HTTP {response.status_code}"
