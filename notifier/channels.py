"""Delivery of one notification to one channel: render its text, look the channel up in the table
(``peakwatch.channels.CHANNELS``) and hand both to the channel's sender, over one shared HTTP client.

What each channel sends and how it reads the answer is in its folder under ``peakwatch/channels/``;
failures arrive as ``peakwatch.channels.DeliveryError`` and the service decides about retries.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import httpx

from peakwatch.channels import Channel, Letter, channel_problem, channel_type
from peakwatch.channels.text import render
from peakwatch.domain.notifications import Language, Notification
from peakwatch.errors import DeliveryError

__all__ = ["Channels"]


class Channels:
    """Sends notifications to channels. One shared HTTP client (connection reuse matters when a
    storm sends hundreds of messages to the same robot); each request uses its channel's timeout."""

    def __init__(
        self, *, public_url: str = "", timezone: str = "Asia/Shanghai", user_agent: str = "peakwatch"
    ) -> None:
        ZoneInfo(timezone)  # an unknown zone fails at start-up, not at the first alert
        self._public_url = public_url
        self._timezone = timezone
        self._user_agent = user_agent
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # Created on first use, so a Channels can be built outside the event loop that sends.
        if self._client is None:
            self._client = httpx.AsyncClient(headers={"User-Agent": self._user_agent}, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def send(self, channel: Channel, n: Notification, language: Language) -> str:
        """Deliver ``n``; returns a short success detail for the delivery log (``HTTP 200``,
        ``250 2.0.0 OK``, ``apprise: 1 service``). Raises ``DeliveryError`` on any failure."""
        message = render(n, language, timezone=self._timezone, public_url=self._public_url)
        kind = channel_type(channel)
        # Checked again before each send: a channel built in code never went through the registry.
        if not kind.checks_itself and (problem := channel_problem(channel)) is not None:
            raise DeliveryError(problem, retryable=False)
        letter = Letter(notification=n, message=message, public_url=self._public_url)
        return await kind.send(channel, letter, self._http())
