"""Delivery to every channel type (notifier.channels, peakwatch/channels/*) against real servers: the
session's HTTP receiver stands in for webhooks, WeCom, DingTalk, Feishu, Slack and apprise's json://
target, and aiosmtpd receives the e-mail. Signatures are recomputed here from what the server received."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Callable
from zoneinfo import ZoneInfoNotFoundError

import pytest

from notifier.channels import Channels
from peakwatch.channels import (
    AppriseChannel,
    Channel,
    DeliveryError,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    channel_problem,
)
from peakwatch.channels.text import render
from peakwatch.channels.webhook.message import alertmanager_payload
from peakwatch.channels.wecom.message import WECOM_MARKDOWN_MAX_BYTES
from peakwatch.domain.notifications import AlertView, Notification
from peakwatch.net import free_port
from tests.fixtures.receivers import HttpReceiver, Reply, SmtpReceiver

pytestmark = pytest.mark.integration

# apprise imports the standard library's imghdr, deprecated in Python 3.11 and 3.12.
apprise_imports = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

PUBLIC_URL = "https://peakwatch.example.com"
T0 = 1_795_485_900_000  # 2026-11-24T02:05:00Z

ALERT = AlertView(
    id=17,
    fingerprint="a1b2c3d4e5f60718",
    state="firing",
    labels={"alertname": "pue_retrofit_line", "site": "dc-1", "severity": "critical"},
    summary="PUE 1.62 超过 1.5（dc-1）",
    value=1.62,
    fired_ms=T0,
)
RESOLVED = AlertView(
    id=12,
    fingerprint="c1b2c3d4e5f60718",
    state="resolved",
    labels={"alertname": "pue_retrofit_line", "site": "dc-1", "severity": "warning", "hall": "C"},
    summary="PUE 1.55（dc-1 C 厅）",
    value=1.55,
    fired_ms=T0 - 3_600_000,
    resolved_ms=T0 - 300_000,
)
N = Notification(
    receiver="oncall-dc",
    channel="oncall-dc/0:webhook",
    group_key='{}:{alertname="pue_retrofit_line", site="dc-1"}',
    group_labels={"alertname": "pue_retrofit_line", "site": "dc-1"},
    firing=(ALERT,),
    resolved=(RESOLVED,),
)


@pytest.fixture
async def channels() -> AsyncIterator[Channels]:
    sender = Channels(public_url=PUBLIC_URL, timezone="Asia/Shanghai", user_agent="peakwatch-test")
    try:
        yield sender
    finally:
        await sender.aclose()


def hmac_b64(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode("ascii")


# ---------------------------------------------------------------------------------------- webhook


async def test_webhook_posts_alertmanager_json_with_bearer_token(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    channel = WebhookChannel(
        url=http_receiver.url_for(f"{receiver_path}/alerts"),
        headers={"X-Tenant": "plant-7"},
        bearer_token="tok-secret-123",
    )
    assert await channels.send(channel, N, "en") == "HTTP 200"

    request = await http_receiver.next(receiver_path)
    assert request.method == "POST"
    assert request.path == f"{receiver_path}/alerts"
    assert request.headers["authorization"] == "Bearer tok-secret-123"
    assert request.headers["x-tenant"] == "plant-7"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "peakwatch-test"
    body = request.json()
    text = render(N, "en", public_url=PUBLIC_URL).text
    assert body == alertmanager_payload(N, public_url=PUBLIC_URL, text=text)
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"]
    assert body["alerts"][0]["startsAt"] == "2026-11-24T02:05:00Z"
    assert body["alerts"][0]["generatorURL"] == f"{PUBLIC_URL}/api/v1/alerts/17"
    assert body["peakwatch"]["text"].startswith("[FIRING:1] pue_retrofit_line dc-1\n")


async def test_webhook_max_alerts_truncates(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    channel = WebhookChannel(url=http_receiver.url_for(receiver_path), max_alerts=1)
    await channels.send(channel, N, "zh-CN")
    request = await http_receiver.next(receiver_path)
    body = request.json()
    assert body["truncatedAlerts"] == 1
    assert [a["fingerprint"] for a in body["alerts"]] == ["a1b2c3d4e5f60718"]
    assert body["peakwatch"]["text"].startswith("【告警·1】pue_retrofit_line dc-1\n")
    assert "authorization" not in request.headers


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (503, True),
        (408, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (302, False),
    ],
)
async def test_http_status_decides_whether_to_retry(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str, status: int, retryable: bool
) -> None:
    http_receiver.reply(receiver_path, Reply(status=status, json={"error": "nope, tok-secret-123"}))
    channel = WebhookChannel(
        url=http_receiver.url_for(f"{receiver_path}/hook"), bearer_token="tok-secret-123"
    )
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert caught.value.retryable is retryable
    assert caught.value.detail.startswith(f"HTTP {status} from http://127.0.0.1:")
    # The server echoed the token: it is redacted, and the path is not quoted either.
    assert "tok-secret-123" not in caught.value.detail
    assert "***" in caught.value.detail
    assert receiver_path not in caught.value.detail
    assert str(caught.value) == caught.value.detail


async def test_timeout_is_retryable(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    release = asyncio.Event()
    http_receiver.reply(receiver_path, Reply(hold=release))
    channel = WebhookChannel(url=http_receiver.url_for(receiver_path), timeout_s=0.2)
    try:
        with pytest.raises(DeliveryError) as caught:
            await channels.send(channel, N, "en")
    finally:
        release.set()
    assert caught.value.retryable
    assert "within 0.2 s" in caught.value.detail
    assert (await http_receiver.next(receiver_path)).path == receiver_path  # it did arrive


SECRET_BUILDERS: list[tuple[str, Callable[[str], Channel], tuple[str, ...]]] = [
    (
        "webhook",
        lambda base: WebhookChannel(
            url=f"{base}/hooks/Zx9Secret123?token=qs-secret-456", bearer_token="bearer-secret-789"
        ),
        ("Zx9Secret123", "qs-secret-456", "bearer-secret-789"),
    ),
    ("wecom", lambda base: WeComChannel(key="wecom-key-secret", url=f"{base}/send"), ("wecom-key-secret",)),
    (
        "dingtalk",
        lambda base: DingTalkChannel(access_token="ding-token-secret", secret="SECding", url=f"{base}/robot"),
        ("ding-token-secret", "SECding"),
    ),
    (
        "feishu",
        lambda base: FeishuChannel(hook="feishu-hook-secret", secret="fs-secret", url=f"{base}/hook"),
        ("feishu-hook-secret",),
    ),
    (
        "slack",
        lambda base: SlackChannel(webhook_url=f"{base}/services/T0001/B0001/slackSecretXYZ"),
        ("slackSecretXYZ",),
    ),
]


@pytest.mark.parametrize(("kind", "build", "secrets"), SECRET_BUILDERS, ids=[s[0] for s in SECRET_BUILDERS])
async def test_connection_refused_is_retryable_and_names_no_secret(
    channels: Channels, kind: str, build: Callable[[str], Channel], secrets: tuple[str, ...]
) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(DeliveryError) as caught:
        await channels.send(build(f"http://127.0.0.1:{port}"), N, "en")
    detail = caught.value.detail
    assert caught.value.retryable
    assert f"http://127.0.0.1:{port}" in detail
    for secret in secrets:
        assert secret not in detail
    assert "?" not in detail
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# ------------------------------------------------------------------------------------------ WeCom


async def test_wecom_markdown(channels: Channels, http_receiver: HttpReceiver, receiver_path: str) -> None:
    channel = WeComChannel(
        key="wecom-key-0001", url=http_receiver.url_for(f"{receiver_path}/cgi-bin/webhook/send")
    )
    assert await channels.send(channel, N, "zh-CN") == "HTTP 200"
    request = await http_receiver.next(receiver_path)
    assert request.path == f"{receiver_path}/cgi-bin/webhook/send"
    assert request.query == {"key": "wecom-key-0001"}
    markdown = render(N, "zh-CN", public_url=PUBLIC_URL).markdown
    assert request.json() == {"msgtype": "markdown", "markdown": {"content": markdown}}
    assert markdown.startswith("### 【告警·1】pue_retrofit_line dc-1\n")


async def test_wecom_mentions_need_a_text_message(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    channel = WeComChannel(
        key="k", url=http_receiver.url_for(receiver_path), mentioned_mobiles=("13800000000", "13900000000")
    )
    await channels.send(channel, N, "en")
    body = (await http_receiver.next(receiver_path)).json()
    assert body == {
        "msgtype": "text",
        "text": {
            "content": render(N, "en", public_url=PUBLIC_URL).text,
            "mentioned_mobile_list": ["13800000000", "13900000000"],
        },
    }


async def test_wecom_markdown_is_cut_to_4096_bytes(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    storm = tuple(
        AlertView(
            id=i,
            fingerprint=f"{i:016x}",
            state="firing",
            labels={"alertname": "pue_retrofit_line", "site": f"dc-{i}", "severity": "critical"},
            summary=f"PUE 告警 {i}",
            value=1.6,
            fired_ms=T0,
        )
        for i in range(200)
    )
    big = Notification(receiver="r", channel="r/0:wecom", group_key="g", group_labels={}, firing=storm)
    assert len(render(big, "zh-CN").markdown.encode("utf-8")) > WECOM_MARKDOWN_MAX_BYTES
    await channels.send(WeComChannel(key="k", url=http_receiver.url_for(receiver_path)), big, "zh-CN")
    content = (await http_receiver.next(receiver_path)).json()["markdown"]["content"]
    assert len(content.encode("utf-8")) <= WECOM_MARKDOWN_MAX_BYTES
    assert content.endswith("…")
    assert content.startswith("### 【告警·200】r\n")


@pytest.mark.parametrize(
    ("errcode", "retryable"), [(93000, False), (40008, False), (45009, True), (-1, True)]
)
async def test_wecom_error_code(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str, errcode: int, retryable: bool
) -> None:
    errmsg = "invalid webhook url, hint: [1731] key wecom-key-0002"
    http_receiver.reply(receiver_path, Reply(json={"errcode": errcode, "errmsg": errmsg}))
    channel = WeComChannel(key="wecom-key-0002", url=http_receiver.url_for(receiver_path))
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert caught.value.retryable is retryable
    assert caught.value.detail == f"wecom error {errcode}: invalid webhook url, hint: [1731] key ***"


async def test_wecom_answer_without_error_code_is_refused(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    http_receiver.reply(receiver_path, Reply(body=b"<html>proxy login</html>", content_type="text/html"))
    with pytest.raises(DeliveryError) as caught:
        await channels.send(WeComChannel(key="k", url=http_receiver.url_for(receiver_path)), N, "en")
    assert not caught.value.retryable
    assert "without an error code" in caught.value.detail


# --------------------------------------------------------------------------------------- DingTalk


async def test_dingtalk_signed_markdown_with_mentions(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    secret = "SEC0123456789abcdef+/="
    channel = DingTalkChannel(
        access_token="ding-token-abc",
        secret=secret,
        url=http_receiver.url_for(f"{receiver_path}/robot/send"),
        at_mobiles=("13800000000",),
    )
    before = int(time.time() * 1000)
    assert await channels.send(channel, N, "zh-CN") == "HTTP 200"
    after = int(time.time() * 1000)

    request = await http_receiver.next(receiver_path)
    assert set(request.query) == {"access_token", "timestamp", "sign"}
    assert request.query["access_token"] == "ding-token-abc"
    timestamp = int(request.query["timestamp"])
    assert before <= timestamp <= after
    # DingTalk's documented signature, recomputed from what arrived (query already URL-decoded).
    assert request.query["sign"] == hmac_b64(secret.encode(), f"{timestamp}\n{secret}".encode())

    message = render(N, "zh-CN", public_url=PUBLIC_URL)
    assert request.json() == {
        "msgtype": "markdown",
        "markdown": {"title": message.title, "text": f"{message.markdown}\n\n@13800000000"},
        "at": {"atMobiles": ["13800000000"], "isAtAll": False},
    }


async def test_dingtalk_without_secret_is_not_signed(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    channel = DingTalkChannel(access_token="ding-token-abc", url=http_receiver.url_for(receiver_path))
    await channels.send(channel, N, "en")
    request = await http_receiver.next(receiver_path)
    assert request.query == {"access_token": "ding-token-abc"}
    assert request.json()["at"] == {"atMobiles": [], "isAtAll": False}


@pytest.mark.parametrize(("errcode", "retryable"), [(310000, False), (130101, True)])
async def test_dingtalk_error_code(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str, errcode: int, retryable: bool
) -> None:
    http_receiver.reply(receiver_path, Reply(json={"errcode": errcode, "errmsg": "sign not match"}))
    channel = DingTalkChannel(
        access_token="ding-token-abc", secret="s3", url=http_receiver.url_for(receiver_path)
    )
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert caught.value.retryable is retryable
    assert caught.value.detail == f"dingtalk error {errcode}: sign not match"


# ----------------------------------------------------------------------------------------- Feishu


async def test_feishu_signed_text(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    secret = "fs-secret-Qw3"
    channel = FeishuChannel(
        hook="fs-hook-7f3a9c",
        secret=secret,
        url=http_receiver.url_for(f"{receiver_path}/open-apis/bot/v2/hook/"),
    )
    before = int(time.time())
    assert await channels.send(channel, N, "zh-CN") == "HTTP 200"
    after = int(time.time())

    request = await http_receiver.next(receiver_path)
    assert request.path == f"{receiver_path}/open-apis/bot/v2/hook/fs-hook-7f3a9c"
    assert request.query == {}
    body = request.json()
    timestamp = int(body["timestamp"])
    assert before <= timestamp <= after
    # Feishu's documented signature: the string is the HMAC key, the message is empty.
    assert body["sign"] == hmac_b64(f"{timestamp}\n{secret}".encode(), b"")
    assert body == {
        "msg_type": "text",
        "content": {"text": render(N, "zh-CN", public_url=PUBLIC_URL).text},
        "timestamp": str(timestamp),
        "sign": body["sign"],
    }


async def test_feishu_legacy_answer_and_error_codes(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    http_receiver.reply(
        receiver_path,
        Reply(json={"Extra": None, "StatusCode": 0, "StatusMessage": "success"}),
        Reply(json={"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}),
        Reply(json={"code": 11232, "msg": "frequency limited"}),
        Reply(json={"StatusCode": 9499, "StatusMessage": "Bad Request"}),
    )
    channel = FeishuChannel(hook="fs-hook-abcdef", url=http_receiver.url_for(receiver_path))
    assert await channels.send(channel, N, "en") == "HTTP 200"
    outcomes: list[tuple[str, bool]] = []
    for _ in range(3):
        with pytest.raises(DeliveryError) as caught:
            await channels.send(channel, N, "en")
        outcomes.append((caught.value.detail, caught.value.retryable))
    assert outcomes == [
        ("feishu error 19021: sign match fail or timestamp is not within one hour", False),
        ("feishu error 11232: frequency limited", True),
        ("feishu error 9499: Bad Request", False),
    ]
    assert len(http_receiver.requests(receiver_path)) == 4
    assert "sign" not in http_receiver.requests(receiver_path)[0].json()


# ------------------------------------------------------------------------------------------ Slack


async def test_slack(channels: Channels, http_receiver: HttpReceiver, receiver_path: str) -> None:
    http_receiver.reply(receiver_path, Reply(body=b"ok", content_type="text/plain"))
    channel = SlackChannel(webhook_url=http_receiver.url_for(f"{receiver_path}/services/T0/B0/xyzSecretXYZ"))
    assert await channels.send(channel, N, "en") == "HTTP 200"
    request = await http_receiver.next(receiver_path)
    assert request.json() == {"text": render(N, "en", public_url=PUBLIC_URL).text}


async def test_slack_refusal_is_final(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    http_receiver.reply(receiver_path, Reply(status=404, body=b"no_service", content_type="text/plain"))
    channel = SlackChannel(webhook_url=http_receiver.url_for(f"{receiver_path}/services/T0/B0/xyzSecretXYZ"))
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert not caught.value.retryable
    assert caught.value.detail == f"HTTP 404 from {http_receiver.url}: no_service"


# ----------------------------------------------------------------------------------------- e-mail


def mailbox() -> str:
    return f"ops-{uuid.uuid4().hex[:10]}@example.com"


async def test_email_in_chinese(channels: Channels, smtp_server: SmtpReceiver) -> None:
    to = (mailbox(), mailbox())
    channel = EmailChannel(
        to=to,
        sender="峰值告警 <alerts@peakwatch.example.com>",
        host=smtp_server.host,
        port=smtp_server.port,
        security="none",
    )
    assert await channels.send(channel, N, "zh-CN") == "250 2.0.0 OK"

    mail = await smtp_server.next(to[1])
    message = render(N, "zh-CN", public_url=PUBLIC_URL)
    assert mail.mail_from == "alerts@peakwatch.example.com"
    assert mail.rcpt_tos == to
    assert mail.login is None
    assert mail.message["Subject"] == message.title == "【告警·1】pue_retrofit_line dc-1"
    assert mail.message["From"] == "峰值告警 <alerts@peakwatch.example.com>"
    assert mail.message["To"] == ", ".join(to)
    assert mail.message.get_content_type() == "text/plain"
    assert mail.message.get_content_charset() == "utf-8"
    assert mail.message.get_content() == message.text + "\n"
    assert "PUE 1.62 超过 1.5（dc-1）" in mail.message.get_content()
    assert mail.message["Message-ID"].endswith("@peakwatch.example.com>")


async def test_email_logs_in(channels: Channels, smtp_server: SmtpReceiver) -> None:
    smtp_server.add_user("pw-user", "smtp-pass-9")
    to = mailbox()
    channel = EmailChannel(
        to=(to,),
        sender="alerts@peakwatch.example.com",
        host=smtp_server.host,
        port=smtp_server.port,
        security="none",
        username="pw-user",
        password="smtp-pass-9",
    )
    await channels.send(channel, N, "en")
    mail = await smtp_server.next(to)
    assert mail.login == "pw-user"
    assert mail.message["Subject"] == "[FIRING:1] pue_retrofit_line dc-1"


async def test_email_bad_password_is_final_and_not_logged(
    channels: Channels, smtp_server: SmtpReceiver
) -> None:
    smtp_server.add_user("pw-user2", "right-pass")
    to = mailbox()
    channel = EmailChannel(
        to=(to,),
        sender="alerts@peakwatch.example.com",
        host=smtp_server.host,
        port=smtp_server.port,
        security="none",
        username="pw-user2",
        password="wrong-pass-42",
    )
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert not caught.value.retryable
    assert "535" in caught.value.detail
    assert "wrong-pass-42" not in caught.value.detail
    assert smtp_server.mails(to) == []


async def test_email_starttls_demanded_from_a_plain_server_is_final(
    channels: Channels, smtp_server: SmtpReceiver
) -> None:
    channel = EmailChannel(
        to=(mailbox(),), sender="alerts@peakwatch.example.com", host=smtp_server.host, port=smtp_server.port
    )
    assert channel.security == "starttls"
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert not caught.value.retryable
    assert "STARTTLS" in caught.value.detail


async def test_email_connection_refused_is_retryable(channels: Channels) -> None:
    port = free_port()
    channel = EmailChannel(
        to=(mailbox(),),
        sender="alerts@peakwatch.example.com",
        host="127.0.0.1",
        port=port,
        security="none",
        username="u",
        password="pass-never-shown",
    )
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert caught.value.retryable
    assert f"127.0.0.1:{port}" in caught.value.detail
    assert "pass-never-shown" not in caught.value.detail


# ---------------------------------------------------------------------------------------- apprise


@apprise_imports
async def test_apprise_json_reaches_the_receiver(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    port = http_receiver.url.rsplit(":", 1)[1]
    channel = AppriseChannel(urls=(f"json://127.0.0.1:{port}{receiver_path}/apprise",))
    assert await channels.send(channel, N, "zh-CN") == "apprise: 1 service"
    request = await http_receiver.next(receiver_path)
    assert request.path == f"{receiver_path}/apprise"
    body = request.json()
    message = render(N, "zh-CN", public_url=PUBLIC_URL)
    assert body["title"] == message.title
    assert body["message"] == message.text


@apprise_imports
async def test_apprise_failure_names_the_scheme_only(
    channels: Channels, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    http_receiver.reply(receiver_path, Reply(status=500))
    port = http_receiver.url.rsplit(":", 1)[1]
    channel = AppriseChannel(urls=(f"json://user:apprise-pass@127.0.0.1:{port}{receiver_path}/x",))
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert caught.value.retryable
    assert caught.value.detail == "apprise: 1 of 1 services failed (json://)"


@apprise_imports
async def test_apprise_refuses_unknown_urls(channels: Channels) -> None:
    channel = AppriseChannel(urls=("nosuchservice://token-abc@host/path",))
    with pytest.raises(DeliveryError) as caught:
        await channels.send(channel, N, "en")
    assert not caught.value.retryable
    assert caught.value.detail == "apprise does not understand the nosuchservice:// URL"


# ---------------------------------------------------------------------------------- config checks


EMAIL = EmailChannel(to=("ops@example.com",), sender="alerts@example.com", host="smtp.example.com")


@apprise_imports
@pytest.mark.parametrize(
    ("channel", "problem"),
    [
        pytest.param(WebhookChannel(url="https://hooks.example.com/x"), None, id="webhook-ok"),
        pytest.param(
            WebhookChannel(url="ftp://hooks.example.com/x?token=t"),
            "webhook url must be http:// or https:// (not ftp://)",
            id="webhook-scheme",
        ),
        pytest.param(
            WebhookChannel(url="hooks.example.com/x"),
            "webhook url must be http:// or https://",
            id="no-scheme",
        ),
        pytest.param(WebhookChannel(url="http:///x"), "webhook url has no host", id="no-host"),
        pytest.param(WebhookChannel(url="http://h:99999/x"), "webhook url is not a URL", id="bad-port"),
        pytest.param(
            WebhookChannel(url="http://h/", max_alerts=-1),
            "webhook max_alerts must not be negative",
            id="max",
        ),
        pytest.param(
            WebhookChannel(url="http://h/", timeout_s=0), "timeout_s must be positive", id="timeout"
        ),
        pytest.param(EMAIL, None, id="email-ok"),
        pytest.param(
            EmailChannel(to=(), sender="a@b.c", host="h"), "e-mail channel without recipients", id="no-to"
        ),
        pytest.param(
            EmailChannel(to=("ops",), sender="a@b.c", host="h"),
            "e-mail recipient is not an address",
            id="bad-to",
        ),
        pytest.param(
            EmailChannel(to=("o@b.c",), sender="", host="h"), "e-mail sender is not an address", id="sender"
        ),
        pytest.param(
            EmailChannel(to=("o@b.c",), sender="a@b.c", host=""), "e-mail channel without a host", id="host"
        ),
        pytest.param(
            EmailChannel(to=("o@b.c",), sender="a@b.c", host="h", port=0),
            "e-mail port 0 is not a TCP port",
            id="port",
        ),
        pytest.param(
            EmailChannel(to=("o@b.c",), sender="a@b.c", host="h", password="p"),
            "e-mail password without a username",
            id="password-only",
        ),
        pytest.param(WeComChannel(key=""), "wecom channel without a key", id="wecom-key"),
        pytest.param(WeComChannel(key="k"), None, id="wecom-ok"),
        pytest.param(DingTalkChannel(access_token=""), "dingtalk channel without an access_token", id="ding"),
        pytest.param(
            DingTalkChannel(access_token="t", url="file:///x"),
            "dingtalk url must be http:// or https:// (not file://)",
            id="ding-url",
        ),
        pytest.param(
            FeishuChannel(hook="https://open.feishu.cn/open-apis/bot/v2/hook/abc"),
            "feishu hook must be the token at the end of the bot's address",
            id="feishu-whole-url",
        ),
        pytest.param(FeishuChannel(hook="abc"), None, id="feishu-ok"),
        pytest.param(
            SlackChannel(webhook_url="hooks.slack.com/services/x"),
            "slack webhook_url must be http:// or https://",
            id="slack",
        ),
        pytest.param(AppriseChannel(urls=()), "apprise channel without urls", id="apprise-empty"),
        pytest.param(
            AppriseChannel(urls=("json://localhost/x", "nosuch://secret-token@h")),
            "apprise does not understand the nosuch:// URL",
            id="apprise-unknown",
        ),
        pytest.param(AppriseChannel(urls=("json://localhost/x", "ntfy://topic")), None, id="apprise-ok"),
    ],
)
def test_channel_problem(channel: Channel, problem: str | None) -> None:
    assert channel_problem(channel) == problem


async def test_send_refuses_a_misconfigured_channel_without_trying(channels: Channels) -> None:
    with pytest.raises(DeliveryError) as caught:
        await channels.send(EmailChannel(to=(), sender="a@b.c", host="h"), N, "en")
    assert not caught.value.retryable
    assert caught.value.detail == "e-mail channel without recipients"


def test_unknown_timezone_fails_at_construction() -> None:
    with pytest.raises(ZoneInfoNotFoundError, match="Mars/Olympus"):
        Channels(timezone="Mars/Olympus")
