"""A DingTalk robot's message (markdown with its mentions) and the signature of its signed mode."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

from peakwatch.channels.dingtalk.config import DingTalkChannel
from peakwatch.channels.text import Message, truncate_utf8

DINGTALK_MARKDOWN_MAX_BYTES: Final = 20_000
"""What DingTalk accepts (it refuses longer messages instead of shortening them)."""


def body(ch: DingTalkChannel, message: Message) -> dict[str, object]:
    # A mention only notifies when the number also appears in the text; keep it out of the cut.
    mentions = "".join(f" @{mobile}" for mobile in ch.at_mobiles)
    room = DINGTALK_MARKDOWN_MAX_BYTES - len(mentions.encode("utf-8")) - 2
    text = truncate_utf8(message.markdown, room) + (f"\n\n{mentions.strip()}" if mentions else "")
    return {
        "msgtype": "markdown",
        "markdown": {"title": message.title, "text": text},
        "at": {"atMobiles": list(ch.at_mobiles), "isAtAll": False},
    }


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signed-request mode: base64(HMAC-SHA256(key=secret, msg="{timestamp}\\n{secret}")).
    Returned unquoted; it travels as a query parameter, which the HTTP client URL-encodes."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")
