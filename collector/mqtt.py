"""The MQTT edge of the collector (gmqtt): subscribe, hand each message over, acknowledge after.

Delivery contract (docs/ingest.md, "Delivery"):

* QoS 1 with a persistent session (``clean_session=False``; on MQTT 5 a session expiry of
  ``session_expiry_s``), so a broker keeps what arrives while the collector is away and delivers it
  when the same ``client_id`` reconnects.
* ``optimistic_acknowledgement=False``: gmqtt sends the PUBACK only when the handler returned, i.e.
  when the bus holds the message's readings and dead letters. A message whose handler raised is not
  acknowledged; the source then drops and re-opens the connection after a back-off, and the broker
  re-delivers every unacknowledged message of the session (MQTT-4.4.0-1). Delivery is at-least-once;
  duplicates are dropped downstream by ``(site, meter, ts)``.
* The broker's in-flight window bounds the work in progress: on MQTT 5 the collector announces
  ``receive_maximum`` (unacknowledged messages the broker may send ahead); on MQTT 3.1.1 the broker's
  own setting applies (mosquitto ``max_inflight_messages``, 20 by default).

Grouped acknowledgements: when ``handler`` is the ``handle`` of an object that also offers
``submit(topic, payload, received_ms) -> Future`` (``collector.Collector``, see ``Batching``), QoS 1
messages skip gmqtt's task per message: each one is submitted as it is parsed, and when the future of
its group completes (the bus accepted the group) the PUBACKs of the whole group leave in one write,
in arrival order, on the connection the messages came on (a connection lost meanwhile gets none: the
broker re-delivers them on the next). A failed group is not acknowledged, exactly as above. Other
handlers (plain coroutine functions) keep gmqtt's path: one task, then one PUBACK, per message.

Protocol version: ``"auto"`` (default) asks the broker first (``probe_protocol``: one throw-away
MQTT 5 CONNECT) and uses MQTT 5 when it is accepted, else 3.1.1 (the embedded amqtt broker speaks
3.1.1 only); ``"3.1.1"`` skips the probe. gmqtt's own fall-back is not used: amqtt closes the socket
right after refusing, and gmqtt then loses the refusal and retries MQTT 5 forever.

Shared subscriptions (``shared_group``): several collectors with the same group and distinct client
ids subscribe ``$share/<group>/<topic_filter>``, and the broker gives each message to one of them.
The messages carry their real topic, so decoding is unchanged. Each member keeps its own persistent
session: mosquitto (2.0.11, measured) deals messages round-robin to every member of the group,
offline ones included, and queues an offline member's share in its session until it reconnects (or
the session expires), so a stopped collector's share waits for it rather than going to the others.
A group needs MQTT 5: ``start`` refuses a broker that speaks only 3.1.1 (one may take
``$share/...`` for an ordinary topic, grant it and deliver nothing: the embedded amqtt broker does),
and a source pinned to 3.1.1. The first connection of a shared source also unsubscribes the plain
``topic_filter``: a session kept from before the group was set still holds it, and the collector
would then receive every message, plus its share.

Reconnects: gmqtt re-opens the connection itself whenever it drops; this module only replaces its
fixed delay by an exponential back-off (``backoff_initial_s`` doubling up to ``backoff_max_s``),
reset by every successful connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, Protocol, runtime_checkable

import gmqtt

from collector.metrics import CollectorMetrics
from peakwatch.config import check_mqtt_shared_group
from peakwatch.errors import ConfigError, PeakwatchError
from peakwatch.health import ComponentStatus
from peakwatch.mqtt_url import BrokerAddress
from peakwatch.redaction import redact_url

log = logging.getLogger(__name__)

MQTTv311: Final = 4  # protocol levels as gmqtt's ``connect(version=...)`` takes them
MQTTv50: Final = 5
_PUBACK: Final = b"\x40\x02"  # fixed header of a PUBACK without reason code (success, 3.1.1 and 5)

Handler = Callable[[str, bytes, int], Awaitable[None]]
"""``handler(topic, payload, received_ms)``; returning means "on the bus, acknowledge it"."""


@runtime_checkable
class Batching(Protocol):
    """A handler owner that can take a message without a task of its own (``collector.Collector``)."""

    def submit(self, topic: str, payload: bytes, received_ms: int) -> asyncio.Future[None]:
        """Take the message; the future completes once it is on the bus (shared by a group of
        messages), or fails if the bus refused it."""
        ...


ProtocolVersion = Literal["auto", "3.1.1"]

DEFAULT_SESSION_EXPIRY_S = 7 * 86_400
"""How long an MQTT 5 broker keeps the collector's session (and queues its messages) while it is
away. MQTT 3.1.1 has no such field: the broker's own setting applies (mosquitto
``persistent_client_expiration``, never by default)."""


class MqttError(PeakwatchError):
    """The broker cannot be used: unreachable within the start timeout, refused the connection
    (``retryable`` False: credentials, protocol) or the subscription."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def shared_topic_filter(topic_filter: str, group: str | None) -> str:
    """What to subscribe: ``$share/<group>/<topic_filter>`` for a group, else ``topic_filter``. A
    group that cannot be a share name is a non-retryable ``MqttError``."""
    if group is None:
        return topic_filter
    try:
        check_mqtt_shared_group(group)
    except ConfigError as exc:
        raise MqttError(str(exc), retryable=False) from exc
    return f"$share/{group}/{topic_filter}"


