"""Delivery of one notification to one channel: webhook (Alertmanager JSON), e-mail, WeCom, DingTalk,
Feishu, Slack and anything apprise reaches.

Every failure becomes a ``DeliveryError`` whose ``detail`` goes into the delivery log and the API, and
whose ``retryable`` tells the service whether to try again: a refused token (HTTP 403, ``errcode``
93000) fails the same way on every attempt and would only flood the robot, while a timeout, an HTTP
5xx or a robot's rate limit is worth the next attempt.

Robot tokens live in their URLs (``?key=``, ``?access_token=``, the path of a Feishu or Slack hook), so
a detail never quotes a URL: it names ``scheme://host:port`` only, and every configured secret that
shows up in a server's or library's message is replaced by ``***`` before it is kept.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ssl
import time
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Final, assert_never
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiosmtplib
import apprise
import httpx
import msgspec

from notifier.messages import Message, alertmanager_payload, render, truncate_utf8
from peakwatch.channel_checks import channel_problem
from peakwatch.domain.notifications import (
    AppriseChannel,
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    Language,
    Notification,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
)
from peakwatch.redaction import URL_IN_TEXT, url_tokens

__all__ = [
    "DINGTALK_MARKDOWN_MAX_BYTES",
    "FEISHU_TEXT_MAX_BYTES",
    "SLACK_TEXT_MAX_BYTES",
    "WECOM_MARKDOWN_MAX_BYTES",
    "WECOM_TEXT_MAX_BYTES",
    "Channels",
    "DeliveryError",
    "dingtalk_sign",
    "feishu_sign",
]

# What each service accepts (it refuses longer messages instead of shortening them).
WECOM_MARKDOWN_MAX_BYTES: Final = 4096
WECOM_TEXT_MAX_BYTES: Final = 2048
DINGTALK_MARKDOWN_MAX_BYTES: Final = 20_000
FEISHU_TEXT_MAX_BYTES: Final = 18_000
"""Feishu caps the whole request body at 20 KB; this leaves room for the JSON around the text."""
SLACK_TEXT_MAX_BYTES: Final = 40_000

_DETAIL_MAX: Final = 300
_RETRYABLE_HTTP: Final = frozenset({408, 429})
# Application error codes that mean "not now" rather than "never": system busy and rate limits.
_WECOM_RETRYABLE: Final = frozenset({-1, 45009})
_DINGTALK_RETRYABLE: Final = frozenset({-1, 130101})
_FEISHU_RETRYABLE: Final = frozenset({11232})


class DeliveryError(Exception):
    """A message that did not reach its channel. ``detail`` is short and free of secrets (it is logged
    and shown in the API); ``retryable`` is False when trying again cannot help (bad token, HTTP 4xx
    other than 408/429, a refused address)."""

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


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
        if isinstance(channel, AppriseChannel):
            # apprise parses and sends synchronously (its own HTTP stack): keep it off the event loop.
            return await asyncio.to_thread(_apprise_notify, channel, message)
        problem = channel_problem(channel)
        if problem is not None:
            raise DeliveryError(problem, retryable=False)
        match channel:
            case WebhookChannel():
                return await self._webhook(channel, n, message)
            case EmailChannel():
                return await _email(channel, message)
            case WeComChannel():
                return await self._wecom(channel, message)
            case DingTalkChannel():
                return await self._dingtalk(channel, message)
            case FeishuChannel():
                return await self._feishu(channel, message)
            case SlackChannel():
                return await self._slack(channel, message)
            case _:
                assert_never(channel)

    # ------------------------------------------------------------------------------------ per type

    async def _webhook(self, ch: WebhookChannel, n: Notification, message: Message) -> str:
        payload = alertmanager_payload(
            n, public_url=self._public_url, max_alerts=ch.max_alerts, text=message.text
        )
        headers = dict(ch.headers)
        if ch.bearer_token:
            headers["Authorization"] = f"Bearer {ch.bearer_token}"
        secrets = [ch.bearer_token, *ch.headers.values(), *url_tokens(ch.url)]
        response = await self._post(ch.url, payload, headers=headers, timeout_s=ch.timeout_s, secrets=secrets)
        return f"HTTP {response.status_code}"

    async def _wecom(self, ch: WeComChannel, message: Message) -> str:
        body: dict[str, object]
        if ch.mentioned_mobiles:
            # Only WeCom's text messages can mention people; markdown ones cannot.
            body = {
                "msgtype": "text",
                "text": {
                    "content": truncate_utf8(message.text, WECOM_TEXT_MAX_BYTES),
                    "mentioned_mobile_list": list(ch.mentioned_mobiles),
                },
            }
        else:
            body = {
                "msgtype": "markdown",
                "markdown": {"content": truncate_utf8(message.markdown, WECOM_MARKDOWN_MAX_BYTES)},
            }
        secrets = [ch.key, *url_tokens(ch.url)]
        response = await self._post(
            ch.url, body, params={"key": ch.key}, timeout_s=ch.timeout_s, secrets=secrets
        )
        _check_answer(response, "wecom", ("errcode",), ("errmsg",), _WECOM_RETRYABLE, secrets)
        return f"HTTP {response.status_code}"

    async def _dingtalk(self, ch: DingTalkChannel, message: Message) -> str:
        params = {"access_token": ch.access_token}
        if ch.secret:
            # Wall-clock time: DingTalk refuses a signature whose timestamp is more than an hour off.
            now_ms = int(time.time() * 1000)
            params |= {"timestamp": str(now_ms), "sign": dingtalk_sign(ch.secret, now_ms)}
        # A mention only notifies when the number also appears in the text; keep it out of the cut.
        mentions = "".join(f" @{mobile}" for mobile in ch.at_mobiles)
        room = DINGTALK_MARKDOWN_MAX_BYTES - len(mentions.encode("utf-8")) - 2
        text = truncate_utf8(message.markdown, room) + (f"\n\n{mentions.strip()}" if mentions else "")
        body = {
            "msgtype": "markdown",
            "markdown": {"title": message.title, "text": text},
            "at": {"atMobiles": list(ch.at_mobiles), "isAtAll": False},
        }
        secrets = [ch.access_token, ch.secret, *url_tokens(ch.url)]
        response = await self._post(ch.url, body, params=params, timeout_s=ch.timeout_s, secrets=secrets)
        _check_answer(response, "dingtalk", ("errcode",), ("errmsg",), _DINGTALK_RETRYABLE, secrets)
        return f"HTTP {response.status_code}"

    async def _feishu(self, ch: FeishuChannel, message: Message) -> str:
        body: dict[str, object] = {
            "msg_type": "text",
            "content": {"text": truncate_utf8(message.text, FEISHU_TEXT_MAX_BYTES)},
        }
        if ch.secret:
            seconds = int(time.time())
            body |= {"timestamp": str(seconds), "sign": feishu_sign(ch.secret, seconds)}
        url = f"{ch.url.rstrip('/')}/{ch.hook}"
        secrets = [ch.hook, ch.secret, *url_tokens(ch.url)]
        response = await self._post(url, body, timeout_s=ch.timeout_s, secrets=secrets)
        # Current answers carry "code"/"msg", older deployments "StatusCode"/"StatusMessage".
        _check_answer(
            response, "feishu", ("code", "StatusCode"), ("msg", "StatusMessage"), _FEISHU_RETRYABLE, secrets
        )
        return f"HTTP {response.status_code}"

    async def _slack(self, ch: SlackChannel, message: Message) -> str:
        body = {"text": truncate_utf8(message.text, SLACK_TEXT_MAX_BYTES)}
        response = await self._post(
            ch.webhook_url, body, timeout_s=ch.timeout_s, secrets=url_tokens(ch.webhook_url)
        )
        return f"HTTP {response.status_code}"

    async def _post(
        self,
        url: str,
        body: object,
        *,
        timeout_s: float,
        secrets: Iterable[str | None],
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``body`` as JSON; a transport failure or an HTTP status >= 300 raises. The exception
        chain is dropped (``from None``): httpx's exceptions carry the request URL and its token."""
        where = _origin(url)
        secrets = list(secrets)
        try:
            response = await self._http().post(
                url,
                params=params,
                content=msgspec.json.encode(body),
                headers={"Content-Type": "application/json", **(headers or {})},
                timeout=timeout_s,
            )
        except httpx.TimeoutException:
            raise DeliveryError(f"no answer from {where} within {timeout_s:g} s", retryable=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            detail = f"unusable address {where}: {_scrub(str(exc), secrets)}"
            raise DeliveryError(detail, retryable=False) from None
        except httpx.LocalProtocolError as exc:  # a header it refused, quoted whole (secret and all)
            raise DeliveryError(f"cannot send to {where}: {type(exc).__name__}", retryable=False) from None
        except httpx.HTTPError as exc:
            reason = _scrub(str(exc), secrets) or type(exc).__name__
            raise DeliveryError(f"cannot reach {where}: {reason}", retryable=True) from None
        status = response.status_code
        if status >= 300:
            excerpt = _scrub(response.text, secrets)
            raise DeliveryError(
                f"HTTP {status} from {where}" + (f": {excerpt}" if excerpt else ""),
                retryable=status >= 500 or status in _RETRYABLE_HTTP,
            )
        return response


def _check_answer(
    response: httpx.Response,
    service: str,
    code_keys: tuple[str, ...],
    message_keys: tuple[str, ...],
    retryable_codes: frozenset[int],
    secrets: Iterable[str | None],
) -> None:
    """Robot APIs answer HTTP 200 even when they refuse: the verdict is the body's error code. An
    answer without one is refused too (the URL points at something that is not the robot)."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    code = None
    if isinstance(answer, dict):
        code = next((answer[key] for key in code_keys if key in answer), None)
    if not isinstance(code, int) or isinstance(code, bool):
        raise DeliveryError(
            f"{service}: HTTP {response.status_code} from {_origin(str(response.url))} without an error code",
            retryable=False,
        )
    if code == 0:
        return
    assert isinstance(answer, dict)
    said = next((str(answer[key]) for key in message_keys if key in answer), "")
    raise DeliveryError(_scrub(f"{service} error {code}: {said}", secrets), retryable=code in retryable_codes)


# ---------------------------------------------------------------------------------------- signing


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signed-request mode: base64(HMAC-SHA256(key=secret, msg="{timestamp}\\n{secret}")).
    Returned unquoted; it travels as a query parameter, which the HTTP client URL-encodes."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's signature check: base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg=b"")), the key
    and message the other way round from DingTalk, as Feishu documents it."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


# ------------------------------------------------------------------------------------------- e-mail


async def _email(ch: EmailChannel, message: Message) -> str:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = ch.sender
    mail["To"] = ", ".join(ch.to)
    mail["Date"] = formatdate(localtime=False)
    # An explicit domain: without one make_msgid asks the resolver for this host's name.
    domain = parseaddr(ch.sender)[1].rpartition("@")[2] or "peakwatch.invalid"
    mail["Message-ID"] = make_msgid(domain=domain)
    # base64 keeps Chinese text intact through relays without 8BITMIME.
    mail.set_content(message.text, charset="utf-8", cte="base64")
    where = f"{ch.host}:{ch.port}"
    secrets = [ch.password]
    try:
        refused, answer = await aiosmtplib.send(
            mail,
            hostname=ch.host,
            port=ch.port,
            username=ch.username,
            password=(ch.password or "") if ch.username else None,
            use_tls=ch.security == "tls",
            start_tls=ch.security == "starttls",
            timeout=ch.timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        listed = ", ".join(f"{r.recipient} ({r.code})" for r in exc.recipients)
        raise DeliveryError(
            _scrub(f"{where} refused every recipient: {listed}", secrets),
            retryable=bool(codes) and all(400 <= c < 500 for c in codes),
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        # 4xx: try later (greylisting, a full queue); 5xx: refused (bad login, unknown sender).
        raise DeliveryError(
            _scrub(f"{where} answered {exc.code} {exc.message}", secrets), retryable=400 <= exc.code < 500
        ) from None
    except aiosmtplib.SMTPTimeoutError:
        raise DeliveryError(f"no answer from {where} within {ch.timeout_s:g} s", retryable=True) from None
    except aiosmtplib.SMTPNotSupported as exc:
        raise DeliveryError(_scrub(f"{where}: {exc}", secrets), retryable=False) from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(_scrub(f"{where}: {exc.verify_message}", secrets), retryable=False) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        reason = _scrub(str(exc), secrets) or type(exc).__name__
        # aiosmtplib reports a server without STARTTLS or AUTH as a plain SMTPException: a config
        # mismatch that the next attempt meets again.
        retryable = "not supported" not in reason.lower()
        raise DeliveryError(f"cannot deliver to {where}: {reason}", retryable=retryable) from None
    detail = f"250 {answer}"
    if refused:
        # The server took the message for the other recipients: delivered, with a note.
        listed = ", ".join(f"{address} ({response.code})" for address, response in refused.items())
        detail += f"; refused {listed}"
    return _scrub(detail, secrets)


# ------------------------------------------------------------------------------------------ apprise


def _apprise_notify(ch: AppriseChannel, message: Message) -> str:
    """Runs in a worker thread: apprise's own HTTP stack blocks."""
    problem = channel_problem(ch)
    if problem is not None:
        raise DeliveryError(problem, retryable=False)
    bundle = apprise.Apprise()
    for url in ch.urls:
        if not bundle.add(url):
            raise DeliveryError(f"apprise does not understand the {_scheme(url)}:// URL", retryable=False)
    result = bundle.notify(body=message.text, title=message.title)
    count = len(bundle)
    if not result:
        # Services are named by their scheme only: apprise's URLs and logs hold the tokens.
        failed = sorted({_scheme(str(outcome.url)) for outcome in result if not outcome})
        names = f" ({', '.join(f'{s}://' for s in failed)})" if failed else ""
        raise DeliveryError(
            f"apprise: {result.failed_count} of {count} services failed{names}", retryable=True
        )
    return f"apprise: {count} service{'' if count == 1 else 's'}"


# ---------------------------------------------------------------------------------- config checks


# -------------------------------------------------------------------------------------- redaction


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.isascii() and scheme.replace("+", "").isalnum() else "?"


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: no user info, path or query (where tokens live)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{_scheme(url)}://?"
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` fit for the delivery log: URLs cut to their origin, secrets replaced, one short line."""
    text = URL_IN_TEXT.sub(lambda m: _origin(m.group(0)), text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"
