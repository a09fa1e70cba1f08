"""MQTT broker URLs, one parser for every component that connects to a broker."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from peakwatch.errors import ConfigError
from peakwatch.redaction import redact_url

_PLAIN = ("mqtt", "tcp")
_TLS = ("mqtts", "ssl")


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://[user[:password]@]host[:port]`` (port 1883) or ``mqtts://`` (TLS, 8883); ``tcp://``
        and ``ssl://`` are accepted as aliases. Credentials are percent-decoded. Raises ConfigError
        naming the URL (never its password) when it cannot be used."""
        parts = urllib.parse.urlsplit(url)
        shown = redact_url(url)
        if parts.scheme not in _PLAIN + _TLS or not parts.hostname:
            raise ConfigError(f"invalid MQTT url {shown!r}: use mqtt://host:port or mqtts://host:port")
        tls = parts.scheme in _TLS
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigError(f"invalid port in MQTT url {shown!r}") from exc
        username = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, tls, username, password)
