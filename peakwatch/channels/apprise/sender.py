"""Delivery through apprise. apprise parses and sends synchronously (its own HTTP stack), so the check
and the send run in a worker thread, off the event loop the notifier shares."""

from __future__ import annotations

import asyncio

import apprise
import httpx

from peakwatch.channels.apprise.config import AppriseChannel
from peakwatch.channels.checks import channel_problem, scheme
from peakwatch.channels.delivery import Letter
from peakwatch.channels.text import Message
from peakwatch.errors import DeliveryError


async def send(ch: AppriseChannel, letter: Letter, client: httpx.AsyncClient) -> str:
    """``client`` is unused: the table gives every sender the same arguments."""
    return await asyncio.to_thread(_notify, ch, letter.message)


def _notify(ch: AppriseChannel, message: Message) -> str:
    problem = channel_problem(ch)
    if problem is not None:
        raise DeliveryError(problem, retryable=False)
    bundle = apprise.Apprise()
    for url in ch.urls:
        if not bundle.add(url):
            raise DeliveryError(f"apprise does not understand the {scheme(url)}:// URL", retryable=False)
    result = bundle.notify(body=message.text, title=message.title)
    count = len(bundle)
    if not result:
        # Services are named by their scheme only: apprise's URLs and logs hold the tokens.
        failed = sorted({scheme(str(outcome.url)) for outcome in result if not outcome})
        names = f" ({', '.join(f'{s}://' for s in failed)})" if failed else ""
        raise DeliveryError(
            f"apprise: {result.failed_count} of {count} services failed{names}", retryable=True
        )
    return f"apprise: {count} service{'' if count == 1 else 's'}"
