"""Whether a notification channel can deliver as configured, checked when the registry loads (and
again before each send), so a typo shows at start-up rather than as a failed delivery during an
incident. Answers never quote the value they complain about: it may hold a token."""

from __future__ import annotations

from email.utils import parseaddr
from typing import assert_never
from urllib.parse import urlsplit

import apprise
import msgspec

from peakwatch.domain.notifications import (
    AppriseChannel,
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
)


def channel_problem(channel: Channel) -> str | None:
    """Why ``channel`` cannot deliver as configured (``None``: it can)."""
    if (field := _control_character(channel)) is not None:
        return f"{field} contains a control character (a secret read with its trailing newline?)"
    match channel:
        case WebhookChannel():
            if channel.max_alerts < 0:
                return "webhook max_alerts must not be negative"
            return _http_url_problem("webhook url", channel.url) or _timeout_problem(channel.timeout_s)
        case EmailChannel():
            return _email_problem(channel)
        case WeComChannel():
            if not channel.key:
                return "wecom channel without a key"
            return _http_url_problem("wecom url", channel.url) or _timeout_problem(channel.timeout_s)
        case DingTalkChannel():
            if not channel.access_token:
                return "dingtalk channel without an access_token"
            return _http_url_problem("dingtalk url", channel.url) or _timeout_problem(channel.timeout_s)
        case FeishuChannel():
            if not channel.hook or "/" in channel.hook:
                return "feishu hook must be the token at the end of the bot's address"
            return _http_url_problem("feishu url", channel.url) or _timeout_problem(channel.timeout_s)
        case SlackChannel():
            return _http_url_problem("slack webhook_url", channel.webhook_url) or _timeout_problem(
                channel.timeout_s
            )
        case AppriseChannel():
            if not channel.urls:
                return "apprise channel without urls"
            for url in channel.urls:
                if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
                    return f"apprise does not understand the {_scheme(url)}:// URL"
            return None
        case _:
            assert_never(channel)


def _email_problem(ch: EmailChannel) -> str | None:
    if not ch.to:
        return "e-mail channel without recipients"
    for role, address in [("sender", ch.sender)] + [("recipient", a) for a in ch.to]:
        if "@" not in parseaddr(address)[1]:
            return f"e-mail {role} is not an address"
    if not ch.host:
        return "e-mail channel without a host"
    if not 0 < ch.port < 65536:
        return f"e-mail port {ch.port} is not a TCP port"
    if ch.password and not ch.username:
        return "e-mail password without a username"
    return _timeout_problem(ch.timeout_s)


def _http_url_problem(what: str, url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return f"{what} is not a URL"
    if parts.scheme not in ("http", "https"):
        return f"{what} must be http:// or https://" + (f" (not {parts.scheme}://)" if parts.scheme else "")
    if not parts.hostname:
        return f"{what} has no host"
    return None


def _timeout_problem(timeout_s: float) -> str | None:
    return None if timeout_s > 0 else "timeout_s must be positive"


def _control_character(channel: Channel) -> str | None:
    """The first field holding a control character: it would end up in a header or URL, where HTTP
    libraries refuse it and quote it (secret and all) in their error."""
    for field, value in msgspec.structs.asdict(channel).items():
        values = value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else [value]
        for item in values:
            if isinstance(item, str) and any(ord(c) < 32 or ord(c) == 127 for c in item):
                return field
    return None


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.isascii() and scheme.replace("+", "").isalnum() else "?"
