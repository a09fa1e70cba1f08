"""A Slack incoming webhook's message: the plain text, cut to what Slack takes."""

from __future__ import annotations

from typing import Final

from peakwatch.channels.text import Message, truncate_utf8

SLACK_TEXT_MAX_BYTES: Final = 40_000
"""What Slack accepts (it refuses longer messages instead of shortening them)."""


def body(message: Message) -> dict[str, object]:
    return {"text": truncate_utf8(message.text, SLACK_TEXT_MAX_BYTES)}
