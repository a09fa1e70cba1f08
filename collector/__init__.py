"""The collector service: MQTT messages in, validated unit-normalised readings and dead letters out
onto the bus (docs/ingest.md is the device-facing contract).

``mqtt`` is the network edge, ``service`` the hand-over to the bus, ``decode`` the pure rules.
"""

from collector.decode import DecodeContext, Decoded, decode_message
from collector.metrics import CollectorMetrics
from collector.mqtt import MqttSource
from collector.service import Collector
from peakwatch.domain.reasons import Reason
from peakwatch.errors import MqttError

__all__ = [
    "Collector",
    "CollectorMetrics",
    "DecodeContext",
    "Decoded",
    "MqttError",
    "MqttSource",
    "Reason",
    "decode_message",
]
