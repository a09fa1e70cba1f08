"""Delivery to a Slack incoming webhook: the address is the credential."""

from __future__ import annotations

import httpx

from peakwatch.channels.delivery import Letter, post_json
from peakwatch.channels.slack.config import SlackChannel
from peakwatch.channels.slack.message import body
from peakwatch.redaction import url_tokens


async def send(ch: SlackChannel, letter: Letter, client: httpx.AsyncClient) -> str:
    secrets = url_tokens(ch.webhook_url)
    response = await post_json(
        client, ch.webhook_url, body(letter.message), timeout_s=ch.timeout_s, secrets=secrets
    )
    return f"HTTP {response.status_code}"
