"""Dead-letter payload previews: text when UTF-8, base64 otherwise, cut at the preview limit."""

from __future__ import annotations

import base64

import pytest

from api.payloads import PAYLOAD_PREVIEW_BYTES, preview_payload


@pytest.mark.parametrize(
    ("payload", "limit", "text", "encoding", "truncated"),
    [
        (b"{not json", 16, "{not json", "utf-8", False),
        (b"", 16, "", "utf-8", False),
        ("温度".encode(), 16, "温度", "utf-8", False),
        (b"0123456789abcdefXYZ", 16, "0123456789abcdef", "utf-8", True),
        # "a" is 1 byte, "温" and "度" 3 each: a 4-byte cut ends exactly after "温"
        ("a温度".encode(), 4, "a温", "utf-8", True),
        # a cut inside "度" (bytes 4..6) drops the incomplete character, the payload is still text
        ("a温度".encode(), 5, "a温", "utf-8", True),
        (b"\xff\xfe\x00\x01", 16, base64.b64encode(b"\xff\xfe\x00\x01").decode(), "base64", False),
        (b"\x80" * 20, 16, base64.b64encode(b"\x80" * 16).decode(), "base64", True),
        # an incomplete character at the very end of a whole payload is invalid, not cut by us
        ("温".encode()[:2], 16, base64.b64encode("温".encode()[:2]).decode(), "base64", False),
    ],
)
def test_preview(payload: bytes, limit: int, text: str, encoding: str, truncated: bool) -> None:
    preview = preview_payload(payload, limit)
    assert (preview.text, preview.encoding, preview.truncated) == (text, encoding, truncated)
    assert preview.size_bytes == len(payload)


def test_default_limit_is_4_kib() -> None:
    preview = preview_payload(b"x" * 10_000)
    assert PAYLOAD_PREVIEW_BYTES == 4096
    assert preview.text == "x" * 4096
    assert preview.truncated
    assert preview.size_bytes == 10_000
