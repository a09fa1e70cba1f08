"""Secrets never leave the process: the one helper that masks them wherever a URL, a DSN or an error
is shown (health, banners, logs, error messages).

A broker or database URL carries its password in the user info (``mqtt://coll-1:s3cret@host``) or in
its query (``postgresql://host/db?password=s3cret``); a libpq DSN in ``key=value`` words
(``password=s3cret``). Secrets that appear elsewhere (an exception quoting a password on its own)
are masked when the process knows them: ``remember_secret`` at start-up, then every log line and
printed error is checked for them.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable
from typing import Final

MASK: Final = "***"

_SECRET_WORDS: Final = ("password", "passwd", "pwd", "secret", "token", "key", "signature", "sig")
URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_KEY_VALUE: Final = re.compile(
    r"""\b([A-Za-z_]*(?:password|passwd|secret|token)[A-Za-z_]*)(["']?\s*[=:]\s*)('[^']*'|"[^"]*"|[^\s,;&'"]+)""",
    re.IGNORECASE,
)
_MIN_KNOWN_LEN: Final = 4
"""Shorter 'secrets' would mask ordinary words in every log line (and are no secret anyway)."""

_known: set[str] = set()


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and every secret-named query value shown as
    ``***``; the scheme, user, host, port and path stay (they say where, not how to get in)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _redact_bare(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = f"{userinfo.split(':', 1)[0]}:{MASK}"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        query = "&".join(_redact_pair(pair) for pair in query.split("&"))
    return parts._replace(netloc=netloc, query=query).geturl()


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (a log line, an error, a detail) with every URL passed through ``redact_url``,
    ``password=…``-style words masked, and ``secrets`` plus every remembered secret replaced."""
    text = URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _redact_bare(text)
    for secret in sorted({s for s in (*secrets, *_known) if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def remember_secret(*secrets: str | None) -> None:
    """Mask these wherever they appear from now on (the composition root calls it with the broker's
    and the database's passwords, and the notification channels' secrets, once they are known)."""
    for secret in secrets:
        if secret and len(secret) >= _MIN_KNOWN_LEN:
            _known.add(secret)
            quoted = urllib.parse.quote(secret, safe="")
            if quoted != secret:
                _known.add(quoted)


def url_secrets(url: str) -> list[str]:
    """The password of ``url`` (as written and decoded): what ``remember_secret`` needs to know."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return []
    return [] if password is None else [password, urllib.parse.unquote(password)]


def url_tokens(url: str) -> list[str]:
    """The parts of a web hook's URL that may be tokens: the password, query values and long path
    segments (Slack's and Feishu's hooks are paths)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return [url]
    values = [value for _, value in urllib.parse.parse_qsl(parts.query) if value]
    values += [segment for segment in parts.path.split("/") if len(segment) >= 8]
    if parts.password:
        values.append(parts.password)
    return values


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line, traceback included, went through ``redact_text``: a library
    that logs the URL it was given, or an exception quoting it, cannot write the password."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Wrap the formatter of every handler of ``logger`` (the root by default) in a
    ``RedactingFormatter`` that keeps its format."""
    for handler in (logger or logging.getLogger()).handlers:
        if isinstance(handler.formatter, RedactingFormatter):
            continue
        current = handler.formatter
        fmt = current._fmt if current is not None else None
        datefmt = current.datefmt if current is not None else None
        handler.setFormatter(RedactingFormatter(fmt, datefmt))


def _redact_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if sep and value and any(word in urllib.parse.unquote(name).lower() for word in _SECRET_WORDS):
        return f"{name}={MASK}"
    return pair


def _redact_bare(text: str) -> str:
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
