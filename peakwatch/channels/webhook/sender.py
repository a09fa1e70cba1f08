"""Delivery to a webhook: one POST of the Alertmanager payload."""

from __future__ import annotations

import httpx

from peakwatch.channels.delivery import Letter, post_json
from peakwatch.channels.webhook.config import WebhookChannel
from peakwatch.channels.webhook.message import alertmanager_payload
from peakwatch.redaction import url_tokens


async def send(ch: WebhookChannel, letter: Letter, client: httpx.AsyncClient) -> str:
    payload = alertmanager_payload(
        letter.notification, public_url=letter.public_url, max_alerts=ch.max_alerts, text=letter.message.text
    )
    headers = dict(ch.headers)
    if ch.bearer_token:
        headers["Authorization"] = f"Bearer {ch.bearer_token}"
    secrets = [ch.bearer_token, *ch.headers.values(), *url_tokens(ch.url)]
    response = await post_json(
        client, ch.url, payload, headers=headers, timeout_s=ch.timeout_s, secrets=secrets
    )
    return f"HTTP {response.status_code}"