def parse_broker_url(url: str) -> BrokerAddress:
    """The broker address, with a bad URL reported as a non-retryable ``MqttError``."""
    try:
        return BrokerAddress.parse(url)
    except ConfigError as exc:
        raise MqttError(str(exc), retryable=False) from exc


async def probe_protocol(address: BrokerAddress, timeout_s: float = 5.0) -> int:
    """``MQTTv50`` if the broker accepts an MQTT 5 CONNECT, else ``MQTTv311``.

    The probe connects with a random client id and a clean start (so it leaves no session behind), and
    waits for the broker to close a refused connection before closing its own side (amqtt logs an
    error if the client hangs up first). Raises ``OSError`` if the broker is unreachable.
    """
    client_id = f"peakwatch-probe-{secrets.token_hex(6)}".encode()
    # CONNECT: protocol "MQTT" level 5, clean start, keep-alive 10 s, no properties, client id
    body = b"\x00\x04MQTT\x05\x02\x00\x0a\x00" + len(client_id).to_bytes(2, "big") + client_id
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(address.host, address.port, ssl=address.tls or None)
        try:
            writer.write(bytes([0x10, len(body)]) + body)
            await writer.drain()
            try:
                packet_type = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:  # remaining length: a variable byte integer
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80 or shift > 21:
                        break
                connack = await reader.readexactly(length)
            except asyncio.IncompleteReadError:  # closed without an answer: not MQTT 5
                return MQTTv311
            reason = connack[1] if packet_type == 0x20 and len(connack) >= 2 else 0x01
            if reason == 0:
                with contextlib.suppress(OSError):
                    writer.write(b"\xe0\x00")  # DISCONNECT, normal
                    await writer.drain()
                return MQTTv50
            with contextlib.suppress(OSError):
                await reader.read()  # a refused client waits for the broker to close first
            # 3.1.1 "unacceptable protocol version", 5.0 "unsupported protocol version"; any other
            # refusal (e.g. credentials: the probe sends none) came as an MQTT 5 answer
            return MQTTv311 if reason in (0x01, 0x84) else MQTTv50
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class _Backoff:
    def __init__(self, initial_s: float, max_s: float) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._next_s = initial_s
        self._jitter = random.Random()  # noqa: S311 - spreading reconnects, not cryptography

    def reset(self) -> None:
        self._next_s = self._initial_s

    def next_delay_s(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self._max_s)
        return delay * self._jitter.uniform(0.8, 1.2)


