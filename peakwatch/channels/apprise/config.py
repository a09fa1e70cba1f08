"""An apprise channel's configuration and its checks. The one channel config that imports its
library: apprise's own parser is the only judge of which URLs it understands (it parses; it does not
connect)."""

from __future__ import annotations

import apprise
import msgspec

from peakwatch.channels.checks import scheme
from peakwatch.redaction import url_tokens


class AppriseChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="apprise"):
    """Any of apprise's services by URL (``tgram://``, ``msteams://``, ``ntfy://`` ...), for what the
    other channels do not cover."""

    urls: tuple[str, ...]

    def problem(self) -> str | None:
        if not self.urls:
            return "apprise channel without urls"
        for url in self.urls:
            if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
                return f"apprise does not understand the {scheme(url)}:// URL"
        return None

    def secrets(self) -> list[str]:
        # These addresses are the credential.
        return [part for url in self.urls if url for part in (url, *url_tokens(url))]
