"""The checks every channel's configuration shares. Pure: a channel is checked when the registry loads
(a typo shows at start-up, not as a failed delivery during an incident) and again before each send.
Answers never quote the value they complain about: it may hold a token."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import msgspec


class ChannelConfig(Protocol):
    """What the table needs of a channel's configuration (each folder's ``config.py`` struct)."""

    def problem(self) -> str | None:
        """Why this channel cannot deliver as configured (``None``: it can)."""
        ...

    def secrets(self) -> list[str]:
        """Its credentials (tokens, passwords, the addresses that are tokens), to be masked wherever
        they might be shown."""
        ...


def channel_problem(channel: ChannelConfig) -> str | None:
    """Why ``channel`` cannot deliver as configured (``None``: it can)."""
    if (field := control_character(channel)) is not None:
        return f"{field} contains a control character (a secret read with its trailing newline?)"
    return channel.problem()


def http_url_problem(what: str, url: str) -> str | None:
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


def timeout_problem(timeout_s: float) -> str | None:
    return None if timeout_s > 0 else "timeout_s must be positive"


def control_character(channel: object) -> str | None:
    """The first field holding a control character: it would end up in a header or URL, where HTTP
    libraries refuse it and quote it (secret and all) in their error."""
    fields = msgspec.structs.asdict(channel) if isinstance(channel, msgspec.Struct) else {}
    for field, value in fields.items():
        values = value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else [value]
        for item in values:
            if isinstance(item, str) and any(ord(c) < 32 or ord(c) == 127 for c in item):
                return field
    return None


def scheme(url: str) -> str:
    """The scheme of ``url`` in lower case, ``?`` when it has none worth naming: what a message may say
    of an address whose rest (path, query, user info) may be a token."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.isascii() and scheme.replace("+", "").isalnum() else "?"
