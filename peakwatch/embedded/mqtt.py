"""An MQTT broker inside the peakwatch process (amqtt), for ``peakwatch up`` without ``--mqtt-url``.

What it is and is not (tests/integration/test_embedded_mqtt.py checks each point but the 5 s
timeout, read from amqtt 0.12's source, and the throughput, from bench/mqtt_ingest.py):

* MQTT 3.1.1 only (a 5.0 CONNECT is refused with "unacceptable protocol version"; the collector's
  protocol probe then picks 3.1.1).
* Loopback only, no authentication: every client is accepted. It refuses to bind anything else.
* Persistent sessions are honoured: a client connecting with ``clean_session=False`` keeps its
  subscriptions while away, and QoS 1 messages published meanwhile are queued (in memory, without
  a limit) and delivered when it reconnects. amqtt's stock anonymous-auth plugin marks every client
  "anonymous" and anonymous sessions are dropped on disconnect, so this module installs its own
  plugin that accepts loopback clients without that mark.
* Limits compared with mosquitto: everything is in memory (a broker restart loses queued messages);
  a QoS 1 message delivered to a connected client and not acknowledged within 5 s, or still
  unacknowledged when the client disconnects, is dropped rather than re-sent; throughput is about
  7000 messages per second (sharing the process with the collector). Use a real broker
  (``--mqtt-url``) for production fleets.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin

from peakwatch.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_SESSION_EXPIRY_S = 7 * 86_400


class LoopbackAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type hints
    """Accepts every client of the loopback-only listener as a named (not anonymous) client, which is
    what makes amqtt keep ``clean_session=False`` sessions and queue their QoS 1 messages."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmbeddedBroker:
    """amqtt on ``host:port``; ``start`` returns once the port accepts connections.

    ``start``/``stop`` run on the caller's event loop; the broker serves from that loop, so it only
    makes progress while the loop runs (fine for ``peakwatch up``; the test fixture gives it a
    thread of its own).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        session_expiry_s: int | None = DEFAULT_SESSION_EXPIRY_S,
    ) -> None:
        if not _is_loopback(host):
            raise ConfigError(
                f"the embedded MQTT broker accepts anonymous clients, so it only listens on "
                f"loopback; got host {host!r} (use an external broker with --mqtt-url)"
            )
        if not 0 < port < 65536:
            raise ConfigError(f"invalid MQTT port {port}")
        self.host = host
        self.port = port
        self._session_expiry_s = session_expiry_s
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{self.port}"}},
            "session_expiry_interval": self._session_expiry_s,
            "plugins": {f"{LoopbackAuthPlugin.__module__}.{LoopbackAuthPlugin.__qualname__}": {}},
        }

    async def start(self) -> None:
        if self._broker is not None:
            return
        broker = Broker(self._config(), plugin_namespace=f"peakwatch.embedded.mqtt.{self.port}")
        try:
            await broker.start()
        except Exception as exc:  # amqtt wraps bind errors in BrokerError
            raise ConfigError(
                f"cannot start the embedded MQTT broker on {self.host}:{self.port}: {exc}"
            ) from exc
        self._broker = broker
        log.info("embedded MQTT broker listening on %s", self.url)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
