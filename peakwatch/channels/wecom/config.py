"""A WeCom robot channel's configuration and its checks."""

from __future__ import annotations

import msgspec

from peakwatch.channels.checks import http_url_problem, timeout_problem
from peakwatch.redaction import url_secrets


class WeComChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="wecom"):
    """A WeCom (企业微信) group robot. ``url`` can point at a relay or a private deployment (plant
    networks often reach the internet only through one)."""

    key: str
    url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    mentioned_mobiles: tuple[str, ...] = ()
    timeout_s: float = 10.0

    def problem(self) -> str | None:
        if not self.key:
            return "wecom channel without a key"
        return http_url_problem("wecom url", self.url) or timeout_problem(self.timeout_s)

    def secrets(self) -> list[str]:
        return [self.key, *url_secrets(self.url)]
