"""The one redaction helper (peakwatch.redaction) and the id patterns that must not take a newline."""

from __future__ import annotations

import io
import logging
import re

import pytest

from peakwatch.bus import _NAME as BUS_OPTION
from peakwatch.config import _LABEL_NAME
from peakwatch.domain.access import _TOKEN, USER_NAME
from peakwatch.domain.devices import DEVICE_ID
from peakwatch.embedded.postgres import _DB_NAME
from peakwatch.redaction import RedactingFormatter, redact_text, redact_url, remember_secret, url_secrets
from peakwatch.registry_doc import ID


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://coll-1:s3cret@broker:1883", "mqtt://coll-1:***@broker:1883"),
        ("mqtts://coll-1:p%40ss%3Aword@broker", "mqtts://coll-1:***@broker"),
        ("mqtt://broker:1883", "mqtt://broker:1883"),
        ("mqtt://only-user@broker", "mqtt://only-user@broker"),
        ("postgresql://pw:a:b@c@db:5432/pw", "postgresql://pw:***@db:5432/pw"),  # '@' and ':' in the password
        (
            "postgresql://db/pw?sslmode=require&password=s3cret&sslpassword=k",
            "postgresql://db/pw?sslmode=require&password=***&sslpassword=***",
        ),
        (
            "https://hooks.example/x?access_token=abc&lang=en",
            "https://hooks.example/x?access_token=***&lang=en",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_urls_words_and_known_secrets() -> None:
    remember_secret("rememb3red-secret", "abc")  # too short to remember: 'abc' stays readable
    text = (
        "cannot connect to mqtt://c:pw1@h:1 (dsn host=db password=pw2 user=u); "
        '{"token": "pw3"} and rememb3red-secret, abc'
    )
    assert redact_text(text, ["extra-secret"]) == (
        'cannot connect to mqtt://c:***@h:1 (dsn host=db password=*** user=u); {"token": ***} and ***, abc'
    )


def test_url_secrets_are_the_password_as_written_and_decoded() -> None:
    assert url_secrets("mqtt://u:p%40ss@h") == ["p%40ss", "p@ss"]
    assert url_secrets("mqtt://h:1883") == []


def test_formatter_masks_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    log = logging.getLogger("test-redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("connecting to %s", "mqtt://coll-1:hunter2hunter2@broker:1883")
        try:
            raise ConnectionError("refused: postgresql://u:dbpass99@db/x")
        except ConnectionError:
            log.exception("database")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "hunter2hunter2" not in out
    assert "dbpass99" not in out
    assert "mqtt://coll-1:***@broker:1883" in out
    assert "Traceback" in out  # the traceback is kept, masked


# A `$`-anchored pattern matches before a final newline: 'id\n' passed the CLI's check and broke the
# broker's password file. Every id pattern must refuse it.
@pytest.mark.parametrize(
    ("pattern", "valid"),
    [
        (DEVICE_ID, "gw-a"),
        (ID, "site-a"),
        (USER_NAME, "alice"),
        (_TOKEN, "pwt_0123456789abcdef_" + "x" * 40),
        (_LABEL_NAME, "class"),
        (_DB_NAME, "peakwatch"),
        (BUS_OPTION, "peakwatch"),
    ],
)
def test_id_patterns_refuse_a_trailing_newline(pattern: re.Pattern[str], valid: str) -> None:
    assert pattern.match(valid)
    assert pattern.match(valid + "\n") is None