class _Client(gmqtt.Client):  # type: ignore[misc]  # gmqtt ships no type hints
    """gmqtt's client with an exponential reconnect delay instead of its fixed 6 s."""

    def __init__(self, client_id: str, backoff: _Backoff, **kwargs: Any) -> None:
        super().__init__(client_id, **kwargs)
        self.peakwatch_backoff = backoff
        self.takes_qos1 = False

    def take_qos1(self, take: Callable[[int, str | bytes, bytes], None]) -> bool:
        """Route QoS 1 PUBLISHes to ``take(packet_id, topic, payload)`` instead of ``on_message``:
        nothing is acknowledged for them unless the caller does it (``send_pubacks``). False when
        this gmqtt has no such hook (the caller then keeps the ``on_message`` path)."""
        handler: Any = getattr(self, "_package_handler", self)  # gmqtt >= 0.7: a separate object
        if not callable(getattr(handler, "_handle_qos_1_publish_packet", None)):
            return False

        def qos1(mid: int, packet: bytes, print_topic: str | bytes, properties: Any) -> None:
            take(mid, print_topic, packet)

        handler._handle_qos_1_publish_packet = qos1
        self.takes_qos1 = True
        return True

    @property
    def current_connection(self) -> Any:
        return self._connection

    def send_pubacks(self, connection: Any, packet_ids: list[int]) -> bool:
        """PUBACK (success) for ``packet_ids`` in one write, if ``connection`` is still the open one."""
        if connection is None or connection is not self._connection or connection.is_closing():
            return False
        connection.send_package(b"".join([_PUBACK + mid.to_bytes(2, "big") for mid in packet_ids]))
        return True

    async def reconnect(self, delay: bool = False) -> None:
        if delay:
            self.reconnect_delay = self.peakwatch_backoff.next_delay_s()
        await super().reconnect(delay=delay)

    async def drop_connection(self) -> None:
        """Close the socket as a network failure would; gmqtt then reconnects on its own. (Calling
        ``reconnect`` directly races with the reconnect gmqtt starts when it sees the old socket
        close, and can leave a second, orphaned connection under the same client id.)"""
        connection = self._connection
        if connection is not None and not connection.is_closing():
            await connection.close()


