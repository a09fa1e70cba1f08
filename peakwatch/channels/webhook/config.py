"""A webhook channel's configuration and its checks."""

from __future__ import annotations

import msgspec

from peakwatch.channels.checks import http_url_problem, timeout_problem
from peakwatch.redaction import url_secrets


class WebhookChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="webhook"):
    """POST of Alertmanager's webhook JSON (version 4), so anything that takes Alertmanager's webhook
    (PagerDuty bridges, OnCall, a custom script) takes peakwatch's."""

    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    bearer_token: str | None = None
    max_alerts: int = 0
    """At most this many alerts per message (0: all), as in Alertmanager; ``truncatedAlerts`` says
    how many were left out."""
    timeout_s: float = 10.0

    def problem(self) -> str | None:
        if self.max_alerts < 0:
            return "webhook max_alerts must not be negative"
        return http_url_problem("webhook url", self.url) or timeout_problem(self.timeout_s)

    def secrets(self) -> list[str]:
        # Headers carry API keys as often as not; a relay's password may sit in the URL.
        token = [self.bearer_token] if self.bearer_token is not None else []
        return [*token, *self.headers.values(), *url_secrets(self.url)]
