"""Delivery by SMTP, and what each SMTP answer means for a retry: 4xx is "try later" (greylisting, a
full queue), 5xx is "refused" (bad login, unknown sender)."""

from __future__ import annotations

import ssl

import aiosmtplib
import httpx

from peakwatch.channels.delivery import Letter, scrub
from peakwatch.channels.email.config import EmailChannel
from peakwatch.channels.email.message import mail
from peakwatch.errors import DeliveryError


async def send(ch: EmailChannel, letter: Letter, client: httpx.AsyncClient) -> str:
    """``client`` is unused: the table gives every sender the same arguments."""
    where = f"{ch.host}:{ch.port}"
    secrets = [ch.password]
    try:
        refused, answer = await aiosmtplib.send(
            mail(ch, letter.message),
            hostname=ch.host,
            port=ch.port,
            username=ch.username,
            password=(ch.password or "") if ch.username else None,
            use_tls=ch.security == "tls",
            start_tls=ch.security == "starttls",
            timeout=ch.timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        listed = ", ".join(f"{r.recipient} ({r.code})" for r in exc.recipients)
        raise DeliveryError(
            scrub(f"{where} refused every recipient: {listed}", secrets),
            retryable=bool(codes) and all(400 <= c < 500 for c in codes),
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise DeliveryError(
            scrub(f"{where} answered {exc.code} {exc.message}", secrets), retryable=400 <= exc.code < 500
        ) from None
    except aiosmtplib.SMTPTimeoutError:
        raise DeliveryError(f"no answer from {where} within {ch.timeout_s:g} s", retryable=True) from None
    except aiosmtplib.SMTPNotSupported as exc:
        raise DeliveryError(scrub(f"{where}: {exc}", secrets), retryable=False) from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(scrub(f"{where}: {exc.verify_message}", secrets), retryable=False) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        reason = scrub(str(exc), secrets) or type(exc).__name__
        # aiosmtplib reports a server without STARTTLS or AUTH as a plain SMTPException: a config
        # mismatch that the next attempt meets again.
        retryable = "not supported" not in reason.lower()
        raise DeliveryError(f"cannot deliver to {where}: {reason}", retryable=retryable) from None
    detail = f"250 {answer}"
    if refused:
        # The server took the message for the other recipients: delivered, with a note.
        listed = ", ".join(f"{address} ({response.code})" for address, response in refused.items())
        detail += f"; refused {listed}"
    return scrub(detail, secrets)
