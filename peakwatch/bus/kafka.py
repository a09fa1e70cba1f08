"""The Kafka bus (aiokafka): collectors on many machines, processors sharing the sites between them.

Topics (created at ``start`` when missing)::

    <prefix>.readings       one ReadingBatch per record (msgpack), key = site id: a site's readings stay
                            in one partition, in order, and are processed by one processor at a time
    <prefix>.dead-letters   one DeadLetter per record, key = its site id (else its source)

Processors form the consumer group ``<prefix>-processors``; Kafka gives each a share of the partitions,
and with them the sites that hash there (the producer's partitioner, murmur2 as in the Java client, so
other producers agree). When the group changes, ``Ownership.released`` runs while this process still
owns its partitions (the processor finishes its writes and commits their offsets) and
``Ownership.acquired`` names the sites it owns afterwards (the processor restores them from the store).

Delivery: ``publish`` returns once the broker acknowledged the record (``acks=all``), so the collector
acknowledges MQTT only for readings Kafka holds. ``commit`` stores the offsets of what a processor
stored; a processor that dies before committing leaves those records to the next owner, and the store's
idempotent writes make the repeat harmless. A record that cannot be decoded is not dropped: it becomes a
dead letter (``bus_undecodable``) carrying its bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
)
from aiokafka.partitioner import murmur2

from peakwatch.bus.base import Bus, Ownership, Polled
from peakwatch.clock import now_ms
from peakwatch.domain.models import DeadLetter, ReadingBatch
from peakwatch.errors import BusError

log = logging.getLogger(__name__)

SCHEMA_HEADER = "peakwatch-schema"
READINGS_SCHEMA = b"reading-batch/1"
DEAD_LETTER_SCHEMA = b"dead-letter/1"
MAX_RECORD_BYTES = 16 << 20
"""Largest record (a collector batch of 5,000 readings with long ids is about 1 MB): the topics and the
producer allow this much, the broker's default of 1 MiB would refuse such a batch for ever."""
TOPIC_EXISTS = 36
"""Kafka's error code TOPIC_ALREADY_EXISTS."""
READINGS_PER_RECORD = 2_500
"""A collector batch's usual size, to turn ``poll``'s reading budget into a record count."""
UNDECODABLE = "bus_undecodable"
"""Dead-letter reason of a bus record no peakwatch version could have written."""


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """What a ``kafka://`` URL says (``peakwatch.bus.open_bus`` parses it)."""

    bootstrap: tuple[str, ...]
    prefix: str = "peakwatch"
    partitions: int = 12
    """Partitions of a topic peakwatch creates: the most processors that can share the work."""
    replication: int = 1
    session_timeout_ms: int = 10_000
    """How long the group waits for a silent processor before giving its sites to the others."""
    client_id: str = "peakwatch"

    @property
    def readings_topic(self) -> str:
        return f"{self.prefix}.readings"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.prefix}.dead-letters"

    @property
    def group(self) -> str:
        return f"{self.prefix}-processors"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default partitioner (ours, aiokafka's, the Java client's) gives ``key``."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def _partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default for keys, but never random: every record carries a key here."""
    if key is None:
        raise BusError("a bus record has no key")
    return all_partitions[partition_of(key, len(all_partitions))]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._bus._released(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._bus._acquired(set(assigned))


class KafkaBus(Bus):
    """A bus on Kafka (or any broker speaking its protocol). See the module docstring."""

    shared = True

    def __init__(self, options: KafkaOptions) -> None:
        self.options = options
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._consumer_lock = asyncio.Lock()
        self._listener: Ownership | None = None
        self._owned: frozenset[int] = frozenset()
        """Partitions of the readings topic this process owns."""
        self._readings_partitions: int | None = None
        self._next: dict[TopicPartition, int] = {}
        """Per assigned partition, the offset after the last record ``poll`` returned."""
        self._closed = False
        self._batch_decoder = msgspec.msgpack.Decoder(ReadingBatch)
        self._letter_decoder = msgspec.msgpack.Decoder(DeadLetter)
        self._encoder = msgspec.msgpack.Encoder()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the topics when missing and start the producer (a processor's consumer starts at its
        first poll, after ``watch_ownership``)."""
        if self._producer is not None:
            return
        await self._ensure_topics()
        producer = AIOKafkaProducer(
            bootstrap_servers=list(self.options.bootstrap),
            client_id=f"{self.options.client_id}-producer",
            acks="all",
            linger_ms=5,
            max_request_size=MAX_RECORD_BYTES,
            partitioner=_partitioner,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BusError(f"Kafka at {self._where()} cannot be reached: {exc}") from exc
        self._producer = producer

    async def _ensure_topics(self) -> None:
        o = self.options
        admin = AIOKafkaAdminClient(bootstrap_servers=list(o.bootstrap), client_id=f"{o.client_id}-admin")
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(
                    t, o.partitions, o.replication, topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)}
                )
                for t in (o.readings_topic, o.dead_letter_topic)
                if t not in existing
            ]
            if wanted:
                response = await admin.create_topics(wanted)
                failed = [(t, code) for t, code, *_ in response.topic_errors if code not in (0, TOPIC_EXISTS)]
                if failed:
                    raise BusError(
                        f"Kafka at {self._where()} refused to create topics {failed} (topic, error code): "
                        "check the replication factor against the brokers, and the ACLs"
                    )
                log.info(
                    "Kafka topics %s: %d partitions, replication %d",
                    ", ".join(t.name for t in wanted),
                    o.partitions,
                    o.replication,
                )
            described = await admin.describe_topics([o.readings_topic])
            partitions = len(described[0].get("partitions", [])) if described else 0
        except (KafkaError, OSError) as exc:
            raise BusError(f"Kafka at {self._where()}: cannot create or describe topics: {exc}") from exc
        finally:
            await admin.close()
        if partitions and partitions != o.partitions:
            # A site's partition is its key's hash modulo the count: a different count moves sites between
            # partitions while records of the old layout are still unread, and a processor would be given
            # records of sites it does not own. Changing it is a migration (docs/operations.md).
            raise BusError(
                f"topic {o.readings_topic} has {partitions} partitions but the bus URL says "
                f"partitions={o.partitions}: give the topic's count (a new count needs a new prefix)"
            )

    def watch_ownership(self, listener: Ownership) -> None:
        self._listener = listener

    async def close(self) -> None:
        """Leave the group (the others take the sites over at once) and flush what is being sent."""
        self._closed = True
        async with self._consumer_lock:
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                await consumer.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def _where(self) -> str:
        return ",".join(self.options.bootstrap)

    # ------------------------------------------------------------------ producing

    def _running_producer(self) -> AIOKafkaProducer:
        if self._closed:
            raise BusError("bus is closed")
        if self._producer is None:
            raise BusError("the Kafka bus was not started")
        return self._producer

    async def publish(self, batch: ReadingBatch) -> None:
        await self.publish_many([batch], [])

    async def publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        await self.publish_many([], letters)

    async def publish_many(self, batches: Sequence[ReadingBatch], letters: Sequence[DeadLetter]) -> None:
        producer = self._running_producer()
        o = self.options
        sent: list[asyncio.Future[Any]] = []
        try:
            for batch in batches:
                sent.append(
                    await producer.send(
                        o.readings_topic,
                        self._encoder.encode(batch),
                        key=batch.site_id.encode(),
                        headers=[(SCHEMA_HEADER, READINGS_SCHEMA)],
                    )
                )
            for letter in letters:
                sent.append(
                    await producer.send(
                        o.dead_letter_topic,
                        self._encoder.encode(letter),
                        key=(letter.site_id or letter.source).encode(),
                        headers=[(SCHEMA_HEADER, DEAD_LETTER_SCHEMA)],
                    )
                )
            await asyncio.gather(*sent)
        except KafkaError as exc:
            raise BusError(f"Kafka at {self._where()} refused the records: {exc}") from exc
        finally:
            for future in sent:  # an earlier failure leaves the rest unawaited: retrieve their outcome
                if future.done() and not future.cancelled():
                    future.exception()

    # ------------------------------------------------------------------ consuming

    async def _running_consumer(self) -> AIOKafkaConsumer | None:
        async with self._consumer_lock:
            if self._closed:
                return None
            if self._consumer is None:
                o = self.options
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=list(o.bootstrap),
                    client_id=f"{o.client_id}-processor",
                    group_id=o.group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    session_timeout_ms=o.session_timeout_ms,
                    heartbeat_interval_ms=max(100, o.session_timeout_ms // 5),
                    # a hand-over waits for the old owner's writes in flight (``Ownership.released``):
                    # give it longer than the session timeout (aiokafka's default) before the group
                    # moves on without it (its late writes are then fenced off)
                    rebalance_timeout_ms=max(60_000, o.session_timeout_ms),
                    max_partition_fetch_bytes=16 << 20,
                    fetch_max_bytes=64 << 20,
                )
                try:
                    await consumer.start()
                except KafkaError as exc:
                    await consumer.stop()
                    raise BusError(f"Kafka at {self._where()} cannot be reached: {exc}") from exc
                consumer.subscribe([o.readings_topic, o.dead_letter_topic], listener=_Rebalance(self))
                self._consumer = consumer
            return self._consumer

    async def poll(self, max_readings: int = 50_000, timeout_s: float = 0.5) -> Polled:
        consumer = await self._running_consumer()
        polled = Polled()
        if consumer is None:
            return polled
        try:
            fetched = await consumer.getmany(
                timeout_ms=int(timeout_s * 1000), max_records=max(1, max_readings // READINGS_PER_RECORD)
            )
        except KafkaConnectionError as exc:
            log.warning("Kafka at %s: %s (retrying)", self._where(), exc)
            return polled
        except KafkaError as exc:
            raise BusError(f"Kafka at {self._where()}: {exc}") from exc
        offsets: dict[TopicPartition, int] = {}
        for tp, records in fetched.items():
            if not records:
                continue
            if tp.topic == self.options.readings_topic and tp.partition not in self._owned:
                # fetched for an assignment whose ``Ownership.acquired`` has not run yet: read again
                # once the processor has restored the partition's sites
                consumer.seek(tp, records[0].offset)
                continue
            for record in records:
                self._decode(tp, record, polled)
            offsets[tp] = records[-1].offset + 1
            self._next[tp] = offsets[tp]
        polled.token = offsets
        return polled

    def _decode(self, tp: TopicPartition, record: Any, polled: Polled) -> None:
        value: bytes = record.value or b""
        try:
            if tp.topic == self.options.readings_topic:
                polled.batches.append(self._batch_decoder.decode(value))
            else:
                polled.dead_letters.append(self._letter_decoder.decode(value))
        except msgspec.DecodeError as exc:
            key = record.key.decode("utf-8", errors="replace") if record.key else None
            polled.dead_letters.append(
                DeadLetter(
                    received_ms=record.timestamp or now_ms(),
                    source=f"kafka:{tp.topic}/{tp.partition}@{record.offset}",
                    reason=UNDECODABLE,
                    detail=f"record does not decode as this topic's schema: {exc}",
                    payload=value,
                    site_id=key if tp.topic == self.options.readings_topic else None,
                )
            )

    async def commit(self, polled: Polled) -> None:
        offsets = polled.token
        if not isinstance(offsets, dict) or not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved on (this process left the group, or was thought dead): their new
            # owner re-reads from the last committed offset, and the store applies the repeat once.
            log.warning("offsets not committed, the partitions have a new owner: %s", exc)

    @property
    def lag(self) -> int:
        """Records in the owned partitions past what ``poll`` returned (from the last fetch's high
        water marks)."""
        consumer = self._consumer
        if consumer is None:
            return 0
        total = 0
        for tp, position in list(self._next.items()):
            high = consumer.highwater(tp)
            if high is not None and high > position:
                total += high - position
        return total

    # ------------------------------------------------------------------ ownership

    def owns(self, site_id: str) -> bool:
        """Whether this process owns ``site_id`` right now."""
        return self._owner_test()(site_id)

    def _owner_test(self) -> Callable[[str], bool]:
        n, owned = self._readings_partitions, self._owned
        if n is None or not owned:
            return lambda _site_id: False
        return lambda site_id: partition_of(site_id.encode(), n) in owned

    async def _released(self, revoked: set[TopicPartition]) -> None:
        self._owned = frozenset()
        if self._listener is not None:
            await self._listener.released()
        for tp in revoked:
            self._next.pop(tp, None)

    async def _acquired(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer
        topic = self.options.readings_topic
        if consumer is not None:
            parts = consumer.partitions_for_topic(topic)
            if parts:
                self._readings_partitions = len(parts)
        self._owned = frozenset(tp.partition for tp in assigned if tp.topic == topic)
        log.info(
            "this processor now owns %d of %s partitions of %s",
            len(self._owned),
            self._readings_partitions,
            topic,
        )
        if self._listener is not None:
            await self._listener.acquired(self._owner_test())


__all__ = ["KafkaBus", "KafkaOptions", "partition_of"]
