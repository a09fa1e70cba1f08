"""A Slack incoming-webhook channel's configuration and its checks."""

from __future__ import annotations

import msgspec

from peakwatch.channels.checks import http_url_problem, timeout_problem
from peakwatch.redaction import url_tokens


class SlackChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="slack"):
    webhook_url: str
    timeout_s: float = 10.0

    def problem(self) -> str | None:
        return http_url_problem("slack webhook_url", self.webhook_url) or timeout_problem(self.timeout_s)

    def secrets(self) -> list[str]:
        # The address is the credential (its path is the token).
        return [self.webhook_url, *url_tokens(self.webhook_url)] if self.webhook_url else []
