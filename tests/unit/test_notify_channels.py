"""The table of notification channels (peakwatch.channels) and what each channel's config says about
itself: its secrets (what the composition root masks) and its id in a receiver. The delivery and the
checks against real servers: tests/integration/test_notifier_channels.py."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from peakwatch import channels as ch
from peakwatch.notify_config import Receiver

CHANNELS_ROOT = Path(__file__).resolve().parents[2] / "peakwatch" / "channels"


def test_the_table_the_union_and_the_folders_agree() -> None:
    assert {row.config for row in ch.CHANNELS} == set(get_args(ch.Channel))
    folders = {p.parent.name for p in CHANNELS_ROOT.glob("*/__init__.py")}
    assert {row.config.__struct_config__.tag for row in ch.CHANNELS} == folders


def test_each_channel_finds_its_row() -> None:
    slack = ch.SlackChannel(webhook_url="https://hooks.example/T1")
    assert ch.channel_type(slack).config is ch.SlackChannel
    assert ch.channel_tag(slack) == "slack"
    # Only apprise checks itself (in its worker thread); the notifier checks the others before sending.
    assert [row.config for row in ch.CHANNELS if row.checks_itself] == [ch.AppriseChannel]


SLACK_URL = "https://hooks.slack.example/services/T0000000/B0000000/abcdefgh"


@pytest.mark.parametrize(
    ("channel", "secrets"),
    [
        (
            # bearer token, header values, then the relay's password as written and decoded
            ch.WebhookChannel(
                url="https://u:p%40ss@relay.example/am", bearer_token="tok", headers={"X-Key": "k1"}
            ),
            ["tok", "k1", "p%40ss", "p@ss"],
        ),
        (ch.WebhookChannel(url="https://relay.example/am"), []),
        (ch.EmailChannel(to=("a@x.example",), sender="b@x.example", host="smtp", password="pw"), ["pw"]),
        (ch.EmailChannel(to=("a@x.example",), sender="b@x.example", host="smtp"), []),
        (ch.WeComChannel(key="wk"), ["wk"]),
        (ch.DingTalkChannel(access_token="at", secret="ds"), ["at", "ds"]),
        (ch.FeishuChannel(hook="fh", secret="fs"), ["fs", "fh"]),
        # the address, then its path segments of 8 or more characters ("services" is 8 too)
        (ch.SlackChannel(webhook_url=SLACK_URL), [SLACK_URL, "services", "T0000000", "B0000000", "abcdefgh"]),
        # apprise: each address, then its query values (tok=secret1)
        (ch.AppriseChannel(urls=("json://h/?tok=secret1",)), ["json://h/?tok=secret1", "secret1"]),
    ],
    ids=lambda v: v.__struct_config__.tag if hasattr(v, "__struct_config__") else "",
)
def test_secrets_of_each_channel(channel: ch.Channel, secrets: list[str]) -> None:
    assert channel.secrets() == secrets


def test_a_control_character_is_named_by_field_before_the_channel_s_own_check() -> None:
    # key "wk\n": a secret read with its trailing newline; the url is fine, the key is the field named
    problem = ch.channel_problem(ch.WeComChannel(key="wk\n"))
    assert problem == "key contains a control character (a secret read with its trailing newline?)"
    assert ch.channel_problem(ch.WeComChannel(key="")) == "wecom channel without a key"
    assert ch.channel_problem(ch.WeComChannel(key="wk")) is None


def test_channel_ids_number_the_channels_of_a_receiver() -> None:
    receiver = Receiver(
        name="oncall", channels=(ch.WeComChannel(key="k"), ch.SlackChannel(webhook_url=SLACK_URL))
    )
    assert receiver.channel_ids() == ("oncall/0:wecom", "oncall/1:slack")
