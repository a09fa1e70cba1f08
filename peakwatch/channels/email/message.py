"""An e-mail's message: subject and plain text, base64 so Chinese text survives any relay."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from peakwatch.channels.email.config import EmailChannel
from peakwatch.channels.text import Message


def mail(ch: EmailChannel, message: Message) -> EmailMessage:
    out = EmailMessage()
    out["Subject"] = message.title
    out["From"] = ch.sender
    out["To"] = ", ".join(ch.to)
    out["Date"] = formatdate(localtime=False)
    # An explicit domain: without one make_msgid asks the resolver for this host's name.
    domain = parseaddr(ch.sender)[1].rpartition("@")[2] or "peakwatch.invalid"
    out["Message-ID"] = make_msgid(domain=domain)
    # base64 keeps Chinese text intact through relays without 8BITMIME.
    out.set_content(message.text, charset="utf-8", cte="base64")
    return out
