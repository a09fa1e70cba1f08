"""A DingTalk robot channel's configuration and its checks."""

from __future__ import annotations

import msgspec

from peakwatch.channels.checks import http_url_problem, timeout_problem
from peakwatch.redaction import url_secrets


class DingTalkChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="dingtalk"):
    """A DingTalk (钉钉) custom robot; ``secret`` enables its signed-request mode (HMAC-SHA256)."""

    access_token: str
    secret: str | None = None
    url: str = "https://oapi.dingtalk.com/robot/send"
    at_mobiles: tuple[str, ...] = ()
    timeout_s: float = 10.0

    def problem(self) -> str | None:
        if not self.access_token:
            return "dingtalk channel without an access_token"
        return http_url_problem("dingtalk url", self.url) or timeout_problem(self.timeout_s)

    def secrets(self) -> list[str]:
        secret = [self.secret] if self.secret is not None else []
        return [self.access_token, *secret, *url_secrets(self.url)]
