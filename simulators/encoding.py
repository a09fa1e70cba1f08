"""Readings -> MQTT messages in the native payload format the collector decodes.

Topic ``{prefix}/{site_id}/{meter_id}``; payload a JSON object ``{"ts": <epoch ms>, "energy_kwh": ...,
"power_kw": ...}`` or, with ``batch_size > 1``, a JSON array of such objects (several consecutive
readings of the same meter). Values are rounded to 4 decimals of the canonical unit (0.1 Wh, 0.1 L
...), so 7 decimals in MWh and 1 in Wh: a rounded register is still monotonic, the payload stays
short, and a MWh register keeps the resolution of a kWh one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from peakwatch.domain.units import PAYLOAD_FIELDS
from simulators.meters import MeterSample

DECIMALS = 4
"""Of the canonical unit (kWh, kW, m3 ...)."""
_FIELD_DECIMALS = {name: DECIMALS + round(math.log10(scale)) for name, (_, scale) in PAYLOAD_FIELDS.items()}


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    readings: int
    """How many readings the payload carries (as built; a corrupted payload may no longer parse)."""
    malformed: bool = False
    """The fault injector corrupted the payload on purpose."""


def topic_for(prefix: str, site_id: str, meter_id: str) -> str:
    return f"{prefix}/{site_id}/{meter_id}"


def payload_object(sample: MeterSample) -> dict[str, float | int]:
    obj: dict[str, float | int] = {"ts": sample.ts_ms}
    for name, value in sample.fields.items():
        obj[name] = round(value, _FIELD_DECIMALS.get(name, DECIMALS))
    return obj


def encode_payload(samples: Sequence[MeterSample]) -> bytes:
    if len(samples) == 1:
        return msgspec.json.encode(payload_object(samples[0]))
    return msgspec.json.encode([payload_object(s) for s in samples])


class Batcher:
    """Groups each meter's consecutive readings into messages of ``batch_size`` readings.

    With ``batch_size`` 1 every reading is a message at once; otherwise a meter's message leaves when
    its batch is full (``flush`` sends the partial batches at the end of a run).
    """

    def __init__(self, prefix: str, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.prefix = prefix
        self.batch_size = batch_size
        self._pending: dict[tuple[str, str], list[MeterSample]] = {}

    def add(self, samples: Iterable[MeterSample]) -> list[Message]:
        out: list[Message] = []
        if self.batch_size == 1:
            for s in samples:
                out.append(Message(topic_for(self.prefix, s.site_id, s.meter_id), encode_payload((s,)), 1))
            return out
        for s in samples:
            key = (s.site_id, s.meter_id)
            pending = self._pending.setdefault(key, [])
            pending.append(s)
            if len(pending) >= self.batch_size:
                out.append(Message(topic_for(self.prefix, *key), encode_payload(pending), len(pending)))
                del self._pending[key]
        return out

    def flush(self) -> list[Message]:
        out = [
            Message(topic_for(self.prefix, *key), encode_payload(p), len(p))
            for key, p in self._pending.items()
        ]
        self._pending.clear()
        return out
