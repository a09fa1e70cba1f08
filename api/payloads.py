"""Showing a dead letter's raw payload in JSON without losing bytes or flooding the response.

Payloads are whatever arrived on the wire (up to ``Settings.max_payload_bytes``): usually JSON text,
sometimes protobuf or garbage. Text is shown as text so an operator can read the broken JSON;
anything else as base64 so the exact bytes can be recovered and replayed.
"""

from __future__ import annotations

import base64
import codecs
from dataclasses import dataclass
from typing import Final, Literal

PAYLOAD_PREVIEW_BYTES: Final = 4096

Encoding = Literal["utf-8", "base64"]


@dataclass(frozen=True, slots=True)
class PayloadPreview:
    text: str
    encoding: Encoding
    size_bytes: int
    """Size of the whole stored payload."""
    truncated: bool
    """Only the first ``PAYLOAD_PREVIEW_BYTES`` bytes are shown."""


def preview_payload(payload: bytes, limit_bytes: int = PAYLOAD_PREVIEW_BYTES) -> PayloadPreview:
    """The first ``limit_bytes`` of ``payload`` as UTF-8 text when they decode, else base64.

    A multi-byte character cut by the limit does not make the payload "binary": the incremental
    decoder holds back an incomplete trailing sequence instead of failing on it.
    """
    head = payload[:limit_bytes]
    truncated = len(payload) > limit_bytes
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=not truncated)
    except UnicodeDecodeError:
        return PayloadPreview(base64.b64encode(head).decode("ascii"), "base64", len(payload), truncated)
    return PayloadPreview(text, "utf-8", len(payload), truncated)
