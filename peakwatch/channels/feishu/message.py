"""A Feishu bot's message (plain text) and the signature of its signature check."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

from peakwatch.channels.feishu.config import FeishuChannel
from peakwatch.channels.text import Message, truncate_utf8

FEISHU_TEXT_MAX_BYTES: Final = 18_000
"""Feishu caps the whole request body at 20 KB; this leaves room for the JSON around the text."""


def body(ch: FeishuChannel, message: Message, timestamp_s: int) -> dict[str, object]:
    """``timestamp_s`` is the wall-clock time the signature (when the bot has a secret) is made for."""
    out: dict[str, object] = {
        "msg_type": "text",
        "content": {"text": truncate_utf8(message.text, FEISHU_TEXT_MAX_BYTES)},
    }
    if ch.secret:
        out |= {"timestamp": str(timestamp_s), "sign": feishu_sign(ch.secret, timestamp_s)}
    return out


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's signature check: base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg=b"")), the key
    and message the other way round from DingTalk, as Feishu documents it."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")
