"""Prometheus metrics of the collector, registered on a registry the caller owns.

Nothing is registered at import time: the composition root builds one ``CollectorRegistry`` per
process (and tests one per test), so two collectors in one process never clash.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    """Counters are bumped once per bus hand-over (not per message) to stay off the hot path."""

    def __init__(self, registry: CollectorRegistry, namespace: str = "peakwatch_collector") -> None:
        self.messages = Counter("messages", "MQTT messages decoded", namespace=namespace, registry=registry)
        self.readings = Counter(
            "readings", "Readings accepted and handed to the bus", namespace=namespace, registry=registry
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Rejected inputs handed to the bus, by reason",
            ["reason"],
            namespace=namespace,
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "bus_publish_seconds",
            "Time to hand one coalesced group of messages to the bus (back-pressure)",
            namespace=namespace,
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.mqtt_connected = Gauge(
            "mqtt_connected",
            "1 while the MQTT session is up and subscribed",
            namespace=namespace,
            registry=registry,
        )
        self.mqtt_connects = Counter(
            "mqtt_connects",
            "Successful MQTT connections, reconnects included",
            namespace=namespace,
            registry=registry,
        )
        self.mqtt_qos0_lost = Counter(
            "mqtt_qos0_lost",
            "QoS 0 messages lost because handing them to the bus failed (the broker cannot send them again)",
            namespace=namespace,
            registry=registry,
        )
        self.handler_failures = Counter(
            "handler_failures",
            "Messages left unacknowledged because handing them to the bus failed",
            namespace=namespace,
            registry=registry,
        )
