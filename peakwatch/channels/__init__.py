"""Notification channels: one folder per channel, and the table of them.

Each folder holds ``config.py`` (the struct a receiver's ``channels:`` entry decodes to, with its own
``problem()`` check and ``secrets()``), ``message.py`` (what the service is sent, cut to what it takes;
pure) and ``sender.py`` (the delivery, raising ``DeliveryError``). What they share is here beside
them: ``checks`` (pure checks), ``text`` (the human message every channel shows), ``delivery`` (the
error, the HTTP POST and keeping secrets out of details). Channels never import each other.

To add a channel: a folder like the others, its struct in ``Channel`` and its row in ``CHANNELS``
(a test keeps the two in step). The registry's parser (``peakwatch.notify_config``) and the notifier
(``notifier.channels``) know channels only through this table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import httpx

from peakwatch.channels.apprise import sender as apprise
from peakwatch.channels.apprise.config import AppriseChannel
from peakwatch.channels.checks import channel_problem
from peakwatch.channels.delivery import Letter
from peakwatch.channels.dingtalk import sender as dingtalk
from peakwatch.channels.dingtalk.config import DingTalkChannel
from peakwatch.channels.email import sender as email
from peakwatch.channels.email.config import EmailChannel
from peakwatch.channels.feishu import sender as feishu
from peakwatch.channels.feishu.config import FeishuChannel
from peakwatch.channels.slack import sender as slack
from peakwatch.channels.slack.config import SlackChannel
from peakwatch.channels.webhook import sender as webhook
from peakwatch.channels.webhook.config import WebhookChannel
from peakwatch.channels.wecom import sender as wecom
from peakwatch.channels.wecom.config import WeComChannel
from peakwatch.errors import DeliveryError

__all__ = [
    "CHANNELS",
    "AppriseChannel",
    "Channel",
    "ChannelType",
    "DeliveryError",
    "DingTalkChannel",
    "EmailChannel",
    "FeishuChannel",
    "Letter",
    "SlackChannel",
    "WeComChannel",
    "WebhookChannel",
    "channel_problem",
    "channel_tag",
    "channel_type",
]

Channel = (
    WebhookChannel
    | EmailChannel
    | WeComChannel
    | DingTalkChannel
    | FeishuChannel
    | SlackChannel
    | AppriseChannel
)
"""What a receiver's ``channels:`` entry decodes to, chosen by its ``type:`` tag."""

_C = TypeVar("_C")


@dataclass(frozen=True)
class ChannelType(Generic[_C]):
    """One row of the table: a channel's configuration struct and its sender."""

    config: type[_C]
    send: Callable[[_C, Letter, httpx.AsyncClient], Awaitable[str]]
    checks_itself: bool = False
    """The sender checks the channel itself (apprise: its check is slow and synchronous, so it runs in
    the sender's worker thread); otherwise the notifier checks before each send."""


CHANNELS: Final[tuple[ChannelType[Any], ...]] = (
    ChannelType(WebhookChannel, webhook.send),
    ChannelType(EmailChannel, email.send),
    ChannelType(WeComChannel, wecom.send),
    ChannelType(DingTalkChannel, dingtalk.send),
    ChannelType(FeishuChannel, feishu.send),
    ChannelType(SlackChannel, slack.send),
    ChannelType(AppriseChannel, apprise.send, checks_itself=True),
)

_BY_CONFIG: Final = {row.config: row for row in CHANNELS}


def channel_type(channel: Channel) -> ChannelType[Any]:
    return _BY_CONFIG[type(channel)]


def channel_tag(channel: Channel) -> str:
    """The ``type:`` a channel is written with (``webhook``): part of its id in logs and the API."""
    return str(channel.__struct_config__.tag)
