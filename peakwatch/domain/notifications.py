"""The values the notifier works with: an alert as routing sees it, one notification to one channel,
and the channel configurations a receiver is made of.

Shared by the routing math (``peakwatch.domain.routing``), the config loader and the notifier's
channels, so it holds data only. A *receiver* is a name the routing tree sends to (``oncall-dc``); it
has one or more *channels* (a webhook, an e-mail list, a WeCom bot ...), each delivered, retried and
logged on its own, so a dead mail server does not hold back the WeCom message (Alertmanager keeps one
notification log per integration for the same reason).
"""

from __future__ import annotations

from typing import Literal

import msgspec

Language = Literal["zh-CN", "en"]


class AlertView(msgspec.Struct, frozen=True, kw_only=True):
    """One alert instance (a row of ``alerts``) as routing needs it. Only ``firing`` and ``resolved``
    alerts are ever notified; a pending alert has not happened yet."""

    id: int
    fingerprint: str
    state: str
    """``firing`` or ``resolved`` (routing ignores any other state)."""
    labels: dict[str, str]
    """``alertname`` (the rule), ``site``, ``severity``, ``kpi`` or ``meter``, the rule's own labels and
    the site's registry labels: what matchers, ``group_by``, inhibition and silences look at."""
    summary: str
    value: float | None = None
    fired_ms: int
    resolved_ms: int | None = None
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None
    resolved_reason: str | None = None
    """Why it resolved when it is not simply recovery: ``restated`` (its windows were recomputed and no
    longer breach the rule)."""


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One message for one channel of one receiver: a group's firing and newly resolved alerts."""

    receiver: str
    channel: str
    """The channel's id inside the receiver, ``"<receiver>/<index>:<type>"`` (``oncall/0:webhook``)."""
    group_key: str
    group_labels: dict[str, str]
    firing: tuple[AlertView, ...] = ()
    resolved: tuple[AlertView, ...] = ()
    escalation: int = 0
    """0: the route's own receiver; n: the n-th escalation step (unacknowledged for its ``after``)."""
    repeat: bool = False
    """Nothing changed since the last message: a reminder at ``repeat_interval``."""

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if self.firing else "resolved"


# ------------------------------------------------------------------------------------------- channels


class WebhookChannel(msgspec.Struct, frozen=True, kw_only=True, tag="webhook"):
    """POST of Alertmanager's webhook JSON (version 4), so anything that takes Alertmanager's webhook
    (PagerDuty bridges, OnCall, a custom script) takes peakwatch's."""

    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    bearer_token: str | None = None
    max_alerts: int = 0
    """At most this many alerts per message (0: all), as in Alertmanager; ``truncatedAlerts`` says
    how many were left out."""
    timeout_s: float = 10.0


class EmailChannel(msgspec.Struct, frozen=True, kw_only=True, tag="email"):
    to: tuple[str, ...]
    sender: str
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    security: Literal["none", "starttls", "tls"] = "starttls"
    timeout_s: float = 10.0


class WeComChannel(msgspec.Struct, frozen=True, kw_only=True, tag="wecom"):
    """A WeCom (企业微信) group robot. ``url`` can point at a relay or a private deployment (plant
    networks often reach the internet only through one)."""

    key: str
    url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    mentioned_mobiles: tuple[str, ...] = ()
    timeout_s: float = 10.0


class DingTalkChannel(msgspec.Struct, frozen=True, kw_only=True, tag="dingtalk"):
    """A DingTalk (钉钉) custom robot; ``secret`` enables its signed-request mode (HMAC-SHA256)."""

    access_token: str
    secret: str | None = None
    url: str = "https://oapi.dingtalk.com/robot/send"
    at_mobiles: tuple[str, ...] = ()
    timeout_s: float = 10.0


class FeishuChannel(msgspec.Struct, frozen=True, kw_only=True, tag="feishu"):
    """A Feishu / Lark (飞书) custom bot; ``secret`` enables its signature check."""

    hook: str
    """The token at the end of the bot's webhook address."""
    secret: str | None = None
    url: str = "https://open.feishu.cn/open-apis/bot/v2/hook"
    timeout_s: float = 10.0


class SlackChannel(msgspec.Struct, frozen=True, kw_only=True, tag="slack"):
    webhook_url: str
    timeout_s: float = 10.0


class AppriseChannel(msgspec.Struct, frozen=True, kw_only=True, tag="apprise"):
    """Any of apprise's services by URL (``tgram://``, ``msteams://``, ``ntfy://`` ...), for what the
    channels above do not cover."""

    urls: tuple[str, ...]


Channel = (
    WebhookChannel
    | EmailChannel
    | WeComChannel
    | DingTalkChannel
    | FeishuChannel
    | SlackChannel
    | AppriseChannel
)


class Receiver(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    channels: tuple[Channel, ...]
    language: Language = "zh-CN"
    """Language of the message text (the webhook JSON carries both the labels and this text)."""

    def channel_ids(self) -> tuple[str, ...]:
        return tuple(f"{self.name}/{i}:{c.__struct_config__.tag}" for i, c in enumerate(self.channels))