class _Acks:
    """Packet ids waiting for one group's hand-over, and the connection they arrived on."""

    __slots__ = ("client", "connection", "done", "packet_ids")

    def __init__(self, done: asyncio.Future[None], client: _Client, connection: Any) -> None:
        self.done = done
        self.client = client
        self.connection = connection
        self.packet_ids: list[int] = []

    def callback(self, then: Callable[[_Acks], None]) -> Callable[[asyncio.Future[None]], None]:
        return lambda _future: then(self)


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
        self._backoff = _Backoff(backoff_initial_s, backoff_max_s)
        # separate: a reconnect succeeds (resetting ``_backoff``) even while every hand-over fails
        self._redelivery_backoff = _Backoff(backoff_initial_s, backoff_max_s)
        self._stop_timeout_s = stop_timeout_s
        self._metrics = metrics
        self._client: _Client | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # the first subscription was answered (granted or refused)
        self._sub_failed: str | None = None
        self._subscribed_once = False
        self._inflight: set[asyncio.Task[Any]] = set()
        owner = getattr(handler, "__self__", None)
        self._batching: Batching | None = (
            owner if isinstance(owner, Batching) and getattr(handler, "__name__", "") == "handle" else None
        )
        self._acks: _Acks | None = None  # the group the next message is likely to join
        self._pending_acks: set[_Acks] = set()
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
        """Whether QoS 1 messages take the grouped path (no task per message; one PUBACK write per
        hand-over group): the handler is a ``Batching`` object's ``handle`` and gmqtt offers the hook."""
        client = self._client
        return self._batching is not None and (client is None or client.takes_qos1)

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

    async def _first_connection(self, client: _Client) -> None:
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
        if self._inflight or self._pending_acks:  # a moment for running hand-overs: their PUBACKs go out
            await asyncio.wait(self._running(), timeout=min(1.0, self._stop_timeout_s))
            await asyncio.sleep(0)  # the PUBACK callbacks of groups that just completed
        await self._abandon(client)
        if self._inflight or self._pending_acks:
            _, pending = await asyncio.wait(self._running(), timeout=self._stop_timeout_s)
            if pending:
                log.warning(
                    "%d MQTT hand-over(s) still running after %g s", len(pending), self._stop_timeout_s
                )

    def _running(self) -> set[asyncio.Future[Any]]:
        return {*self._inflight, *(acks.done for acks in self._pending_acks)}

    async def _abandon(self, client: _Client) -> None:
        self._set_ready(False)
        try:
            await client.disconnect()
        except (OSError, AttributeError, RuntimeError) as exc:  # never connected, or already gone
            log.debug("MQTT disconnect: %s", exc)

    def _where(self) -> str:
        return f"{self._address.host}:{self._address.port}"

    def _new_client(self) -> _Client:
        properties: dict[str, Any] = {}
        if self._protocol != "3.1.1":  # gmqtt leaves these out of a 3.1.1 CONNECT
            properties = {
                "session_expiry_interval": self._session_expiry_s,
                "receive_maximum": self._receive_maximum,
            }
        client = _Client(
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
        if self._batching is not None and self._qos == 1 and not client.take_qos1(self._on_qos1):
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

    def _on_connect(self, client: _Client, session_present: int, rc: int, properties: dict[str, Any]) -> None:
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

    def _on_subscribe(self, client: _Client, mid: int, granted: tuple[int, ...], properties: Any) -> None:
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

    def _on_disconnect(self, client: _Client, packet: Any, exc: BaseException | None = None) -> None:
        if self._ready.is_set() and not self._stopping:
            log.warning("MQTT connection to %s lost; reconnecting", self._where())
        self._set_ready(False)

    async def _on_message(
        self, client: _Client, topic: str | bytes, payload: bytes, qos: int, properties: dict[str, Any]
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
            if self._metrics is not None and not self._stopping:
                self._metrics.handler_failures.inc()
            self._schedule_redelivery()
            raise  # gmqtt then sends no PUBACK (asyncio logs the exception): the broker keeps the message
        self._redelivery_backoff.reset()
        return 0  # PUBACK reason "success"

    def _on_qos1(self, mid: int, topic: str | bytes, payload: bytes) -> None:
        """A QoS 1 message, straight from gmqtt's parser (no task): submit it, remember its packet id
        with its group's future; ``_group_done`` acknowledges the group."""
        received_ms = time.time_ns() // 1_000_000
        if isinstance(topic, bytes):
            topic = topic.decode("utf-8", errors="replace")
        client = self._client
        assert self._batching is not None
        if client is None:
            return  # stopping: not acknowledged, the broker keeps it for the next connection
        try:
            done = self._batching.submit(topic, payload, received_ms)
        except Exception:
            log.exception("handing a message from %s to the collector failed", topic)
            if self._metrics is not None and not self._stopping:
                self._metrics.handler_failures.inc()
            self._schedule_redelivery()
            return
        connection = client.current_connection
        acks = self._acks
        if acks is None or acks.done is not done or acks.connection is not connection:
            acks = self._acks = _Acks(done, client, connection)
            self._pending_acks.add(acks)
            done.add_done_callback(acks.callback(self._group_done))
        acks.packet_ids.append(mid)

    def _group_done(self, acks: _Acks) -> None:
        self._pending_acks.discard(acks)
        if self._acks is acks:
            self._acks = None
        done = acks.done
        if done.cancelled() or done.exception() is not None:
            # the submitter counted the failure (Collector: handler_failures); no PUBACK, re-delivery
            self._schedule_redelivery()
            return
        self._redelivery_backoff.reset()
        acks.client.send_pubacks(acks.connection, acks.packet_ids)

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
