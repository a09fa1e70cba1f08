"""An e-mail channel's configuration and its checks."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Literal

import msgspec

from peakwatch.channels.checks import timeout_problem


class EmailChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="email"):
    to: tuple[str, ...]
    sender: str
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    security: Literal["none", "starttls", "tls"] = "starttls"
    timeout_s: float = 10.0

    def problem(self) -> str | None:
        if not self.to:
            return "e-mail channel without recipients"
        for role, address in [("sender", self.sender)] + [("recipient", a) for a in self.to]:
            if "@" not in parseaddr(address)[1]:
                return f"e-mail {role} is not an address"
        if not self.host:
            return "e-mail channel without a host"
        if not 0 < self.port < 65536:
            return f"e-mail port {self.port} is not a TCP port"
        if self.password and not self.username:
            return "e-mail password without a username"
        return timeout_problem(self.timeout_s)

    def secrets(self) -> list[str]:
        return [self.password] if self.password is not None else []
