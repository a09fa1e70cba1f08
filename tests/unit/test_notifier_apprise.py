"""apprise's result, as peakwatch/channels/apprise/sender.py reads it (the delivery itself:
tests/integration)."""

from __future__ import annotations

import pytest

from notifier.channels import Channels
from peakwatch.channels import AppriseChannel
from peakwatch.errors import DeliveryError
from tests.integration.test_notifier_channels import N
from tests.support import free_port


async def test_a_failed_delivery_names_the_failed_services() -> None:
    """apprise >= 2.0 answers ``notify()`` with each service's outcome (1.x: a bare bool, which the
    failure message cannot count or name). Nothing listens on the port, so the one service fails."""
    sender = Channels(user_agent="peakwatch-test")
    channel = AppriseChannel(urls=(f"json://127.0.0.1:{free_port()}/x",))
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(channel, N, "en")
    finally:
        await sender.aclose()
    assert caught.value.retryable
    assert caught.value.detail == "apprise: 1 of 1 services failed (json://)"
