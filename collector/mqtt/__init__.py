"""The MQTT edge of the collector (gmqtt): subscribe, hand each message over, acknowledge after.

Modules: ``source`` (``MqttSource``: the session, its reconnects and the hand-over), ``broker``
(address, protocol probe, subscription filter, back-off; its error is ``peakwatch.errors.MqttError``),
``grouped_acks`` (the fast path, QoS 0 and 1) and ``gmqtt_client`` (every use of gmqtt's private parts, and
why).

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

Grouped hand-over: when ``handler`` is the ``handle`` of an object that also offers
``submit(topic, payload, received_ms) -> Future`` (``collector.Collector``, see ``Batching``),
messages skip gmqtt's task per message: each one is submitted as it is parsed. QoS 1 messages come
through the parser hook (``gmqtt_client.take_qos1``); when the future of their group completes (the
bus accepted the group) the PUBACKs of the whole group leave in one write, in arrival order, on the
connection the messages came on (a connection lost meanwhile gets none: the broker re-delivers them
on the next). A failed group is not acknowledged, exactly as above. QoS 0 messages (sent at QoS 0, or
QoS 0 subscribed or granted) reach gmqtt's ``on_message``, which here is a plain function that gmqtt
calls inline; they have nothing to acknowledge, and those of a refused group are counted lost. Other
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

from collector.mqtt.broker import (
    DEFAULT_SESSION_EXPIRY_S,
    MQTTv50,
    MQTTv311,
    ProtocolVersion,
    parse_broker_url,
    probe_protocol,
    shared_topic_filter,
)
from collector.mqtt.grouped_acks import Batching
from collector.mqtt.source import Handler, MqttSource

__all__ = [
    "DEFAULT_SESSION_EXPIRY_S",
    "Batching",
    "Handler",
    "MQTTv50",
    "MQTTv311",
    "MqttSource",
    "ProtocolVersion",
    "parse_broker_url",
    "probe_protocol",
    "shared_topic_filter",
]
