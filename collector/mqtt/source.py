"""``MqttSource``: the collector's MQTT session (connect, subscribe, reconnect, stop) and the hand-over
of each message to the handler, acknowledged after (the package docstring has the contract).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import gmqtt

from collector.metrics import CollectorMetrics
from collector.mqtt.broker import (
    DEFAULT_SESSION_EXPIRY_S,
    Backoff,
    MQTTv50,
    MQTTv311,
    ProtocolVersion,
    parse_broker_url,
    probe_protocol,
    shared_topic_filter,
)
from collector.mqtt.gmqtt_client import Client
from collector.mqtt.grouped_acks import Batching, GroupedAcks
from peakwatch.errors import MqttError
from peakwatch.health import ComponentStatus
from peakwatch.redaction import redact_url

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes, int], Awaitable[None]]
"""``handler(topic, payload, received_ms)``; returning means "on the bus, acknowledge it"."""


class MqttSource:
    """Feeds every message matching ``topic_filter`` to ``handler`` (with ``shared_group``: this
    collector's share of them); see the module docstring.

    ``start`` returns once connected and subscribed (it retries an unreachable broker until
    ``connect_timeout_s``, then raises ``MqttError``); after that, connection losses are repaired in
    the background and ``connected`` tells the current state. ``stop`` disconnects (keeping the
    session on the broker) and waits for handlers already running. One event loop only.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        topic_filter: str,
        qos: int,
        handler: Handler,
        *,
        protocol: ProtocolVersion = "auto",
        shared_group: str | None = None,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        receive_maximum: int = 1000,
        keepalive_s: int = 30,
        connect_timeout_s: float = 30.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        if qos not in (0, 1):
            raise MqttError(f"qos must be 0 or 1, got {qos}", retryable=False)
        if not 1 <= receive_maximum <= 65535:
            raise MqttError(f"receive_maximum must be 1..65535, got {receive_maximum}", retryable=False)
        self._address = parse_broker_url(url)
        self._url = url
        self._client_id = client_id
        self._topic_filter = topic_filter
        self._subscription = shared_topic_filter(topic_filter, shared_group)
        self._shared_group = shared_group
        if shared_group is not None and protocol == "3.1.1":
            raise MqttError(
                f"the shared subscription {self._subscription!r} needs MQTT 5; this source is pinned "
                "to MQTT 3.1.1",
                retryable=False,
            )
        self._qos = qos
        self._handler = handler
        self._protocol = protocol
        self._version: int | None = MQTTv311 if protocol == "3.1.1" else None
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        # separate: a reconnect succeeds (resetting ``_backoff``) even while every hand-over fails
        self._redelivery_backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._stop_timeout_s = stop_timeout_s
        self._metrics = metrics
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # the first subscription was answered (granted or refused)
        self._sub_failed: str | None = None
        self._subscribed_once = False
        self._inflight: set[asyncio.Task[Any]] = set()
        owner = getattr(handler, "__self__", None)
        self._grouped: GroupedAcks | None = (
            GroupedAcks(
                owner,
                failed=self._handover_failed,
                acknowledged=self._redelivery_backoff.reset,
                lost=self._qos0_lost,
            )
            if isinstance(owner, Batching) and getattr(handler, "__name__", "") == "handle"
            else None
        )
        self._redelivery: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def protocol_version(self) -> str | None:
        """``"5"`` or ``"3.1.1"`` once known (after the first connection), else ``None``."""
        if self._version is None:
            return None
        return "5" if self._version == MQTTv50 else "3.1.1"

    @property
    def subscription(self) -> str:
        """The topic filter subscribed: ``topic_filter``, or ``$share/<group>/<topic_filter>``."""
        return self._subscription

    @property
    def grouped_acks(self) -> bool:
        """Whether messages take the grouped path (no task per message; for QoS 1 one PUBACK write per
        hand-over group): the handler is a ``Batching`` object's ``handle`` and, when QoS 1 is
        subscribed, gmqtt offers the QoS 1 hook."""
        client = self._client
        return self._grouped is not None and (client is None or self._qos == 0 or client.takes_qos1)

    @property
    def connected(self) -> bool:
        """Connected and subscribed right now."""
        return self._ready.is_set()

    def health(self) -> ComponentStatus:
        """The broker (credentials masked) and whether the subscription is up."""
        return ComponentStatus(
            name="mqtt", ok=self.connected, detail=f"{redact_url(self._url)} connected={self.connected}"
        )

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Until ``connected`` (e.g. after the broker came back); ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            await self._ready.wait()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._client is not None:
            raise MqttError("MqttSource already started", retryable=False)
        self._stopping = False
        self._sub_failed = None
        self._subscribed_once = False  # a (re)started source always subscribes on its first connection
        self._settled.clear()
        self._set_ready(False)
        client = self._client = self._new_client()
        try:
            await self._first_connection(client)
        except BaseException:
            self._client = None
            await self._abandon(client)
            raise

    async def _first_connection(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout_s
        address = self._address
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    version = self._version
                    if version is None:
                        version = self._version = await probe_protocol(address)
                        log.info("MQTT broker %s speaks MQTT %s", self._where(), self.protocol_version)
                    if version == MQTTv311 and self._shared_group is not None:
                        raise MqttError(
                            f"MQTT broker {self._where()} speaks only MQTT 3.1.1: the shared "
                            f"subscription {self._subscription!r} needs MQTT 5 (a 3.1.1 broker may "
                            "take it for an ordinary topic and deliver nothing)",
                            retryable=False,
                        )
                    await client.connect(
                        address.host,
                        address.port,
                        ssl=address.tls,
                        keepalive=self._keepalive_s,
                        version=version,
                    )
                    await self._settled.wait()
                break
            except gmqtt.MQTTConnectError as exc:
                raise MqttError(
                    f"MQTT broker {self._where()} refused the connection: {exc}", retryable=False
                ) from exc
            except OSError as exc:  # nobody listening (yet), or the deadline (TimeoutError is an OSError)
                delay = self._backoff.next_delay_s()
                if loop.time() + delay >= deadline:
                    raise MqttError(
                        f"MQTT broker {self._where()} not usable within "
                        f"{self._connect_timeout_s:g} s: {exc or type(exc).__name__}",
                        retryable=True,
                    ) from exc
                log.info("MQTT broker %s not reachable (%s); retrying in %.1f s", self._where(), exc, delay)
                await asyncio.sleep(delay)
        if self._sub_failed is not None:
            raise MqttError(self._sub_failed, retryable=False)

    async def stop(self) -> None:
        """Disconnect without ending the session; handlers already running finish (their messages
        will be re-delivered on the next connection, since their acknowledgement cannot be sent)."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        if self._redelivery is not None:
            self._redelivery.cancel()
        if self._inflight or self._pending():  # a moment for running hand-overs: their PUBACKs go out
            await asyncio.wait(self._running(), timeout=min(1.0, self._stop_timeout_s))
            await asyncio.sleep(0)  # the PUBACK callbacks of groups that just completed
        await self._abandon(client)
        if self._inflight or self._pending():
            _, pending = await asyncio.wait(self._running(), timeout=self._stop_timeout_s)
            if pending:
                log.warning(
                    "%d MQTT hand-over(s) still running after %g s", len(pending), self._stop_timeout_s
                )

    def _running(self) -> set[asyncio.Future[Any]]:
        return {*self._inflight, *self._pending()}

    def _pending(self) -> set[asyncio.Future[None]]:
        return set() if self._grouped is None else self._grouped.pending

    async def _abandon(self, client: Client) -> None:
        self._set_ready(False)
        try:
            await client.disconnect()
        except (OSError, AttributeError, RuntimeError) as exc:  # never connected, or already gone
            log.debug("MQTT disconnect: %s", exc)

    def _where(self) -> str:
        return f"{self._address.host}:{self._address.port}"

    def _new_client(self) -> Client:
        properties: dict[str, Any] = {}
        if self._protocol != "3.1.1":  # gmqtt leaves these out of a 3.1.1 CONNECT
            properties = {
                "session_expiry_interval": self._session_expiry_s,
                "receive_maximum": self._receive_maximum,
            }
        client = Client(
            self._client_id,
            self._backoff,
            clean_session=False,
            optimistic_acknowledgement=False,
            **properties,
        )
        if self._address.username is not None:
            client.set_auth_credentials(self._address.username, self._address.password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        if self._grouped is not None:
            if self._qos == 0 or client.take_qos1(self._on_qos1):
                # only QoS 0 messages still reach on_message, and gmqtt calls a plain function inline
                client.on_message = self._on_qos0
            else:
                log.info("this gmqtt offers no QoS 1 hook: one task per message")
        return client

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        if self._metrics is not None:
            self._metrics.mqtt_connected.set(1 if ready else 0)

    # ------------------------------------------------------------------ gmqtt callbacks

    def _on_connect(self, client: Client, session_present: int, rc: int, properties: dict[str, Any]) -> None:
        self._backoff.reset()
        if self._metrics is not None:
            self._metrics.mqtt_connects.inc()
        log.info(
            "MQTT connected to %s as %r (session present: %s, subscription %r)",
            self._where(),
            self._client_id,
            bool(session_present),
            self._subscription,
        )
        if session_present and self._subscribed_once:
            self._set_ready(True)  # the broker kept our subscription with the session
            self._settled.set()
            return
        # the first connection of this process always subscribes, in case the filter changed
        client.subscribe(gmqtt.Subscription(self._subscription, qos=self._qos))
        if session_present and self._shared_group is not None:
            client.unsubscribe(self._topic_filter)  # left from before the group: see the module docstring

    def _on_subscribe(self, client: Client, mid: int, granted: tuple[int, ...], properties: Any) -> None:
        refused = [code for code in granted if code >= 0x80]
        if refused:
            self._sub_failed = (
                f"MQTT broker {self._where()} refused the subscription {self._subscription!r} "
                f"(reason code 0x{refused[0]:02x}"
                + (": shared subscriptions not supported)" if refused[0] == 0x9E else ")")
            )
            log.error("%s", self._sub_failed)
            self._settled.set()
            return
        if granted and granted[0] < self._qos:
            log.warning(
                "MQTT broker granted QoS %d for %r (asked %d): messages may be lost while the "
                "collector is away",
                granted[0],
                self._subscription,
                self._qos,
            )
        self._subscribed_once = True
        self._set_ready(True)
        self._settled.set()

    def _on_disconnect(self, client: Client, packet: Any, exc: BaseException | None = None) -> None:
        if self._ready.is_set() and not self._stopping:
            log.warning("MQTT connection to %s lost; reconnecting", self._where())
        self._set_ready(False)

    async def _on_message(
        self, client: Client, topic: str | bytes, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> int:
        received_ms = time.time_ns() // 1_000_000
        if isinstance(topic, bytes):  # gmqtt hands over raw bytes when the topic is not UTF-8
            topic = topic.decode("utf-8", errors="replace")
        task = asyncio.current_task()
        if task is not None:
            # gmqtt registered its PUBACK callback first, so a task leaves ``_inflight`` only once its
            # PUBACK is written: ``stop`` waits for that before it closes the connection
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        try:
            await self._handler(topic, payload, received_ms)
        except Exception:
            self._handover_failed(True)
            raise  # gmqtt then sends no PUBACK (asyncio logs the exception): the broker keeps the message
        self._redelivery_backoff.reset()
        return 0  # PUBACK reason "success"

    def _on_qos1(self, mid: int, topic: str | bytes, payload: bytes) -> None:
        assert self._grouped is not None
        self._grouped.take(self._client, mid, topic, payload)

    def _on_qos0(
        self, client: Client, topic: str | bytes, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> None:
        """A QoS 0 message (gmqtt's ``on_message`` when QoS 1 takes the hook, or QoS 0 is subscribed):
        a plain function, which gmqtt's parser calls inline, so no task per message either."""
        assert self._grouped is not None
        self._grouped.take(self._client, None, topic, payload)

    def _qos0_lost(self, count: int) -> None:
        if self._metrics is not None:
            self._metrics.mqtt_qos0_lost.inc(count)
        log.warning(
            "%d QoS 0 message(s) lost: the bus refused them and the broker cannot send them again", count
        )

    def _handover_failed(self, count: bool) -> None:
        """A hand-over failed: count it (unless the collector did, or the source is stopping) and have
        the broker deliver the message again."""
        if count and self._metrics is not None and not self._stopping:
            self._metrics.handler_failures.inc()
        self._schedule_redelivery()

    def _schedule_redelivery(self) -> None:
        """After a failed hand-over: re-open the connection (after a back-off) so the broker re-sends
        the unacknowledged messages; without it they would wait for the next network hiccup."""
        if self._stopping or (self._redelivery is not None and not self._redelivery.done()):
            return
        self._redelivery = asyncio.create_task(self._redeliver(), name="mqtt-redelivery")

    async def _redeliver(self) -> None:
        delay = self._redelivery_backoff.next_delay_s()
        log.warning(
            "handing a message to the bus failed; reconnecting to %s in %.1f s for a re-delivery",
            self._where(),
            delay,
        )
        await asyncio.sleep(delay)
        client = self._client
        if client is None or self._stopping:
            return
        self._set_ready(False)
        await client.drop_connection()
