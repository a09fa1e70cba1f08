"""A Feishu / Lark bot channel's configuration and its checks."""

from __future__ import annotations

import msgspec

from peakwatch.channels.checks import http_url_problem, timeout_problem
from peakwatch.redaction import url_secrets


class FeishuChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="feishu"):
    """A Feishu / Lark (飞书) custom bot; ``secret`` enables its signature check."""

    hook: str
    """The token at the end of the bot's webhook address."""
    secret: str | None = None
    url: str = "https://open.feishu.cn/open-apis/bot/v2/hook"
    timeout_s: float = 10.0

    def problem(self) -> str | None:
        if not self.hook or "/" in self.hook:
            return "feishu hook must be the token at the end of the bot's address"
        return http_url_problem("feishu url", self.url) or timeout_problem(self.timeout_s)

    def secrets(self) -> list[str]:
        secret = [self.secret] if self.secret is not None else []
        return [*secret, self.hook, *url_secrets(self.url)]
