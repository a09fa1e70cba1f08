"""A WeCom robot's message: markdown, or text when people are to be mentioned, cut to what WeCom takes."""

from __future__ import annotations

from typing import Final

from peakwatch.channels.text import Message, truncate_utf8
from peakwatch.channels.wecom.config import WeComChannel

# What WeCom accepts (it refuses longer messages instead of shortening them).
WECOM_MARKDOWN_MAX_BYTES: Final = 4096
WECOM_TEXT_MAX_BYTES: Final = 2048


def body(ch: WeComChannel, message: Message) -> dict[str, object]:
    if ch.mentioned_mobiles:
        # Only WeCom's text messages can mention people; markdown ones cannot.
        return {
            "msgtype": "text",
            "text": {
                "content": truncate_utf8(message.text, WECOM_TEXT_MAX_BYTES),
                "mentioned_mobile_list": list(ch.mentioned_mobiles),
            },
        }
    return {
        "msgtype": "markdown",
        "markdown": {"content": truncate_utf8(message.markdown, WECOM_MARKDOWN_MAX_BYTES)},
    }
